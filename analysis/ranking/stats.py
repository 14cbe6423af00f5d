"""Paired bootstrap statistics over replicates and eval sequences (SPEC section 5, "noise").

Every cell (policy, experiment, seed, growth_step, regime) is turned into arrays x[r, c, n]: replicate r,
candidate c, eval sequence n; one array per ranked stage (probe-lag eval loss, continuation AUC). With the
per-sequence files of docs/results_schema.md, n runs over the N held-out sequences; without them (old
results) N = 1 and x holds the per-run rows, so only replicates are resampled.

Two-way bootstrap: each draw resamples replicates (rows) and sequences (columns) with replacement,
independently, and takes the mean of x over the resampled rows and columns. One draw's weights are shared
by every candidate and every signal of the cell, so differences of resampled means are resampled paired
differences, and the selector taus of one draw are computed on one coherent resample.

Why not scipy.stats.bootstrap: it resamples observations along one axis (jointly for paired samples), so it
cannot resample two crossed factors (replicates x sequences) independently, and it does not hand back the
draws we need to share between candidates and signals. The resampling here is a multinomial count vector per
factor, which is the same as drawing indices with replacement.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.ranking.bootstrap import (
    CI_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_ci,
    cell_rng,
    clearly_above_zero,
    clearly_below_zero,
    draw_weights,
    has_noise,
    kendall_tau_b,
    per_sequence_auc,
    percentile_ci,
    resample_counts,
    weighted_means,
)
from analysis.ranking.cell_data import (
    STAGE_METRIC,
    STATS_CELL,
    CellData,
    collect_cells,
    read_seq_losses,
    signal_columns,
)
from analysis.ranking.selectors import predicted_cost, signals
from growth.measure.metric_registry import NUMERICAL_TOLERANCE

# The primitives and the cell arrays keep their old import path (analysis.ranking.stats).
__all__ = [
    "CI_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "NUMERICAL_TOLERANCE",
    "STAGE_METRIC",
    "STATS_CELL",
    "CellData",
    "bootstrap_mean_ci",
    "cell_rng",
    "clearly_above_zero",
    "clearly_below_zero",
    "collect_cells",
    "draw_weights",
    "has_noise",
    "kendall_tau_b",
    "per_sequence_auc",
    "percentile_ci",
    "read_seq_losses",
    "resample_counts",
    "signal_columns",
    "weighted_means",
]


@dataclass
class CellBoot:
    """A cell's bootstrap: shared weights, per-stage resampled candidate means (None when there is no noise)."""

    cell: CellData
    w_rows: np.ndarray | None
    w_cols: np.ndarray | None
    means: dict[str, np.ndarray] = field(default_factory=dict)  # stage -> point means (C,)
    draws: dict[str, np.ndarray | None] = field(default_factory=dict)  # stage -> (B, C)

    def finite(self, stage: str) -> np.ndarray:
        """Candidates with a finite value in every replicate and sequence of the stage."""
        return np.isfinite(self.cell.values[stage]).all(axis=(0, 2))


