"""`python -m analysis.report RESULTS_DIR`: tables, claim verdicts and figures from every results.jsonl below it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.cells import eval_curves, summarize
from analysis.claims import evaluate_claims
from analysis.load import NoResultsError, Results, load_results
from analysis.plots import plot_curves, plot_preservation_vs_auc, plot_probe_vs_auc, plot_rank_heatmap
from analysis.rankings import rank_all
from analysis.selectors import cell_agreement, selector_table
from analysis.tables import (
    aggregate_by_step,
    aggregate_markdown,
    markdown_table,
    rankings_latex,
    rankings_markdown,
    rankings_wide,
    round_frame,
)
from growth.tracking import atomic_write
from growth.tracking import atomic_write_text as write_text

REFERENCE_CANDIDATE = "continue_small"
FIGURE_NAMES = {"rank_heatmap.png", "probe_vs_auc.png", "preservation_vs_auc.png"}


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Atomically write a CSV without the index."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _provenance(results: Results, results_dir: Path) -> str:
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
    table = rows.groupby(["experiment", "seed", "growth_step", "regime"])["value"].agg(["mean", "size"])
    table = table.reset_index().rename(columns={"mean": "wall time (s)", "size": "runs"})
    return markdown_table(round_frame(table, 1)) + "\n"


def _image(title: str, path: Path | None, out_dir: Path, drawn: bool = True) -> str:
    """A Markdown image link relative to report.md, or a note saying why there is none."""
    if not drawn:
        return f"*{title}: not drawn (figures were turned off).*\n"
    if path is None:
        return f"*{title}: not run (no cell has the metrics it needs).*\n"
    return f"![{title}]({path.relative_to(out_dir).as_posix()})\n"


def render_markdown(
    results: Results,
    results_dir: Path,
    out_dir: Path,
    claims: pd.DataFrame,
    ranks: pd.DataFrame,
    agg: pd.DataFrame,
    selectors: pd.DataFrame,
    figures: dict[str, list[Path | None]] | None,
) -> str:
    """The whole report.md (figures None: drawn off)."""
    drawn = figures is not None
    figures = figures or {"curves": [], "heatmap": [None], "probe": [None], "preservation": [None]}
    claim_table = claims[["claim_id", "claim", "verdict", "evidence", "cells"]].rename(
        columns={"claim_id": "#", "evidence": "numbers behind it", "cells": "cells used"}
    )
    selector_view = round_frame(selectors, 3)
    parts = [
        "# Width-growth warm starts: results report\n",
        _provenance(results, results_dir) + "\n",
        "Conventions: rank 1 = best; ties share the better rank; a diverged candidate is ranked last and "
        "labelled *diverged*; *not run* = no rows for that candidate/cell/metric; *n/a* = the schema never "
        "writes that metric for that candidate. Several runs of one cell are shown as mean ± std. "
        "The operational test behind each verdict is in `docs/analysis.md`.\n",
        "## Claims (SPEC section 1)\n",
        markdown_table(claim_table) + "\n",
        "Tests applied:\n",
        "\n".join(f"{r.claim_id}. {r.test}" for r in claims.itertuples()) + "\n",
        "## Rankings\n",
        "Per regime, rows = (seed, growth step), columns = candidates; each cell = rank (metric behind it). "
        "The same numbers are in `rankings.csv` (wide), `rankings_long.csv` (tidy) and `rankings.tex`.\n",
        _image("rank heat map", figures["heatmap"][0], out_dir, drawn),
        rankings_markdown(ranks),
        "## Aggregated over seeds, by growth step\n",
        "Cell = rank mean ± std (metric mean ± std over non-diverged seeds), n = seeds ranked.\n",
        aggregate_markdown(agg),
        "## Selector agreement with the 128-step (AUC) ranking\n",
        "Kendall tau-b between each cheap signal's ranking (in the stated direction) and the AUC ranking, over "
        "the candidates of a cell that have both; a signal constant over a cell counts as tau = 0. "
        "hit_rate = how often the signal's best candidate is the AUC winner (ties split). "
        "Per-cell values: `selector_cells.csv`.\n",
        markdown_table(selector_view) + "\n",
        "## Figures\n",
        "### Eval-loss curves\n",
        "".join(_image(p.stem, p, out_dir) for p in figures["curves"])
        or _image("eval-loss curves", None, out_dir, drawn),
        "### Probe signals vs 128-step AUC\n",
        _image("probe signals vs AUC", figures["probe"][0], out_dir, drawn),
        "### Zero-step preservation vs 128-step AUC\n",
        _image("preservation vs AUC", figures["preservation"][0], out_dir, drawn),
        "## Wall time\n",
        _wall_time(results.frame),
    ]
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


def write_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    experiments: Sequence[str] | None = None,
    figures: bool = True,
) -> Path:
    """Analyse every results.jsonl below `results_dir` and write the report there (default RESULTS_DIR/report)."""
    results_dir = Path(results_dir)
    results = load_results(results_dir, experiments)
    out = Path(out_dir) if out_dir is not None else results_dir / "report"
    summary = summarize(results.frame)
    ranks = rank_all(summary)
    agreement = cell_agreement(summary, "auc")
    probe_agreement = cell_agreement(summary, "probe_eval_loss")
    selectors = selector_table(agreement)
    # The claims are about which warm start of the *wide* model wins: the small model continued is the
    # reference the candidates are compared with, so it is left out of the claims' rankings.
    claims = evaluate_claims(rank_all(summary[summary["candidate"] != REFERENCE_CANDIDATE]), agreement, probe_agreement)
    agg = aggregate_by_step(ranks)
    drawn = draw_figures(results.frame, summary, ranks, out / "figures") if figures else None
    write_csv(rankings_wide(ranks), out / "rankings.csv")
    write_csv(ranks, out / "rankings_long.csv")  # full precision: zero-step KLs live near 1e-12
    write_csv(agg, out / "rankings_by_step.csv")
    write_csv(round_frame(selectors, 4), out / "selectors.csv")
    write_csv(round_frame(agreement, 4), out / "selector_cells.csv")
    write_csv(claims, out / "claims.csv")
    write_text(out / "rankings.tex", rankings_latex(ranks))
    write_text(out / "report.md", render_markdown(results, results_dir, out, claims, ranks, agg, selectors, drawn))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: python -m analysis.report RESULTS_DIR [--out DIR] [--experiment NAME ...] [--no-figures]."""
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("results_dir", help="directory searched recursively for results.jsonl")
    parser.add_argument("--out", default=None, help="report directory (default: RESULTS_DIR/report)")
    parser.add_argument(
        "--experiment", action="append", default=None, help="only rows of this experiment (repeatable; default: all)"
    )
    parser.add_argument("--no-figures", action="store_true", help="tables and claims only (faster)")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.results_dir, args.out, args.experiment, figures=not args.no_figures)
    except NoResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
