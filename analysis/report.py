"""`python -m analysis.report RESULTS_DIR [RESULTS_DIR ...]`: tables, CIs, claim verdicts and figures.

Every results.jsonl below the given directories is read; rows are grouped by learning-rate policy
(lr_correction, clip_mode) and every ranking, CI, selector table and verdict is computed within one policy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.cells import ROW, eval_curves, summarize
from analysis.claims import evaluate_claims
from analysis.load import NoResultsError, Results, load_results
from analysis.plots import plot_curves, plot_preservation_vs_auc, plot_probe_vs_auc, plot_rank_heatmap
from analysis.rankings import apply_ties, rank_all
from analysis.selectors import add_tau_ci, cell_agreement, selector_table
from analysis.stats import (
    CI_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_cells,
    candidate_table,
    collect_cells,
    pair_table,
    tau_draws,
)
from analysis.tables import (
    aggregate_by_step,
    aggregate_markdown,
    markdown_table,
    rankings_latex,
    rankings_markdown,
    rankings_wide,
    round_frame,
)
from growth.files import atomic_write
from growth.files import atomic_write_text as write_text
from growth.widen import registry

REFERENCE_CANDIDATE = registry.reference()
FIGURE_NAMES = {"rank_heatmap.png", "probe_vs_auc.png", "preservation_vs_auc.png"}


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Atomically write a CSV without the index."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _provenance(results: Results, results_dir: Path | str) -> str:
    """Where the numbers come from: files, rows, duplicates, experiments, configs, package versions."""
    frame = results.frame
    versions = sorted(frame["versions"].unique())
    lines = [
        f"Source: `{results_dir}`: {len(results.files)} results.jsonl file(s), {results.n_read} rows read, "
        f"{results.n_duplicates} duplicate row(s) dropped (the last append kept), {len(frame)} rows used.",
        f"Experiments: {', '.join(sorted(frame['experiment'].unique()))}. "
        f"Config hashes: {', '.join(sorted(h or '(none)' for h in frame['config_hash'].unique()))}.",
    ]
    for v in versions:
        pretty = ", ".join(f"{k}={val}" for k, val in json.loads(v).items()) or "(not recorded)"
        lines.append(f"Package versions: {pretty}.")
    return "\n\n".join(lines)


def _wall_time(frame: pd.DataFrame) -> str:
    """Seconds each regime took for the whole pool, per cell."""
    rows = frame[frame["metric"] == "wall_time"]
    if rows.empty:
        return "No wall-time rows.\n"
    table = rows.groupby(["policy", "experiment", "seed", "growth_step", "regime"])["value"].agg(["mean", "size"])
    table = table.reset_index().rename(columns={"mean": "wall time (s)", "size": "runs"})
    return markdown_table(round_frame(table, 1)) + "\n"


def _image(title: str, path: Path | None, out_dir: Path, drawn: bool = True) -> str:
    """A Markdown image link relative to report.md, or a note saying why there is none."""
    if not drawn:
        return f"*{title}: not drawn (figures were turned off).*\n"
    if path is None:
        return f"*{title}: not run (no cell has the metrics it needs).*\n"
    return f"![{title}]({path.relative_to(out_dir).as_posix()})\n"


@dataclass
class PolicyAnalysis:
    """Everything the report shows for one learning-rate policy."""

    policy: str
    frame: pd.DataFrame
    summary: pd.DataFrame
    ranks: pd.DataFrame  # all candidates, ties applied
    claim_ranks: pd.DataFrame  # without continue_small, ties applied
    candidate_ci: pd.DataFrame
    pairs: pd.DataFrame
    agreement: pd.DataFrame  # with tau CIs
    selectors: pd.DataFrame
    claims: pd.DataFrame
    agg: pd.DataFrame


def analyse_policy(
    frame: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> PolicyAnalysis:
    """Summary, CIs, tie-aware rankings, selector taus with CIs and claim verdicts of one policy's rows."""
    policies = frame["policy"].unique()
    if len(policies) != 1:
        raise ValueError(f"analyse_policy needs the rows of exactly one policy, got {sorted(policies)}")
    summary = summarize(frame)
    boots = bootstrap_cells(collect_cells(frame), n_resamples, seed)
    cand_ci, pairs = candidate_table(boots, CI_LEVEL), pair_table(boots, CI_LEVEL)
    ranks = apply_ties(rank_all(summary), cand_ci, pairs)
    # The claims are about which warm start of the *wide* model wins: the small model continued is the
    # reference the candidates are compared with, so it is left out of the claims' rankings.
    claim_ranks = apply_ties(rank_all(summary[summary["candidate"] != REFERENCE_CANDIDATE]), cand_ci, pairs)
    draws = {k[1:]: v for k, v in tau_draws(boots, "auc").items()}
    probe_draws = {k[1:]: v for k, v in tau_draws(boots, "probe_eval_loss").items()}
    agreement = cell_agreement(summary, "auc")
    probe_agreement = cell_agreement(summary, "probe_eval_loss")
    claims = evaluate_claims(claim_ranks, agreement, probe_agreement, pairs, draws, probe_draws)
    return PolicyAnalysis(
        policy=str(policies[0]),
        frame=frame,
        summary=summary,
        ranks=ranks,
        claim_ranks=claim_ranks,
        candidate_ci=cand_ci,
        pairs=pairs,
        agreement=add_tau_ci(agreement, draws, CI_LEVEL),
        selectors=selector_table(agreement, draws),
        claims=claims,
        agg=aggregate_by_step(ranks),
    )


