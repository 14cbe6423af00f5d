"""Rank the candidates of each cell at lag 0, the probe lag and the continuation lag (1 = best)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.loading.cells import CELL, ordered_candidates, ordered_regimes
from analysis.ranking.stats import clearly_above_zero, clearly_below_zero
from growth.measure import metric_registry
from growth.widen import registry

OK, DIVERGED, NOT_RUN, NOT_APPLICABLE = "ok", "diverged", "not run", "n/a"


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
NOT_WRITTEN = {("zero_step", registry.reference())}


def clip_zero(value: float, metric: str) -> float:
    """|v| for an absolute metric (the loss gap); 0 below the metric's noise floor (for ranking only).

    Float32 evaluation noise: a function-preserving candidate reads ~1e-12 KL and ~1e-7 loss gap, not 0;
    below the registry's noise floors, zero-step signals count as exactly 0 so that preserving candidates
    tie instead of being ordered by rounding error."""
    return metric_registry.ranked_value(metric, value)


def stage_status(row: Mapping[str, Any], stage: Stage) -> str:
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


def rank_cell(cell: list[Mapping[str, Any]], stage: Stage) -> list[dict]:
    """Rank one cell's candidates (summary records) at one stage; diverged tie last, the rest get no rank."""
    out = []
    for row in cell:
        aux = stage.aux_metric
        out.append(
            {
                **{k: row[k] for k in (*CELL, "candidate", "n_runs", "n_diverged", "diverged_lag")},
                "stage": stage.name,
                "lag": row[stage.lag_column],
                "status": stage_status(row, stage),
                "rank": math.nan,
                "metric": stage.metric,
                "value": row[stage.metric],
                "value_std": row[f"{stage.metric}_std"],
                "value_n": row[f"{stage.metric}_n"],
                "aux_metric": aux,
                "aux_value": row[aux] if aux else math.nan,
                "aux_std": row[f"{aux}_std"] if aux else math.nan,
            }
        )
    ok = [r for r in out if r["status"] == OK]
    keys = []
    for r in ok:
        aux = clip_zero(r["aux_value"], stage.aux_metric) if stage.aux_metric else 0.0
        keys.append((clip_zero(r["value"], stage.metric), math.inf if math.isnan(aux) else aux))
    for r, rank in zip(ok, _min_ranks(keys), strict=True):
        r["rank"] = float(rank)
    for r in out:
        if r["status"] == DIVERGED:
            r["rank"] = float(len(ok) + 1)
        r["winner"] = r["status"] == OK and r["rank"] == 1
    return out


def rank_all(summary: pd.DataFrame) -> pd.DataFrame:
    """Tidy table: one row per (cell, stage, candidate) with status, rank, metric value and winner flag."""
    cells: dict[tuple, list[dict]] = {}
    for row in summary.to_dict("records"):
        cells.setdefault(tuple(row[k] for k in CELL), []).append(row)
    records = [r for stage in STAGES for cell in cells.values() for r in rank_cell(cell, stage)]
    return pd.DataFrame.from_records(records)


TIE_STAGES = ("probe", "continuation")  # the stages with a bootstrap CI (analysis.ranking.stats.STAGE_METRIC)


def apply_ties(ranks: pd.DataFrame, candidate_ci: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Add CIs to a rank table and give rank 1 to candidates statistically tied with the leader.

    `candidate_ci` and `pairs` are analysis.ranking.stats.candidate_table / pair_table of the same policy. The leader
    of a (cell, stage) is the ok candidate of point rank 1 (the first in SPEC order on an exact tie); any ok
    candidate whose paired difference to the leader has a CI containing 0 gets rank 1, `winner` and
    `tied_with_leader`. Without a CI (one run, no per-sequence data) ranks stay the point ranks.
    """
    out = ranks.copy()
    out["point_rank"] = out["rank"]
    out["leader"] = out["winner"]
    for column in ("ci_low", "ci_high", "diff_to_leader", "diff_ci_low", "diff_ci_high"):
        out[column] = math.nan
    out["n_replicates"] = out["n_runs"]
    out["n_sequences"] = 1
    out["tied_with_leader"] = False
    ci = {
        (*(r[k] for k in CELL), r["stage"], r["candidate"]): r
        for r in candidate_ci.to_dict("records")
        if r["stage"] in TIE_STAGES
    }
    pair = {(*(r[k] for k in CELL), r["stage"], r["candidate"], r["other"]): r for r in pairs.to_dict("records")}
    records = out.to_dict("records")
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        key = (*(r[k] for k in CELL), r["stage"])
        if r["stage"] in TIE_STAGES:
            cells.setdefault(key, []).append(r)
        hit = ci.get((*key, r["candidate"]))
        if hit is not None:
            r.update(ci_low=hit["ci_low"], ci_high=hit["ci_high"])
            r.update(n_replicates=hit["n_replicates"], n_sequences=hit["n_sequences"])
    for key, cell in cells.items():
        leaders = [r for r in cell if r["leader"]]
        if not leaders:
            continue
        leader = leaders[0]["candidate"]
        for r in cell:
            if r["status"] != OK or r["candidate"] == leader:
                continue
            hit = pair.get((*key, r["candidate"], leader))
            if hit is None:
                continue
            r.update(diff_to_leader=hit["diff"], diff_ci_low=hit["ci_low"], diff_ci_high=hit["ci_high"])
            low, high = hit["ci_low"], hit["ci_high"]
            if not (math.isnan(low) or clearly_above_zero(low) or clearly_below_zero(high)):
                r.update(tied_with_leader=True, rank=1.0, winner=True)
        for r in leaders:
            r["diff_to_leader"] = 0.0
    return pd.DataFrame.from_records(records, columns=out.columns)


def lag_text(values: pd.Series) -> str:
    """A stage's lag for a header or cell: the number, several numbers, or 'not run'."""
    lags = sorted({int(v) for v in values if not math.isnan(v)})
    return "/".join(str(v) for v in lags) if lags else "not run"


class RankIndex:
    """Tidy rank rows looked up by (regime, row key, stage, candidate), built once per report."""

    def __init__(self, ranks: pd.DataFrame) -> None:
        self.candidates = ordered_candidates(ranks["candidate"].unique())
        self.regimes = ordered_regimes(ranks["regime"].unique())
        self.rows = sorted(set(zip(ranks["experiment"], ranks["seed"], ranks["growth_step"], strict=True)))
        self.multi = ranks["experiment"].nunique() > 1
        self._rows = {
            (r["regime"], r["experiment"], r["seed"], r["growth_step"], r["stage"], r["candidate"]): r
            for r in ranks.to_dict("records")
        }

    def get(self, regime: str, row: tuple, stage: str, candidate: str) -> dict | None:
        """One candidate's rank record, or None when the analysis never saw it."""
        return self._rows.get((regime, *row, stage, candidate))

    def stage(self, regime: str, row: tuple, stage: str) -> list[dict]:
        """All candidates' records of one (regime, row, stage)."""
        found = (self.get(regime, row, stage, c) for c in self.candidates)
        return [r for r in found if r is not None]

    def lag(self, regime: str, stage: str, rows: list[tuple] | None = None) -> str:
        """The stage's lag over the given rows (all rows by default)."""
        recs = [r for row in (rows or self.rows) for r in self.stage(regime, row, stage)]
        return lag_text(pd.Series([r["lag"] for r in recs], dtype=float))

    def winners(self, regime: str, row: tuple, stage: str) -> str:
        """Space-separated winners, or '-'."""
        return " ".join(r["candidate"] for r in self.stage(regime, row, stage) if r["winner"]) or "-"
