"""The study report (SPEC section 6b): budget axis, speedup against scratch, growth factor, both papers' claims.

```
python -m analysis.study RESULTS_DIR [RESULTS_DIR ...] [--out DIR] [--resamples 1000] [--seed 0] [--targets 6]
```
Writes `study.md` and its CSVs and figures to FIRST_RESULTS_DIR/study (or --out), and the paper-grid
report (analysis.report: rankings and the claims of arXiv 2604.04281) to its `paper/` subdirectory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.axes import budget, growth_factor, growth_step_axis, optimizer_axis, speedup
from analysis.axes.curves import group_curves, scratch_curves
from analysis.claims import claims_growth, claims_seeds
from analysis.loading.load import NoResultsError, load_results
from analysis.output import budget_plots
from analysis.output.plots import _slug
from analysis.output.tables import markdown_table, round_frame
from analysis.report.paper import write_csv, write_report
from growth.experiment import grid
from growth.store.files import atomic_write_text


@dataclass
class StudySettings:
    """Every choice of the study analysis (docs/analysis.md "The study report")."""

    n_resamples: int = 1000  # hierarchical bootstrap draws per group
    seed: int = 0  # bootstrap seed: the report is deterministic
    n_targets: int = 6  # rungs of the speedup ladder
    k_rung: int = 3  # ladder rung (from the top) the growth-factor axis and claim C compare at
    reference: str = budget.REFERENCE  # candidate the budget figures' paired differences are taken to
    margin: float = 0.02  # nats: "match" in claims A and B means within this of the better side
    paper_report: bool = True  # also write analysis.report's paper-grid report to paper/


def _fmt(value: float, low: float, high: float, digits: int = 3) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


GROUP_KEY = ["experiment", "regime", "policy", "growth_step"]  # an analysis.axes.curves group: one table, one ladder


def _winners_md(winners: pd.DataFrame) -> str:
    """Per group: the winners at each budget where they change, and at the first and last."""
    lines = []
    for key, part in winners.groupby(GROUP_KEY, sort=True):
        part = part.sort_values("lag")
        keep = part[part["changes"] | (part["lag"] == part["lag"].min()) | (part["lag"] == part["lag"].max())]
        table = keep[["lag", "winners", "per_seed_winners", "n_seeds"]]
        lines.append(f"**{key[0]}: {key[1]}, {key[2]}, growth step {key[3]}**\n\n{markdown_table(table)}\n")
    return "\n".join(lines) or "*No groups.*\n"


def _speedup_cell(r) -> str:
    """tokens; FLOPs (pretraining charged), each `x [CI]`; a missed rung: the bound its budget proves."""
    if r.status != "ok":
        bound = f" (< {r.tokens_bound:.3g}; < {r.flops_bound:.3g})" if r.tokens_bound == r.tokens_bound else ""
        return "not reached" + bound
    tokens = _fmt(r.speedup_tokens, r.tokens_ci_low, r.tokens_ci_high)
    return f"{tokens}; {_fmt(r.speedup_flops, r.flops_ci_low, r.flops_ci_high)} {r.verdict}"


def _speedup_md(table: pd.DataFrame) -> str:
    """One table per group (experiment, regime, policy, growth step): candidates x rungs of its ladder."""
    if table.empty:
        return "*No speedup ladder: no group has a scratch curve that gets below the warm starts' lag-0 loss.*\n"
    lines = []
    for (experiment, regime, policy, step), part in table.groupby(GROUP_KEY, sort=True):
        cells = part.assign(cell=[_speedup_cell(r) for r in part.itertuples()])
        cells["rung"] = [f"{r.rung}: {r.target_loss:.3f}" for r in part.itertuples()]
        pivot = cells.pivot(index="candidate", columns="rung", values="cell").reset_index()
        lines.append(
            f"**{experiment}: {regime}, {policy}, growth step {step}** ({part['n_seeds'].iloc[0]} seeds)\n\n{markdown_table(pivot)}\n"
        )
    return "\n".join(lines)


def _claims_md(frame: pd.DataFrame) -> str:
    t = frame.copy()
    t["effect [95% CI]"] = [_fmt(r.effect, r.ci_low, r.ci_high, 4) for r in t.itertuples()]
    return markdown_table(t[["claim_id", "claim", "verdict", "effect [95% CI]", "cells"]]) + "\n"


WALL_KEY = ["experiment", "k", "lr_policy", "regime"]  # the parts the wall time is split by


def _wall_md(frame: pd.DataFrame, scratch_wall: pd.DataFrame) -> str:
    rows = frame[frame["metric"] == "wall_time"]
    parts = rows.groupby(WALL_KEY)["value"].agg(["sum", "size"]).reset_index()
    parts["part"] = "grow cells"
    if not scratch_wall.empty:
        s = scratch_wall.groupby(WALL_KEY)["value"].agg(["sum", "size"]).reset_index()
        parts = pd.concat([parts, s.assign(part="scratch runs")])
    total = parts["sum"].sum()
    parts = parts.rename(columns={"sum": "seconds", "size": "runs"})
    return markdown_table(round_frame(parts, 1)) + f"\nTotal of the parts: {total:,.0f} s (pretraining not included).\n"


FINISHED = ["done", "in pool"]  # a coverage status that needs nothing more ("in pool": no shared scratch run planned)


def coverage(roots: list[Path], frame: pd.DataFrame, scratch_wall: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, policy, k, seed, regime, growth step): grow cell, scratch run, and whether a plan expects it."""
    key = ["experiment", "lr_policy", "k", "seed", "regime", "growth_step"]  # a shared scratch run: no step
    planned = [  # a plan lies in its experiment's results directory, out_dir/<name>
        r | {"experiment": p.parent.name}
        for root in roots
        for p in root.rglob(grid.PLAN)
        for r in json.loads(p.read_text(encoding="utf-8"))
    ]
    table = frame[frame["metric"] == "wall_time"][key].drop_duplicates().assign(grow_cell="done")
    if planned:
        plans = pd.DataFrame(planned)
        no_scratch = plans.get("scratch_steps", pd.Series(1, index=plans.index)).fillna(1) == 0  # older plans: expected
        plans = plans[key].assign(planned="yes", scratch_planned=~no_scratch.to_numpy())
        table = table.merge(plans.drop_duplicates(key), on=key, how="outer")
    if not scratch_wall.empty:  # a shared scratch run serves every growth step of its (seed, k, policy, regime)
        shared = key[:-1]
        table = table.merge(scratch_wall[shared].drop_duplicates().assign(scratch_run="done"), on=shared, how="left")
    for column in ("grow_cell", "scratch_run"):
        table[column] = table[column].fillna("missing") if column in table else "missing"
    if "scratch_planned" in table:  # a plan without a shared scratch run: its curve comes from the pool
        table.loc[table["scratch_planned"].eq(False) & table["scratch_run"].eq("missing"), "scratch_run"] = "in pool"
        table = table.drop(columns="scratch_planned")
    return table.sort_values(key).reset_index(drop=True)


