"""Verdicts on the claims of SPEC section 1, each from a stated operational test (docs/analysis.md).

One path over one named record per claim (`ClaimTest` in CLAIMS): each reads the same `Inputs`, gives its
point verdict (`Point`, on means) and its statistical one (`Verdict`, analysis/claims/claim_stats.py, on paired
CIs) over the same cells, and `evaluate_claims` makes the two one `Claim` row of claims.csv.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import pandas as pd

from analysis.claims import claim_stats as stat
from analysis.claims.claim_text import (
    CLAIM_TEXT,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_RUN,
    PAPER_STOCHASTIC_CELLS,
    REGIMES,
    ZERO_STEP_TAU_MAX,
    Claim,
    FirstPlace,
    Inputs,
    Point,
    Verdict,
    cell_name,
    mean_tau,
    scope_cells,
)
from analysis.ranking.rankings import DIVERGED, OK
from analysis.ranking.selectors import TauDraws, signals
from growth.config import Regime

__all__ = ["FAILS", "HOLDS", "INCONCLUSIVE", "NOT_RUN", "Claim", "evaluate_claims"]


# ---------------------------------------------------------------- first-place claims (1, 2, 3)


def _point_first_place(inputs: Inputs, scope: FirstPlace) -> Point:
    """'candidate ranks first at stage in every evaluated cell' on the point ranks (ties count)."""
    evaluated, first, not_first = [], [], []
    for c in scope_cells(inputs.ranks, scope):
        name = cell_name(c.experiment, c.seed, c.growth_step, None if scope.regime else c.regime, inputs.multi)
        evaluated.append(name)
        mine = c.rows[c.rows["candidate"] == scope.candidate]
        # Point leader: rank 1 of the means *and* not diverged (when all diverge, all "tie" at rank 1).
        flag = "leader" if "leader" in c.rows.columns else "winner"
        if mine[flag].iloc[0]:
            first.append(name)
        else:
            who = ", ".join(c.rows[c.rows[flag]]["candidate"]) or "none"
            not_first.append(f"{name} (rank {int(mine['rank'].iloc[0])}, {mine['status'].iloc[0]}; winner {who})")
    if not evaluated:
        return Point(NOT_RUN, f"no cell ranks {scope.candidate} against a rival at {scope.stage}", "")
    evidence = f"{scope.candidate} first in {len(first)}/{len(evaluated)} cells"
    if not_first:
        evidence += "; not first in: " + "; ".join(not_first)
    return Point(HOLDS if not not_first else FAILS, evidence + scope.note, "; ".join(evaluated))


def _claim2_scope(inputs: Inputs) -> FirstPlace:
    """exact_copy in stochastic continuation: on the paper's cells when any exists, else on every one."""
    paper = FirstPlace("continuation", Regime.stochastic, "exact_copy", PAPER_STOCHASTIC_CELLS)
    if not scope_cells(inputs.ranks, paper):
        return replace(paper, cells=None, note=" (no paper-grid cell present: evaluated on every stochastic cell)")
    ranks = inputs.ranks
    rows = ranks[
        (ranks["stage"] == paper.stage)
        & (ranks["regime"] == paper.regime)
        & (ranks["candidate"] == paper.candidate)
        & ranks["status"].isin([OK, DIVERGED])
    ]
    present = set(zip(rows["seed"], rows["growth_step"], strict=True))
    missing = [f"seed {s} @ {g}" for s, g in PAPER_STOCHASTIC_CELLS if (s, g) not in present]
    return replace(
        paper, note=f" (paper cells missing: {', '.join(missing)})" if missing else " (all paper cells present)"
    )


# ---------------------------------------------------------------- signal-agreement claims (4, 5, 6)