def bootstrap_cell(cell: CellData, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> CellBoot:
    """Draw the cell's weights once and resample every stage's candidate means with them."""
    noisy = has_noise(cell.n_replicates, cell.n_sequences)
    if noisy:
        w_rows, w_cols = draw_weights(cell_rng(seed, cell.key), cell.n_replicates, cell.n_sequences, n_resamples)
    else:
        w_rows = w_cols = None
    boot = CellBoot(cell, w_rows, w_cols)
    for stage, x in cell.values.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN candidates
            boot.means[stage] = np.nanmean(x, axis=(0, 2))
        boot.draws[stage] = weighted_means(np.nan_to_num(x), w_rows, w_cols) if noisy else None
    return boot


def bootstrap_cells(
    cells: list[CellData], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> list[CellBoot]:
    """bootstrap_cell over a list of cells."""
    return [bootstrap_cell(c, n_resamples, seed) for c in cells]


def _cell_columns(boot: CellBoot) -> dict:
    return dict(zip(STATS_CELL, boot.cell.key, strict=True))


def candidate_table(boots: list[CellBoot], level: float = CI_LEVEL) -> pd.DataFrame:
    """Per (cell, stage, candidate): mean and CI of the ranked metric, replicate and sequence counts."""
    records = []
    for boot in boots:
        cell = boot.cell
        for stage in cell.values:
            ok = boot.finite(stage)
            draws = boot.draws[stage]
            low, high = percentile_ci(draws, level) if draws is not None else (None, None)
            for i, cand in enumerate(cell.candidates):
                records.append(
                    {
                        **_cell_columns(boot),
                        "stage": stage,
                        "candidate": cand,
                        "mean": boot.means[stage][i] if ok[i] else math.nan,
                        "ci_low": low[i] if low is not None and ok[i] else math.nan,
                        "ci_high": high[i] if high is not None and ok[i] else math.nan,
                        "n_replicates": cell.n_replicates,
                        "n_sequences": cell.n_sequences,
                        "ci_method": cell.method,
                    }
                )
    columns = [*STATS_CELL, "stage", "candidate", "mean", "ci_low", "ci_high", "n_replicates", "n_sequences"]
    return pd.DataFrame.from_records(records, columns=[*columns, "ci_method"])


def pair_table(boots: list[CellBoot], level: float = CI_LEVEL) -> pd.DataFrame:
    """Per (cell, stage, ordered candidate pair): diff = mean(candidate) - mean(other) and its paired CI.

    Lower is better for both stages, so diff < 0 with ci_high < 0 means `candidate` is reliably better.
    Only candidates finite in every replicate and sequence are paired.
    """
    records = []
    for boot in boots:
        cell = boot.cell
        for stage in cell.values:
            ok = np.flatnonzero(boot.finite(stage))
            draws = boot.draws[stage]
            for i in ok:
                for j in ok:
                    if i == j:
                        continue
                    low = high = math.nan
                    if draws is not None:
                        low, high = (float(v) for v in percentile_ci(draws[:, i] - draws[:, j], level))
                    records.append(
                        {
                            **_cell_columns(boot),
                            "stage": stage,
                            "candidate": cell.candidates[i],
                            "other": cell.candidates[j],
                            "diff": float(boot.means[stage][i] - boot.means[stage][j]),
                            "ci_low": low,
                            "ci_high": high,
                            "n_replicates": cell.n_replicates,
                            "n_sequences": cell.n_sequences,
                        }
                    )
    columns = [*STATS_CELL, "stage", "candidate", "other", "diff", "ci_low", "ci_high", "n_replicates", "n_sequences"]
    return pd.DataFrame.from_records(records, columns=columns)


def signal_draws(boot: CellBoot, column: str) -> np.ndarray | None:
    """Resampled per-candidate means of a signal (B, C): per-sequence when the signal is a ranked stage."""
    for stage, metric in STAGE_METRIC.items():
        if metric == column:
            return boot.draws[stage]
    if boot.w_rows is None:
        return None
    s = boot.cell.signals[column]
    return boot.w_rows @ np.nan_to_num(s) / s.shape[0]


def signal_means(boot: CellBoot, column: str) -> np.ndarray:
    """Point per-candidate means of a signal (C,), NaN where any run lacks it."""
    for stage, metric in STAGE_METRIC.items():
        if metric == column:
            values = boot.means[stage].copy()
            values[~boot.finite(stage)] = np.nan
            return values
    return boot.cell.signals[column].mean(axis=0)


def tau_draws(boots: list[CellBoot], target: str = "auc") -> dict[tuple, dict[str, np.ndarray]]:
    """Per cell key, per signal: bootstrap draws (B,) of Kendall tau-b between the signal and the target.

    The same candidates as the point estimate (analysis.ranking.selectors.cell_agreement): those with a finite
    signal and a finite target; each draw recomputes both sides' means on the resample and their tau.
    Cells without noise (one replicate, no per-sequence data) get no draws.
    """
    out: dict[tuple, dict[str, np.ndarray]] = {}
    for boot in boots:
        goal_draws = signal_draws(boot, target)
        if goal_draws is None:
            continue
        goal = signal_means(boot, target)
        per_signal = {}
        for signal in signals():
            x_draws = signal_draws(boot, signal.column)
            both = np.isfinite(signal_means(boot, signal.column)) & np.isfinite(goal)
            if x_draws is None or both.sum() < 2:
                continue
            cost = predicted_cost(x_draws[:, both], signal)
            per_signal[signal.name] = kendall_tau_b(cost, goal_draws[:, both])
        out[boot.cell.key] = per_signal
    return out
