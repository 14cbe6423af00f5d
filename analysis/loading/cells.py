"""Per-cell stage lags and a per-candidate summary of every metric at its stage lag."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from growth.measure import metric_registry
from growth.measure.metric_registry import Stage
from growth.widen import registry

ROW = ["experiment", "seed", "growth_step"]
CELL = [*ROW, "regime"]
CAND = [*CELL, "candidate"]

# Both regimes always get a table: a regime nobody ran must still show up as "not run".
REGIME_ORDER = ("deterministic", "stochastic")


def probe_metrics() -> tuple[str, ...]:
    """The metrics that mark a cell's probe lag (growth/measure/metric_registry.py)."""
    return tuple(m.name for m in metric_registry.of_stage(Stage.probe))


def continuation_metrics() -> tuple[str, ...]:
    """The metrics that mark a cell's continuation lag."""
    return tuple(m.name for m in metric_registry.of_stage(Stage.continuation))


def sources() -> dict[str, tuple[str, str]]:
    """summary column -> (metric in results.jsonl, the stage-lag column it is read at); wall_time is per cell."""
    return {c.name: (c.metric, c.lag_column) for c in metric_registry.columns().values() if c.metric != "wall_time"}


def ordered_candidates(names: Iterable[str]) -> list[str]:
    """Registered candidates in registry order, then any others alphabetically; `_pool` style names dropped."""
    return registry.ordered(names)


def ordered_regimes(names: Iterable[str]) -> list[str]:
    """The two SPEC regimes first (always present), then any others alphabetically."""
    return list(REGIME_ORDER) + sorted(set(names) - set(REGIME_ORDER))


def _mode(lags: pd.Series) -> float:
    """Most common lag (smallest on ties), NaN when there is none."""
    counts = lags.value_counts()
    if counts.empty:
        return math.nan
    return float(min(counts[counts == counts.max()].index))


def cell_universe(frame: pd.DataFrame) -> pd.DataFrame:
    """Every (experiment, seed, growth_step) seen, crossed with every regime, and each experiment's candidates."""
    rows = frame[ROW].drop_duplicates()
    regimes = pd.DataFrame({"regime": ordered_regimes(frame["regime"].unique())})
    cells = rows.merge(regimes, how="cross")
    cands = frame[["experiment", "candidate"]].drop_duplicates()
    cands = cands[~cands["candidate"].str.startswith("_")]
    return cells.merge(cands, on="experiment")


def _merge_stats(left: pd.DataFrame, stats: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Left-join per-group stats (a groupby result, possibly empty) on key columns."""
    return (
        left.merge(stats.reset_index(), on=keys, how="left")
        if len(stats)
        else left.assign(**{c: np.nan for c in stats.columns})
    )


def stage_lags(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell: zero_lag (0), probe_lag (where probe_* live) and continuation_lag (where auc lives)."""
    cells = cell_universe(frame)[CELL].drop_duplicates().reset_index(drop=True)
    cells["zero_lag"] = 0.0
    for column, metrics in (("probe_lag", probe_metrics()), ("continuation_lag", continuation_metrics())):
        rows = frame[frame["metric"].isin(metrics)]
        per_cell = rows.groupby(CELL)["lag"].agg(_mode).rename(column).to_frame()
        # A cell where no candidate reached the stage still gets the experiment's lag, for labels.
        per_exp = rows.groupby("experiment")["lag"].agg(_mode).rename("fallback").to_frame()
        cells = _merge_stats(_merge_stats(cells, per_cell, CELL), per_exp, ["experiment"])
        cells[column] = cells[column].fillna(cells.pop("fallback")).astype(float)
    return cells


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, candidate): each metric at its stage lag (mean, std, n over replicates), divergence, runs."""
    lags = stage_lags(frame)
    columns = sources()
    out = cell_universe(frame).merge(lags, on=CELL, how="left")
    runs = frame.groupby(CAND)["run"].nunique().rename("n_runs").to_frame()
    out = _merge_stats(out, runs, CAND)
    div = (
        frame[frame["metric"] == "diverged"]
        .groupby(CAND)
        .agg(diverged_lag=("lag", "min"), n_diverged=("run", "nunique"))
    )
    out = _merge_stats(out, div, CAND)
    # Every (summary column, metric, stage lag) at once: one merge, one filter, one groupby.
    wanted = pd.DataFrame(
        [(name, metric, lag_column) for name, (metric, lag_column) in columns.items()],
        columns=["name", "metric", "lag_column"],
    )
    rows = frame.merge(wanted, on="metric").merge(lags, on=CELL)
    stage_lag = np.select(
        [rows["lag_column"] == c for c in ("zero_lag", "probe_lag", "continuation_lag")],
        [rows[c] for c in ("zero_lag", "probe_lag", "continuation_lag")],
        np.nan,
    )
    rows = rows[rows["lag"].to_numpy(float) == stage_lag]
    stats = rows.groupby([*CAND, "name"])["value"].agg(["mean", "std", "size"]).unstack("name")
    suffix = {"mean": "", "std": "_std", "size": "_n"}
    stats.columns = [f"{name}{suffix[stat]}" for stat, name in stats.columns]
    out = _merge_stats(out, stats, CAND)
    for name in columns:  # a metric nobody wrote still gets its columns
        for column in (name, f"{name}_std", f"{name}_n"):
            if column not in out.columns:
                out[column] = np.nan
    counts = ["n_runs", "n_diverged", *(f"{name}_n" for name in columns)]
    out[counts] = out[counts].fillna(0).astype(int)
    out["diverged_lag"] = out["diverged_lag"].astype(float)
    return out.reset_index(drop=True)


def eval_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Eval-loss curves: mean, std and count over replicates per (cell, candidate, lag)."""
    rows = frame[(frame["metric"] == "eval_loss") & ~frame["candidate"].str.startswith("_")]
    curves = rows.groupby([*CAND, "lag"])["value"].agg(["mean", "std", "size"]).reset_index()
    return curves.sort_values([*CAND, "lag"]).reset_index(drop=True)