def _fmt(value: float) -> str:
    """A tau for the evidence column."""
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def _cells_of(agreement: pd.DataFrame, names: tuple[str, ...]) -> str:
    """The cells a tau-based verdict used."""
    rows = agreement[agreement["signal"].isin(names)][["experiment", "seed", "growth_step", "regime"]]
    rows = rows.drop_duplicates().sort_values(["regime", "experiment", "seed", "growth_step"])
    multi = rows["experiment"].nunique() > 1
    return "; ".join(cell_name(e, s, g, r, multi) for e, s, g, r in rows.itertuples(index=False))


def _point4(inputs: Inputs) -> Point:
    """Zero-step signals' tau with the 128-step ranking stays below the threshold."""
    parts, verdicts = [], []
    for signal in ("token_kl", "abs_loss_gap"):
        mean, n = mean_tau(inputs.agreement, signal)
        if n:
            verdicts.append(mean < ZERO_STEP_TAU_MAX)
            parts.append(f"{signal} tau {_fmt(mean)} over {n} cells")
    if not verdicts:
        return Point(NOT_RUN, "no cell has token_kl/loss_gap and auc for 2+ candidates", "")
    kl_mean, kl_n = mean_tau(inputs.agreement, "probe_kl")
    parts.append(f"(probe_kl tau {_fmt(kl_mean)} over {kl_n} cells, for comparison)")
    cells = _cells_of(inputs.agreement, ("token_kl", "abs_loss_gap"))
    return Point(HOLDS if all(verdicts) else FAILS, "; ".join(parts), cells)


def _point5(inputs: Inputs) -> Point:
    """probe_kl has the best worst-regime mean tau among the primary signals."""
    scores = {}
    for signal in (s.name for s in signals() if s.primary):
        per_regime = [mean_tau(inputs.agreement, signal, (r,))[0] for r in REGIMES]
        if not any(math.isnan(v) for v in per_regime):
            scores[signal] = min(per_regime)
    if "probe_kl" not in scores:
        return Point(NOT_RUN, "probe_kl vs auc not available in both regimes", "")
    evidence = "worst-regime mean tau: " + ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1])
    )
    verdict = HOLDS if scores["probe_kl"] >= max(scores.values()) else FAILS
    return Point(verdict, evidence, _cells_of(inputs.agreement, ("probe_kl",)))


def _point6(inputs: Inputs) -> Point:
    """Escape agrees with deterministic AUC, but not with stochastic AUC nor with the probe-lag loss."""
    det, n_det = mean_tau(inputs.agreement, "probe_escape", ("deterministic",))
    sto, n_sto = mean_tau(inputs.agreement, "probe_escape", ("stochastic",))
    short, n_short = mean_tau(inputs.probe_agreement, "probe_escape")
    evidence = (
        f"deterministic AUC tau {_fmt(det)} ({n_det} cells); stochastic AUC tau {_fmt(sto)} "
        f"({n_sto} cells); probe-lag loss tau {_fmt(short)} ({n_short} cells)"
    )
    if not (n_det and n_sto and n_short):
        return Point(NOT_RUN, evidence, "")
    holds = det > 0 and sto <= 0 and short <= 0
    return Point(HOLDS if holds else FAILS, evidence, _cells_of(inputs.agreement, ("probe_escape",)))


# ---------------------------------------------------------------- the claims, one record each


@dataclass(frozen=True)
class ClaimTest:
    """One claim: its id, its operational tests, and the two verdicts over the same cells."""

    claim_id: int
    test: str  # the point test, in words
    stat_test: str  # the statistical test, in words
    point: Callable[[Inputs], Point]
    stat: Callable[[Inputs], Verdict]

    @property
    def text(self) -> str:
        return CLAIM_TEXT[self.claim_id]

    def judge(self, inputs: Inputs) -> Claim:
        """Both verdicts as one claims.csv row: the statistical one in front, the point one beside it."""
        point, verdict = self.point(inputs), self.stat(inputs)
        evidence = f"{verdict.evidence} | point estimates: {point.evidence}" if verdict.evidence else point.evidence
        return Claim(
            self.claim_id,
            self.text,
            NOT_RUN if point.verdict == NOT_RUN else verdict.verdict,
            self.test,
            evidence,
            point.cells,
            point.verdict,
            verdict.effect,
            verdict.ci_low,
            verdict.ci_high,
            self.stat_test,
        )


