"""Selector agreement: Kendall tau between each cheap signal's ranking and a target ranking, per cell."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from analysis.loading.cells import CELL, ordered_regimes
from growth.measure import metric_registry
from growth.measure.metric_registry import Direction, Signal

LOWER, HIGHER = Direction.lower_better, Direction.higher_better


def signals() -> list[Signal]:
    """Every registered selector signal (growth/measure/metric_registry.py), in registration order."""
    return list(metric_registry.SIGNALS.values())


def predicted_cost(values: np.ndarray, signal: Signal) -> np.ndarray:
    """The signal turned into a 'lower = predicted better' score (zero-step noise floor applied)."""
    values = np.asarray(values, dtype=float)
    metric = metric_registry.metric_of(signal.column)
    absolute = metric is not None and metric.absolute and metric.name == signal.column
    cost = np.abs(values) if absolute else values.copy()
    cost[np.abs(values) < metric_registry.noise_floor(signal.column)] = 0.0
    return -cost if signal.direction == HIGHER else cost


def tau(x: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
    """Kendall tau-b of x and y, and whether either side was constant (then counted as tau = 0)."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        # A constant signal orders nothing: it carries no ranking information, not a missing value.
        return 0.0, True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = kendalltau(x, y)
    return float(result.statistic), False


def cell_agreement(summary: pd.DataFrame, target: str = "auc") -> pd.DataFrame:
    """Per (cell, signal): tau with the target ranking, candidate count and the winner-pick hit (fractional on ties)."""
    records = []
    for key, cell in summary.groupby(CELL, sort=False):
        goal = cell[target].to_numpy(float)
        candidates = cell["candidate"].to_numpy()
        for signal in signals():
            cost = predicted_cost(cell[signal.column].to_numpy(float), signal)
            both = np.isfinite(cost) & np.isfinite(goal)
            if both.sum() < 2:
                continue
            names, x, y = candidates[both], cost[both], goal[both]
            value, constant = tau(x, y)
            picked = set(names[x == x.min()])
            winners = set(names[y == y.min()])
            records.append(
                {
                    **dict(zip(CELL, key, strict=True)),
                    "signal": signal.name,
                    "direction": signal.direction,
                    "target": target,
                    "n_candidates": int(both.sum()),
                    "tau": value,
                    "constant": constant,
                    # Tied best picks: the expected hit rate of breaking the tie at random.
                    "hit": len(picked & winners) / len(picked),
                    "picked": " ".join(sorted(picked)),
                    "winner": " ".join(sorted(winners)),
                }
            )
    columns = [*CELL, "signal", "direction", "target", "n_candidates", "tau", "constant", "hit", "picked", "winner"]
    return pd.DataFrame.from_records(records, columns=columns)


TauDraws = dict[tuple, dict[str, np.ndarray]]  # (experiment, seed, growth_step, regime) -> signal -> (B,)


def add_tau_ci(agreement: pd.DataFrame, draws: TauDraws | None, level: float = 0.95) -> pd.DataFrame:
    """agreement plus each cell's bootstrap CI of tau (NaN where the cell has no draws)."""
    out = agreement.copy()
    low, high = [], []
    for r in out.to_dict("records"):
        d = (draws or {}).get(tuple(r[k] for k in CELL), {}).get(r["signal"])
        lo, hi = (math.nan, math.nan) if d is None else _ci(d, level)
        low.append(lo)
        high.append(hi)
    out.insert(out.columns.get_loc("tau") + 1, "tau_ci_low", low)
    out.insert(out.columns.get_loc("tau") + 2, "tau_ci_high", high)
    return out


def _ci(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    alpha = 100 * (1 - level) / 2
    lo, hi = np.percentile(d, [alpha, 100 - alpha])
    return float(lo), float(hi)


def scope_draws(
    agreement: pd.DataFrame, draws: TauDraws | None, signal: str, regimes: tuple[str, ...] | None = None
) -> np.ndarray | None:
    """Bootstrap draws of a signal's mean tau over the cells of the given regimes (all when None).

    Cells are independent, so draw b of the mean is the mean of every cell's draw b. None when there is no
    cell, or some cell of the scope has no draws (no noise to resample): then no CI is claimed.
    """
    rows = agreement[agreement["signal"] == signal]
    if regimes is not None:
        rows = rows[rows["regime"].isin(regimes)]
    cells = [tuple(r) for r in rows[CELL].itertuples(index=False)]
    found = [(draws or {}).get(c, {}).get(signal) for c in cells]
    if not found or any(d is None for d in found):
        return None
    return np.mean(found, axis=0)


def selector_table(agreement: pd.DataFrame, draws: TauDraws | None = None) -> pd.DataFrame:
    """Per signal, per regime and overall: mean/min tau over cells (mean with a CI), cell count, winner-pick hits."""
    records = []
    regimes = [r for r in ordered_regimes(agreement["regime"].unique())]
    for signal in signals():
        rows = agreement[agreement["signal"] == signal.name]
        for scope in [*regimes, "overall"]:
            part = rows if scope == "overall" else rows[rows["regime"] == scope]
            n = len(part)
            mean_draws = scope_draws(agreement, draws, signal.name, None if scope == "overall" else (scope,))
            low, high = _ci(mean_draws) if mean_draws is not None else (math.nan, math.nan)
            records.append(
                {
                    "signal": signal.name,
                    "direction": signal.direction,
                    "regime": scope,
                    "n_cells": n,
                    "mean_tau": part["tau"].mean() if n else math.nan,
                    "mean_tau_ci_low": low,
                    "mean_tau_ci_high": high,
                    "min_tau": part["tau"].min() if n else math.nan,
                    "winner_hits": part["hit"].sum() if n else math.nan,
                    "hit_rate": part["hit"].mean() if n else math.nan,
                    "n_constant": int(part["constant"].sum()),
                }
            )
    return pd.DataFrame.from_records(records)
