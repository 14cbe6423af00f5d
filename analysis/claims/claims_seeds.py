"""The ranking claims of arXiv 2604.04281 (SPEC section 1, claims 1-3) pooled over pretraining seeds.

The paper report (analysis.claims) judges every claim per cell, that is per seed. A claim about warm
starts in general "holds across seeds" only when its CI over seeds clears zero (SPEC section 5c), so
the study also states claims 1-3 pooled with the hierarchical bootstrap (seeds, replicates within a
seed, eval sequences; analysis.axes.hierarchical), per group (experiment, policy, growth step, regime):

- effect = the best rival's eval loss minus the claimed winner's (positive: the winner is ahead, the
  sign of the paper report's effects; best rival = the lowest pooled loss; in each bootstrap draw the best rival of that draw, so the choice of rival is resampled too),
  at the claim's lag: the probe lag for claim 1, the evaluated lag nearest the paper's 128 for claims 2
  and 3 (named in the evidence);
- per group: `holds` if the CI lies above 0, `does not hold` if it lies below 0, else `inconclusive`;
- across groups: `holds` iff it holds in every group, `does not hold` iff it fails in one, else
  `inconclusive`; the effect shown is a failing group's when one fails, else the least favourable
  group's. `not run` without a group that holds the claimed winner and a rival.

Claims 4-6 are about selectors (rank correlations per cell); they stay per seed in the paper report.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.axes import hierarchical as h
from analysis.axes.curves import Curves
from analysis.claims.claim_text import CLAIM_TEXT, FAILS, HOLDS, INCONCLUSIVE, NOT_RUN
from growth.measure import metric_registry
from growth.measure.metric_registry import Stage

PAPER_CONTINUATION_LAG = 128  # the paper's continuation lag (SPEC section 6)


@dataclass(frozen=True)
class RankingClaim:
    """A claim that `winner` ranks first at a lag, in the groups of some regimes."""

    claim_id: int
    winner: str
    regimes: tuple[str, ...]
    lag: str  # "probe" or "continuation"


RANKING_CLAIMS = (
    RankingClaim(1, "exact_copy", ("deterministic", "stochastic"), "probe"),
    RankingClaim(2, "exact_copy", ("stochastic",), "continuation"),
    RankingClaim(3, "structured_non_clone", ("deterministic",), "continuation"),
)


@dataclass(frozen=True)
class GroupVerdict:
    """One group's pooled test of one claim."""

    label: str
    lag: int
    rival: str
    effect: float
    low: float
    high: float
    verdict: str


def _lag_index(curves: Curves, which: str, probe_lag: int) -> int | None:
    lags = np.asarray(curves.lags)
    if which == "probe":
        hit = np.flatnonzero(lags == probe_lag)
        return int(hit[0]) if len(hit) else None
    positive = np.flatnonzero(lags > probe_lag)
    if not len(positive):
        return None
    return int(positive[np.argmin(np.abs(lags[positive] - PAPER_CONTINUATION_LAG))])


def group_verdict(curves: Curves, claim: RankingClaim, probe_lag: int, n_resamples: int, seed: int):
    """The pooled test of `claim` in one group, or None when the group cannot test it."""
    if claim.winner not in curves.candidates or len(curves.candidates) < 2:
        return None
    li = _lag_index(curves, claim.lag, probe_lag)
    if li is None:
        return None
    data = h.nested(curves.x[..., li], curves.valid)
    rng = np.random.default_rng([seed, zlib.crc32(repr(("paper", claim.claim_id, curves.key)).encode())])
    est, boot = data.estimate(), h.draws(data, n_resamples, rng)
    w = curves.candidates.index(claim.winner)
    rivals = [i for i in range(len(curves.candidates)) if i != w]
    best = min(rivals, key=lambda i: est[i])
    effect = float(est[best] - est[w])
    low, high = h.interval(np.array(effect), boot[:, rivals].min(axis=1) - boot[:, w], data.n_seeds)
    verdict = HOLDS if low > 0 else FAILS if high < 0 else INCONCLUSIVE
    lag = int(curves.lags[li])
    return GroupVerdict(curves.label(), lag, curves.candidates[best], effect, float(low), float(high), verdict)


def _combine(verdicts: list[str]) -> str:
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def claim_row(claim: RankingClaim, groups: list[Curves], probe_lag: int, n_resamples: int, seed: int) -> dict:
    """One row of the pooled table."""
    tested = [
        g
        for curves in groups
        if curves.key[-1] in claim.regimes
        for g in [group_verdict(curves, claim, probe_lag, n_resamples, seed)]
        if g is not None
    ]
    row = {"claim_id": claim.claim_id, "claim": CLAIM_TEXT[claim.claim_id], "n_groups": len(tested)}
    if not tested:
        return {**row, "verdict": NOT_RUN, "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                "evidence": f"no group with {claim.winner} and a rival at the {claim.lag} lag", "cells": ""}  # fmt: skip
    # The effect shown is the group that decides the verdict: a failing one, else the least favourable lower end.
    worst = min([g for g in tested if g.verdict == FAILS] or tested, key=lambda g: g.low)
    evidence = "; ".join(
        f"{g.label} lag {g.lag}: {g.rival} - {claim.winner} = {g.effect:+.4f} [{g.low:+.4f}, {g.high:+.4f}] {g.verdict}"
        for g in tested
    )
    return {**row, "verdict": _combine([g.verdict for g in tested]), "effect": worst.effect, "ci_low": worst.low,
            "ci_high": worst.high, "evidence": evidence, "cells": " | ".join(g.label for g in tested)}  # fmt: skip


def probe_lag_of(frame: pd.DataFrame) -> int | None:
    """The lag the probe-stage metrics were recorded at (the most common one), None without any."""
    probe = frame.loc[frame["metric"].isin([m.name for m in metric_registry.of_stage(Stage.probe)]), "lag"]
    return int(probe.mode().min()) if len(probe) else None


def pooled_claims(frame: pd.DataFrame, groups: list[Curves], n_resamples: int, seed: int) -> pd.DataFrame:
    """Claims 1-3 pooled over seeds, one row each (`frame`: the result rows, for the probe lag)."""
    probe_lag = probe_lag_of(frame)
    usable = groups if probe_lag is not None else []  # without a probe lag no lag of the claims is known
    return pd.DataFrame([claim_row(c, usable, probe_lag or 0, n_resamples, seed) for c in RANKING_CLAIMS])