def first_place(claim_id: int, test: str, scope: Callable[[Inputs], FirstPlace]) -> ClaimTest:
    """A claim 'candidate ranks first at stage': both verdicts judge the cells of `scope`."""
    return ClaimTest(
        claim_id,
        test,
        stat.FIRST_PLACE_TEST,
        lambda inputs: _point_first_place(inputs, scope(inputs)),
        lambda inputs: stat.stat_first_place(inputs, scope(inputs)),
    )


CLAIMS = (
    first_place(
        1,
        "exact_copy wins (probe-lag eval-loss rank 1, ties count, not diverged) in every cell, "
        "both regimes, where it was ranked against at least one other candidate",
        lambda _: FirstPlace("probe", None, "exact_copy", None),
    ),
    first_place(
        2,
        "exact_copy wins (AUC rank 1, ties count, not diverged) in every stochastic cell of the paper grid "
        "(seed 0 @ 1000, seed 0 @ 2000, seed 1 @ 2000) that exists; all stochastic cells if none does",
        _claim2_scope,
    ),
    first_place(
        3,
        "structured_non_clone wins (AUC rank 1, ties count, not diverged) in every "
        "deterministic cell where it was ranked against at least one other candidate",
        lambda _: FirstPlace("continuation", Regime.deterministic, "structured_non_clone", None),
    ),
    ClaimTest(
        4,
        f"mean Kendall tau (over all cells, both regimes) with the AUC ranking is < {ZERO_STEP_TAU_MAX} "
        "for both zero-step signals, token_kl and |loss_gap| (lower = predicted better)",
        stat.CLAIM4_TEST,
        _point4,
        stat.stat_claim4,
    ),
    ClaimTest(
        5,
        "robustness = the worse of the two per-regime mean taus with the AUC ranking; holds if probe_kl's "
        "is >= every other primary signal's (token_kl, |loss_gap|, probe_rms low, probe_escape high, "
        "probe eval loss) that was measured in both regimes",
        stat.CLAIM5_TEST,
        _point5,
        stat.stat_claim5,
    ),
    ClaimTest(
        6,
        "probe_escape ranked higher = better: mean tau with the AUC ranking > 0 in deterministic cells, "
        "<= 0 in stochastic cells, and mean tau with the probe-lag eval-loss ranking <= 0 over all cells",
        stat.CLAIM6_TEST,
        _point6,
        stat.stat_claim6,
    ),
)

CLAIM_COLUMNS = [
    "claim_id",
    "claim",
    "verdict",
    "effect",
    "ci_low",
    "ci_high",
    "evidence",
    "point_verdict",
    "test",
    "stat_test",
    "cells",
]


def evaluate_claims(
    ranks: pd.DataFrame,
    agreement: pd.DataFrame,
    probe_agreement: pd.DataFrame,
    pairs: pd.DataFrame | None = None,
    draws: TauDraws | None = None,
    probe_draws: TauDraws | None = None,
) -> pd.DataFrame:
    """The claims table: statistical verdict, effect and CI, evidence, point verdict, the tests, the cells used.

    `pairs` (analysis.ranking.stats.pair_table) and the tau draws (analysis.ranking.stats.tau_draws, keyed without the policy)
    must come from the same policy as `ranks`. Without them every verdict that exists is inconclusive.
    """
    pairs = pairs if pairs is not None else pd.DataFrame(columns=["experiment", "candidate", "other"])
    inputs = Inputs(ranks, agreement, probe_agreement, pairs, draws, probe_draws)
    return pd.DataFrame.from_records([asdict(c.judge(inputs)) for c in CLAIMS], columns=CLAIM_COLUMNS)
