"""Per-cell stage lags and a per-candidate summary of every metric at its stage lag."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

ROW = ["experiment", "seed", "growth_step"]
CELL = [*ROW, "regime"]
CAND = [*CELL, "candidate"]

CANDIDATE_ORDER = (
    "exact_copy", "perturbative", "asymmetric_reset", "structured_non_clone", "scratch_wide", "continue_small",
)
# Both regimes always get a table: a regime nobody ran must still show up as "not run".
REGIME_ORDER = ("deterministic", "stochastic")
PROBE_METRICS = ("probe_kl", "probe_rms", "probe_escape")
CONTINUATION_METRICS = ("auc", "final_loss", "wall_time")

# summary column -> (metric in results.jsonl, the stage-lag column it is read at)
SOURCES = {
    "token_kl": ("token_kl", "zero_lag"),
    "loss_gap": ("loss_gap", "zero_lag"),
    "max_logit_diff": ("max_logit_diff", "zero_lag"),
    "probe_kl": ("probe_kl", "probe_lag"),
    "probe_rms": ("probe_rms", "probe_lag"),
    "probe_escape": ("probe_escape", "probe_lag"),
    "probe_eval_loss": ("eval_loss", "probe_lag"),
    "auc": ("auc", "continuation_lag"),
    "final_loss": ("final_loss", "continuation_lag"),
}


def ordered_candidates(names: Iterable[str]) -> list[str]:
    """Known candidates in SPEC order, then any others alphabetically; `_pool` style names dropped."""
    names = {n for n in names if not n.startswith("_")}
    known = [c for c in CANDIDATE_ORDER if c in names]
    return known + sorted(names - set(known))


def ordered_regimes(names: Iterable[str]) -> list[str]:
    """The two SPEC regimes first (always present), then any others alphabetically."""
    return list(REGIME_ORDER) + sorted(set(names) - set(REGIME_ORDER))


def _mode(lags: pd.Series) -> float:
    """Most common lag (smallest on ties), NaN when there is none."""
    counts = lags.value_counts()
    if counts.empty:
        return math.nan
    return float(min(counts[counts == counts.max()].index))


def _lag_of(frame: pd.DataFrame, metrics: tuple[str, ...], keys: list[str]) -> pd.Series:
    """The stage lag per group: where the given metrics live."""
    rows = frame[frame["metric"].isin(metrics)]
    return rows.groupby(keys)["lag"].agg(_mode) if not rows.empty else pd.Series(dtype=float)


def cell_universe(frame: pd.DataFrame) -> pd.DataFrame:
    """Every (experiment, seed, growth_step) seen, crossed with every regime, and each experiment's candidates."""
    rows = frame[ROW].drop_duplicates()
    regimes = pd.DataFrame({"regime": ordered_regimes(frame["regime"].unique())})
    cells = rows.merge(regimes, how="cross")
    cands = frame[["experiment", "candidate"]].drop_duplicates()
    cands = cands[~cands["candidate"].str.startswith("_")]
    return cells.merge(cands, on="experiment")


def stage_lags(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell: zero_lag (0), probe_lag (where probe_* live) and continuation_lag (where auc lives)."""
    cells = cell_universe(frame)[CELL].drop_duplicates().reset_index(drop=True)
    cells["zero_lag"] = 0.0
    for column, metrics in (("probe_lag", PROBE_METRICS), ("continuation_lag", CONTINUATION_METRICS)):
        per_cell = _lag_of(frame, metrics, CELL).rename(column)
        # A cell where no candidate reached the stage still gets the experiment's lag, for labels.
        per_exp = _lag_of(frame, metrics, ["experiment"]).rename(f"{column}_exp")
        cells = cells.merge(per_cell, left_on=CELL, right_index=True, how="left")
        cells = cells.merge(per_exp, left_on="experiment", right_index=True, how="left")
        cells[column] = cells[column].fillna(cells.pop(f"{column}_exp")).astype(float)
    return cells


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, candidate): each metric at its stage lag (mean, std, n over replicates), divergence, runs."""
    lags = stage_lags(frame)
    out = cell_universe(frame).merge(lags, on=CELL, how="left")
    runs = frame.groupby(CAND)["replicate"].nunique().rename("n_runs")
    out = out.merge(runs, left_on=CAND, right_index=True, how="left")
    out["n_runs"] = out["n_runs"].fillna(0).astype(int)
    div = frame[frame["metric"] == "diverged"].groupby(CAND).agg(
        diverged_lag=("lag", "min"), n_diverged=("replicate", "nunique"))
    out = out.merge(div, left_on=CAND, right_index=True, how="left")
    out["n_diverged"] = out["n_diverged"].fillna(0).astype(int)
    for name, (metric, lag_column) in SOURCES.items():
        rows = frame[frame["metric"] == metric].merge(lags[[*CELL, lag_column]], on=CELL)
        rows = rows[rows["lag"] == rows[lag_column]]
        stats = rows.groupby(CAND)["value"].agg(["mean", "std", "size"])
        stats.columns = [name, f"{name}_std", f"{name}_n"]
        out = out.merge(stats, left_on=CAND, right_index=True, how="left")
        out[f"{name}_n"] = out[f"{name}_n"].fillna(0).astype(int)
    return out.reset_index(drop=True)


def eval_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Eval-loss curves: mean, std and count over replicates per (cell, candidate, lag)."""
    rows = frame[(frame["metric"] == "eval_loss") & ~frame["candidate"].str.startswith("_")]
    curves = rows.groupby([*CAND, "lag"])["value"].agg(["mean", "std", "size"]).reset_index()
    return curves.sort_values([*CAND, "lag"]).reset_index(drop=True)