def _coverage_md(table: pd.DataFrame) -> str:
    """Seeds per (experiment, policy, k, regime, growth step) that finished, and what the plan still lacks."""
    lines = []
    for (experiment, policy, k, regime, step), part in table.groupby(
        ["experiment", "lr_policy", "k", "regime", "growth_step"]
    ):
        finished = part[(part["grow_cell"] == "done") & part["scratch_run"].isin(FINISHED)]["seed"]
        lacking = {
            what: ", ".join(str(x) for x in part[~part[column].isin(FINISHED)]["seed"])
            for what, column in (("grow cell", "grow_cell"), ("scratch run", "scratch_run"))
        }
        missing = "; ".join(f"{what}: seed {seeds}" for what, seeds in lacking.items() if seeds)
        lines.append({"experiment": experiment, "policy": policy, "k": k, "regime": regime, "growth step": step, "seeds finished": ", ".join(map(str, finished)) or "none",
                      "missing": missing or "nothing"})  # fmt: skip
    n_missing = int(((table["grow_cell"] != "done") | ~table["scratch_run"].isin(FINISHED)).sum())
    head = f"{n_missing} (seed, k, policy, regime, growth step) run(s) missing" + (
        " against the grid plan (grid_plan.json)" if "planned" in table else " (no grid plan found)"
    )
    return head + ".\n\n" + markdown_table(pd.DataFrame(lines)) + "\n"


