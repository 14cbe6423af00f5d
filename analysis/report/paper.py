"""`python -m analysis.report RESULTS_DIR [RESULTS_DIR ...]`: tables, CIs, claim verdicts and figures.

Every results.jsonl below the given directories is read; rows are grouped by learning-rate policy
(lr_correction, clip_mode) and every ranking, CI, selector table and verdict is computed within one policy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.loading.cells import eval_curves
from analysis.loading.load import NoResultsError, load_results
from analysis.output.plots import plot_curves, plot_preservation_vs_auc, plot_probe_vs_auc, plot_rank_heatmap
from analysis.output.tables import (
    rankings_latex,
    rankings_wide,
    round_frame,
)
from analysis.ranking.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
)
from analysis.report.policy import REFERENCE_CANDIDATE, PolicyAnalysis, analyse_policy
from analysis.report.render import policy_winners, render_markdown, with_policy
from growth.store.files import atomic_write
from growth.store.files import atomic_write_text as write_text

__all__ = ["REFERENCE_CANDIDATE", "PolicyAnalysis", "analyse_policy", "main", "policy_winners", "write_report"]

FIGURE_NAMES = {"rank_heatmap.png", "probe_vs_auc.png", "preservation_vs_auc.png"}


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Atomically write a CSV without the index."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


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
    write_csv(with_policy(analyses, lambda a: rankings_wide(a.ranks)), out / "rankings.csv")
    write_csv(with_policy(analyses, "ranks"), out / "rankings_long.csv")  # full precision: KLs near 1e-12
    write_csv(with_policy(analyses, "agg"), out / "rankings_by_step.csv")
    write_csv(round_frame(with_policy(analyses, "selectors"), 4), out / "selectors.csv")
    write_csv(round_frame(with_policy(analyses, "agreement"), 4), out / "selector_cells.csv")
    write_csv(with_policy(analyses, "candidate_ci"), out / "candidate_ci.csv")
    write_csv(with_policy(analyses, "pairs"), out / "pairs.csv")
    write_csv(with_policy(analyses, "claims"), out / "claims.csv")
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