def _with_policy(analyses: list[PolicyAnalysis], attr: str) -> pd.DataFrame:
    """One table of all policies, `policy` as the first column."""
    frames = []
    for a in analyses:
        part = getattr(a, attr) if isinstance(attr, str) else attr(a)
        part = part.drop(columns=["policy"], errors="ignore")
        frames.append(part.assign(policy=a.policy)[["policy", *part.columns]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _winners_text(ranks: pd.DataFrame) -> str:
    """Winners of one (cell, stage): the point leader, then '=name' for candidates tied with it."""
    ok = ranks[ranks["winner"].astype(bool)]
    if ok.empty:
        return "-"
    lead = [c for c, t in zip(ok["candidate"], ok["tied_with_leader"], strict=True) if not t]
    tied = [f"={c}" for c, t in zip(ok["candidate"], ok["tied_with_leader"], strict=True) if t]
    return " ".join(lead + tied)


def policy_winners(analyses: list[PolicyAnalysis]) -> pd.DataFrame:
    """What the learning-rate policy changes: per (seed, growth step, regime, stage), each policy's winners.

    Winners come from the claims' ranking (wide warm starts, continue_small left out); candidates tied with
    the leader are listed with '='. Rows are matched across policies by (seed, growth step, regime, stage)
    so that results directories with different experiment names line up.
    """
    texts: dict[tuple, dict[str, list[str]]] = {}
    for a in analyses:
        ranks = a.claim_ranks[a.claim_ranks["stage"].isin(["probe", "continuation"])]
        multi = ranks["experiment"].nunique() > 1
        for (exp, seed, step, regime, stage), cell in ranks.groupby([*ROW, "regime", "stage"], sort=True):
            text = _winners_text(cell)
            texts.setdefault((seed, step, regime, stage), {}).setdefault(a.policy, []).append(
                f"{exp}: {text}" if multi else text
            )
    order = {"probe": 0, "continuation": 1}
    records = []
    for (seed, step, regime, stage), per in sorted(
        texts.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1], order[kv[0][3]])
    ):
        rec = {"seed": seed, "growth_step": step, "regime": regime, "stage": stage}
        rec.update({a.policy: "; ".join(per.get(a.policy, ["not run"])) for a in analyses})
        values = [rec[a.policy] for a in analyses]
        rec["changes"] = "yes" if len(set(values)) > 1 else "no"
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _fmt_effect(row: pd.Series) -> str:
    if pd.isna(row["effect"]):
        return "n/a"
    if pd.isna(row["ci_low"]):
        return f"{row['effect']:+.4f} (CI n/a)"
    return f"{row['effect']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def _claims_markdown(analyses: list[PolicyAnalysis]) -> str:
    claims = _with_policy(analyses, "claims")
    multi = len(analyses) > 1
    table = pd.DataFrame(
        {
            **({"policy": claims["policy"]} if multi else {}),
            "#": claims["claim_id"],
            "claim": claims["claim"],
            "verdict": claims["verdict"],
            "effect [95% CI]": claims.apply(_fmt_effect, axis=1),
            "numbers behind it": claims["evidence"],
            "point estimate verdict": claims["point_verdict"],
            "cells used": claims["cells"],
        }
    )
    first = analyses[0].claims
    tests = "\n".join(f"{r.claim_id}. {r.test}. Statistical rule: {r.stat_test}." for r in first.itertuples())
    return markdown_table(table) + "\n\nTests applied:\n\n" + tests + "\n"