def write_study(dirs: Sequence[str | Path], out_dir: str | Path | None = None, s: StudySettings | None = None) -> Path:
    """Analyse the results below `dirs` and write the study report; returns its directory."""
    s = s or StudySettings()
    roots = [Path(d) for d in dirs]
    results = load_results(roots)
    out = Path(out_dir) if out_dir is not None else roots[0] / "study"
    groups = group_curves(results.frame)
    scratch = scratch_curves(roots)
    tables, wins, taus, speeds, figures = [], [], [], [], []
    for curves in groups:
        t, w, tau = budget.budget_tables(results.frame, curves, s.n_resamples, s.seed, s.reference)
        tables.append(t)
        wins.append(w)
        taus.append(tau)
        experiment, policy, _, regime = curves.key
        res = speedup.group_speedup(
            curves, scratch.get((experiment, policy, regime)), s.n_targets, s.n_resamples, s.seed
        )
        if res is not None:
            speeds.append(res)
    table, winners = pd.concat(tables), pd.concat(wins)
    selectors = pd.concat(taus) if any(len(t) for t in taus) else pd.DataFrame()
    speed_table = pd.concat([r.table for r in speeds]) if speeds else pd.DataFrame()
    k_table, bounds = growth_factor.k_axis(speeds, s.k_rung)
    claims = claims_growth.claims_table(groups, speeds, s.n_resamples, s.seed, s.margin, s.k_rung)
    pooled = claims_seeds.pooled_claims(results.frame, groups, s.n_resamples, s.seed)
    by_optimizer = optimizer_axis.winners(results.frame, s.n_resamples, s.seed)
    escapes = optimizer_axis.escape(results.frame, s.n_resamples, s.seed)
    by_step = growth_step_axis.compare(speeds, scratch, s.n_resamples, s.seed)
    figures += budget_plots.budget_figures(table, winners, out / "figures")
    for key, part in speed_table.groupby(GROUP_KEY) if len(speed_table) else []:
        path = budget_plots.plot_speedup_ladder(
            part, out / "figures" / f"speedup_ladder_{_slug('_'.join(map(str, key)))}.png"
        )
        figures += [path] if path else []
    for key, part in k_table.groupby(["lr_policy", "growth_step", "regime"]) if len(k_table) else []:
        stem = "_".join(str(v) for v in key).replace("/", "-")
        path = budget_plots.plot_speedup_vs_k(part, out / "figures" / f"speedup_vs_k_{stem}.png")
        figures += [path] if path else []
    for name, frame in {"budget.csv": table, "budget_winners.csv": winners, "budget_selectors.csv": selectors,
                        "speedup.csv": speed_table, "speedup_vs_k.csv": k_table, "k_bound.csv": bounds,
                        "claims_2605.13405.csv": claims, "claims_2604.04281_pooled.csv": pooled,
                        "optimizer_winners.csv": by_optimizer, "optimizer_escape.csv": escapes,
                        "growth_step_speedup.csv": by_step}.items():  # fmt: skip
        write_csv(frame, out / name)
    paper = ""
    if s.paper_report:
        paper_dir = write_report(roots, out / "paper", figures=False, n_resamples=s.n_resamples, seed=s.seed)
        paper_claims = pd.read_csv(paper_dir / "claims.csv")
        paper_claims["effect [95% CI]"] = [_fmt(r.effect, r.ci_low, r.ci_high, 4) for r in paper_claims.itertuples()]
        paper = markdown_table(paper_claims[["policy", "claim_id", "claim", "verdict", "effect [95% CI]"]])
    scratch_wall = _scratch_wall(roots)
    covered = coverage(roots, results.frame, scratch_wall)
    write_csv(covered, out / "coverage.csv")
    seeds = sorted(results.frame["seed"].unique())
    md = [
        "# Study report\n",
        f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)}); k: {', '.join(map(str, sorted(results.frame['k'].unique())))}; "
        f"policies: {', '.join(sorted(results.frame['lr_policy'].unique()))}; {len(groups)} groups; "
        f"{s.n_resamples} hierarchical bootstrap draws (seeds, replicates, sequences; docs/analysis.md).\n",
        "## What finished\n",
        _coverage_md(covered),
        "## Winner per (regime, policy, budget)\n",
        "Budgets where the winners change, and the first and last; `a=b` = tied. Per-seed winners beside.\n",
        _winners_md(winners),
        "## Speedup against scratch_wide\n",
        "Columns: rung of the target ladder and its loss (nats). Cells: speedup in tokens; in FLOPs with the small "
        "model's pretraining charged, each with its 95% CI, and the FLOP verdict (`faster` / `slower` when the CI "
        "clears 1). `not reached (< a; < b)`: the candidate missed the target within its budget, which proves "
        "speedups below a (tokens) and b (FLOPs). Per-seed verdicts: speedup.csv.\n",
        _speedup_md(speed_table),
        "## Growth factor\n",
        markdown_table(bounds) + "\n" if len(bounds) else "*Needs two values of k with a ladder.*\n",
        "## Does the winner or the escape change with the optimizer\n",
        optimizer_axis.markdown(by_optimizer, escapes),
        "## Does the speedup change with the growth step\n",
        growth_step_axis.markdown(by_step),
        "## Claims of arXiv 2605.13405\n",
        _claims_md(claims),
        "## Claims 1-3 of arXiv 2604.04281 pooled over seeds (hierarchical bootstrap; analysis.claims.claims_seeds)\n",
        _claims_md(pooled),
        "## Claims of arXiv 2604.04281 per cell = per seed (paper/report.md)\n",
        paper + "\n" if paper else "*Not written.*\n",
        "## Wall time by part\n",
        _wall_md(results.frame, scratch_wall),
        "## Figures\n",
        *[f"![{p.stem}]({p.relative_to(out).as_posix()})\n" for p in figures],
    ]
    atomic_write_text(out / "study.md", "\n".join(md))
    return out


