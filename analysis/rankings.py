"""Rank the candidates of each cell at lag 0, the probe lag and the continuation lag (1 = best)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.cells import CELL

OK, DIVERGED, NOT_RUN, NOT_APPLICABLE = "ok", "diverged", "not run", "n/a"
# Float32 evaluation noise: a function-preserving candidate reads ~1e-12 KL and ~1e-7 loss gap, not 0.
# Below these, zero-step signals count as exactly 0 so that preserving candidates tie instead of being
# ordered by rounding error.
ZERO_TOL = {"token_kl": 1e-6, "loss_gap": 1e-5}


@dataclass(frozen=True)
class Stage:
    """A ranking point: which lag column it sits at and which summary columns rank it."""

    name: str
    lag_column: str
    metric: str
    aux_metric: str | None
    label: str


STAGES = (
    Stage("zero_step", "zero_lag", "token_kl", "loss_gap", "zero-step KL, then |loss gap|"),
    Stage("probe", "probe_lag", "probe_eval_loss", None, "eval loss at the probe lag"),
    Stage("continuation", "continuation_lag", "auc", None, "eval-loss AUC at the continuation lag"),
)
# The schema says these metrics are never written for these candidates: show "n/a", not "not run".
NOT_WRITTEN = {("zero_step", "continue_small")}


def clip_zero(values: pd.Series, metric: str) -> pd.Series:
    """Absolute value with |v| below the metric's tolerance set to 0 (for ranking only, not display)."""
    tol = ZERO_TOL.get(metric, 0.0)
    out = values.abs() if metric == "loss_gap" else values.copy()
    return out.where(~(values.abs() < tol), 0.0)


def stage_status(row: pd.Series, stage: Stage) -> str:
    """ok / diverged / not run / n/a for one candidate at one stage."""
    if row["n_runs"] == 0:
        return NOT_RUN
    lag = row[stage.lag_column]
    div = row["diverged_lag"]
    if math.isnan(lag) and stage.name != "continuation":
        return NOT_RUN  # nobody wrote this stage's metrics, so its lag is unknown
    if not math.isnan(div) and (math.isnan(lag) or div <= lag):
        return DIVERGED
    if row[f"{stage.metric}_n"] == 0:
        return NOT_APPLICABLE if (stage.name, row["candidate"]) in NOT_WRITTEN else NOT_RUN
    # A present row whose value is null was non-finite: the run blew up there.
    return DIVERGED if math.isnan(row[stage.metric]) else OK


def _min_ranks(keys: list[tuple[float, ...]]) -> list[int]:
    """Competition ranks (1, 1, 3) of lexicographic keys, lower is better."""
    return [1 + sum(other < key for other in keys) for key in keys]


def rank_cell(cell: pd.DataFrame, stage: Stage) -> pd.DataFrame:
    """Rank one cell's candidates at one stage; diverged candidates tie last, others get no rank."""
    out = cell.copy()
    out["stage"] = stage.name
    out["lag"] = out[stage.lag_column]
    out["status"] = [stage_status(r, stage) for _, r in out.iterrows()]
    out["metric"] = stage.metric
    out["value"] = out[stage.metric]
    out["value_std"] = out[f"{stage.metric}_std"]
    out["value_n"] = out[f"{stage.metric}_n"]
    out["aux_metric"] = stage.aux_metric
    out["aux_value"] = out[stage.aux_metric] if stage.aux_metric else np.nan
    out["aux_std"] = out[f"{stage.aux_metric}_std"] if stage.aux_metric else np.nan
    ok = out["status"] == OK
    primary = clip_zero(out[stage.metric], stage.metric)
    aux = clip_zero(out[stage.aux_metric], stage.aux_metric).fillna(np.inf) if stage.aux_metric else 0.0 * primary
    keys = list(zip(primary[ok], aux[ok]))
    out["rank"] = np.nan
    out.loc[ok, "rank"] = _min_ranks(keys)
    out.loc[out["status"] == DIVERGED, "rank"] = int(ok.sum()) + 1
    out["winner"] = ok & (out["rank"] == 1)
    return out


def rank_all(summary: pd.DataFrame) -> pd.DataFrame:
    """Tidy table: one row per (cell, stage, candidate) with status, rank, metric value and winner flag."""
    keep = [*CELL, "candidate", "stage", "lag", "status", "rank", "metric", "value", "value_std", "value_n",
            "aux_metric", "aux_value", "aux_std", "n_runs", "n_diverged", "diverged_lag", "winner"]
    parts = [rank_cell(cell, stage)[keep] for stage in STAGES for _, cell in summary.groupby(CELL, sort=False)]
    return pd.concat(parts, ignore_index=True)