def _sections(analyses: list[PolicyAnalysis], render) -> str:
    """One block per policy, headed by the policy when there are several."""
    if len(analyses) == 1:
        return render(analyses[0])
    return "\n".join(f"### Policy: {a.policy}\n\n{render(a)}" for a in analyses)


def render_markdown(
    results: Results,
    results_dir: Path | str,
    out_dir: Path,
    analyses: list[PolicyAnalysis],
    figures: dict[str, dict[str, list[Path | None]]] | None,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> str:
    """The whole report.md (figures None: drawn off)."""
    drawn = figures is not None
    empty = {"curves": [], "heatmap": [None], "probe": [None], "preservation": [None]}
    figs = {a.policy: (figures or {}).get(a.policy, empty) for a in analyses}
    policies = ", ".join(a.policy for a in analyses)
    parts = [
        "# Width-growth warm starts: results report\n",
        _provenance(results, results_dir) + "\n",
        f"Learning-rate policies (lr_correction/clip_mode): {policies}. Every ranking, CI and verdict is "
        "computed within one policy; policies are never mixed.\n",
        "Conventions: rank 1 = best; a diverged candidate is ranked last and labelled *diverged*; *not run* = "
        "no rows for that candidate/cell/metric; *n/a* = the schema never writes that metric for that "
        "candidate. Probe and continuation cells show mean [95% CI] (two-way percentile bootstrap over "
        f"replicates and eval sequences, {n_resamples} resamples, seeded); without a CI (one run, no "
        "per-sequence losses) mean ± std over runs. `=1` marks a candidate whose paired difference to the "
        "leader has a CI containing 0: statistically tied, it shares rank 1. The procedure and the verdict "
        "rules are in `docs/analysis.md`.\n",
        "## Claims (SPEC section 1)\n",
        "verdict: holds / does not hold / inconclusive (evidence inside the noise) / not run. "
        "effect [95% CI]: the deciding number (see the rule of each claim).\n",
        _claims_markdown(analyses),
    ]
    if len(analyses) > 1:
        parts += [
            "## What the learning-rate policy changes\n",
            "Winners per cell under each policy (wide warm starts only; `=name` = tied with the leader).\n",
            markdown_table(policy_winners(analyses)) + "\n",
        ]
    parts += [
        "## Rankings\n",
        "Per regime, rows = (seed, growth step), columns = candidates; each cell = rank (metric behind it). "
        "The same numbers are in `rankings.csv` (wide), `rankings_long.csv` (tidy, with CIs), `rankings.tex`; "
        "every paired difference and its CI is in `pairs.csv`, every candidate's mean and CI in "
        "`candidate_ci.csv`.\n",
        _sections(
            analyses,
            lambda a: (
                _image("rank heat map", figs[a.policy]["heatmap"][0], out_dir, drawn)
                + "\n"
                + rankings_markdown(a.ranks)
            ),
        ),
        "## Aggregated over seeds, by growth step\n",
        "Cell = rank mean ± std (metric mean ± std over non-diverged seeds), n = seeds ranked.\n",
        _sections(analyses, lambda a: aggregate_markdown(a.agg)),
        "## Selector agreement with the 128-step (AUC) ranking\n",
        "Kendall tau-b between each cheap signal's ranking (in the stated direction) and the AUC ranking, over "
        "the candidates of a cell that have both; a signal constant over a cell counts as tau = 0. "
        "mean_tau_ci_low/high: 95% bootstrap CI of the mean tau (each draw resamples replicates, and sequences "
        "where per-sequence losses exist, recomputes both rankings and tau); n/a when some cell has no noise "
        "to resample. hit_rate = how often the signal's best candidate is the AUC winner (ties split). "
        "Per-cell values: `selector_cells.csv`.\n",
        _sections(analyses, lambda a: markdown_table(round_frame(a.selectors, 3)) + "\n"),
        "## Figures\n",
    ]
    for a in analyses:
        f = figs[a.policy]
        if len(analyses) > 1:
            parts.append(f"### Policy: {a.policy}\n")
        parts += [
            "#### Eval-loss curves\n" if len(analyses) > 1 else "### Eval-loss curves\n",
            "".join(_image(p.stem, p, out_dir) for p in f["curves"])
            or _image("eval-loss curves", None, out_dir, drawn),
            "### Probe signals vs 128-step AUC\n",
            _image("probe signals vs AUC", f["probe"][0], out_dir, drawn),
            "### Zero-step preservation vs 128-step AUC\n",
            _image("preservation vs AUC", f["preservation"][0], out_dir, drawn),
        ]
    parts += ["## Wall time\n", _wall_time(results.frame)]
    return "\n".join(parts)


def draw_figures(
    frame: pd.DataFrame, summary: pd.DataFrame, ranks: pd.DataFrame, fig_dir: Path
) -> dict[str, list[Path | None]]:
    """Every report figure; a figure whose metrics are absent everywhere comes back as None."""
    figures = {
        "curves": plot_curves(eval_curves(frame), summary, fig_dir),
        "heatmap": [plot_rank_heatmap(ranks, fig_dir / "rank_heatmap.png")],
        "probe": [plot_probe_vs_auc(summary, fig_dir / "probe_vs_auc.png")],
        "preservation": [plot_preservation_vs_auc(summary, fig_dir / "preservation_vs_auc.png")],
    }
    # A figure left by an earlier report of other data would otherwise sit there looking current.
    drawn = {p for paths in figures.values() for p in paths if p is not None}
    for stale in set(fig_dir.glob("*.png")) - drawn:
        if stale.name.startswith("curves_") or stale.name in FIGURE_NAMES:
            stale.unlink()
    return figures


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


def write_report(
    results_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    experiments: Sequence[str] | None = None,
    figures: bool = True,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Path:
    """Analyse every results.jsonl below `results_dir` (one directory or several) and write one report.

    Default report directory: FIRST_RESULTS_DIR/report. Figures go to figures/ (one policy) or
    figures/<policy>/ (several).
    """
    dirs = [Path(results_dir)] if isinstance(results_dir, str | Path) else [Path(d) for d in results_dir]
    results = load_results(dirs, experiments)
    out = Path(out_dir) if out_dir is not None else dirs[0] / "report"
    analyses = [analyse_policy(part, n_resamples, seed) for _, part in results.frame.groupby("policy", sort=True)]
    multi = len(analyses) > 1
    drawn = None
    if figures:
        drawn = {
            a.policy: draw_figures(
                a.frame, a.summary, a.ranks, out / "figures" / _slug(a.policy) if multi else out / "figures"
            )
            for a in analyses
        }
    write_csv(_with_policy(analyses, lambda a: rankings_wide(a.ranks)), out / "rankings.csv")
    write_csv(_with_policy(analyses, "ranks"), out / "rankings_long.csv")  # full precision: KLs near 1e-12
    write_csv(_with_policy(analyses, "agg"), out / "rankings_by_step.csv")
    write_csv(round_frame(_with_policy(analyses, "selectors"), 4), out / "selectors.csv")
    write_csv(round_frame(_with_policy(analyses, "agreement"), 4), out / "selector_cells.csv")
    write_csv(_with_policy(analyses, "candidate_ci"), out / "candidate_ci.csv")
    write_csv(_with_policy(analyses, "pairs"), out / "pairs.csv")
    write_csv(_with_policy(analyses, "claims"), out / "claims.csv")
    if multi:
        write_csv(policy_winners(analyses), out / "policy_winners.csv")
    tex = [rankings_latex(a.ranks, a.policy if multi else None) for a in analyses]
    write_text(out / "rankings.tex", "\n".join(tex))
    label = dirs[0] if len(dirs) == 1 else ", ".join(str(d) for d in dirs)
    write_text(out / "report.md", render_markdown(results, label, out, analyses, drawn, n_resamples))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: python -m analysis.report RESULTS_DIR [RESULTS_DIR ...] [--out DIR] [--experiment NAME ...]."""
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("results_dir", nargs="+", help="directories searched recursively for results.jsonl")
    parser.add_argument("--out", default=None, help="report directory (default: FIRST_RESULTS_DIR/report)")
    parser.add_argument(
        "--experiment", action="append", default=None, help="only rows of this experiment (repeatable; default: all)"
    )
    parser.add_argument("--no-figures", action="store_true", help="tables and claims only (faster)")
    parser.add_argument(
        "--resamples", type=int, default=DEFAULT_RESAMPLES, help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.results_dir, args.out, args.experiment, not args.no_figures, args.resamples, args.seed)
    except NoResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