def _scratch_wall(roots: list[Path]) -> pd.DataFrame:
    rows = []
    for root in roots:
        for store in root.rglob("scratch.jsonl"):
            for line in store.read_text(encoding="utf-8").splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("metric") == "wall_time":
                    rows.append({"experiment": r["experiment"], "seed": r["seed"], "k": r.get("k", 2), "lr_policy": f"{r['lr_correction']}/{r['clip_mode']}",
                                 "regime": r["regime"], "value": r["value"]})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.study", description=__doc__.splitlines()[0])
    defaults = StudySettings()
    parser.add_argument("results_dir", nargs="+", help="directories searched recursively for results.jsonl")
    parser.add_argument("--out", default=None, help="report directory (default: FIRST_RESULTS_DIR/study)")
    parser.add_argument("--resamples", type=int, default=defaults.n_resamples)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--targets", type=int, default=defaults.n_targets, help="rungs of the speedup ladder")
    args = parser.parse_args(argv)
    settings = StudySettings(n_resamples=args.resamples, seed=args.seed, n_targets=args.targets)
    if not 1 <= settings.k_rung <= settings.n_targets:
        settings.k_rung = max(1, (settings.n_targets + 1) // 2)
    try:
        out = write_study(args.results_dir, args.out, settings)
    except NoResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out / "study.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
