"""report.md: the Markdown of every section, from the per-policy analyses."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.loading.cells import ROW
from analysis.loading.load import Results
from analysis.output.tables import (
    aggregate_markdown,
    markdown_table,
    rankings_markdown,
    round_frame,
)
from analysis.ranking.stats import (
    DEFAULT_RESAMPLES,
)
from analysis.report.policy import PolicyAnalysis


def _provenance(results: Results, results_dir: Path | str) -> str:
    """Where the numbers come from: files, rows, duplicates, experiments, configs, package versions."""
    frame = results.frame
    versions = sorted(frame["versions"].unique())
    lines = [
        f"Source: `{results_dir}`: {len(results.files)} results.jsonl file(s), {results.n_read} rows read, "
        f"{results.n_unparseable} unparseable line(s) skipped (torn by a crash mid-append, or edited), "
        f"{results.n_duplicates} duplicate row(s) dropped (the last append kept), {len(frame)} rows used.",
        f"Experiments: {', '.join(sorted(frame['experiment'].unique()))}. "
        f"Config hashes: {', '.join(sorted(h or '(none)' for h in frame['config_hash'].unique()))}.",
    ]
    for v in versions:
        pretty = ", ".join(f"{k}={val}" for k, val in json.loads(v).items()) or "(not recorded)"
        lines.append(f"Package versions: {pretty}.")
    unreadable = unreadable_cells(frame)
    if unreadable:
        lines.append(
            f"Could not read the per-sequence losses of {len(unreadable)} cell(s) (file missing; their CIs"
            f" resample replicates only; rerun the grid to recompute them): {', '.join(unreadable)}."
        )
    return "\n\n".join(lines)


def unreadable_cells(frame: pd.DataFrame) -> list[str]:
    """The cells (and scratch runs) whose finishing row names a per-sequence file that is not there."""
    rows = frame[(frame["metric"] == "wall_time") & (frame["seq_losses"] != "")]
    return sorted(
        f"{r.experiment} seed{r.seed}-g{r.growth_step}-{r.regime}-r{r.replicate} ({r.seq_losses})"
        for r in rows.itertuples()
        if not (Path(r.source).parent / r.seq_losses).is_file()
    )


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


def with_policy(analyses: list[PolicyAnalysis], attr: str) -> pd.DataFrame:
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
    claims = with_policy(analyses, "claims")
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
