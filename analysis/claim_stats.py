"""Statistical verdicts of the claims: the same tests as analysis/claims.py on paired bootstrap CIs.

Every verdict is a named record (`Verdict`): holds / does not hold / inconclusive, the deciding effect,
its CI and the evidence text; `with_statistics` puts it in front of the point-estimate claim.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.claim_text import (
    BEATEN,
    CI_LEVEL,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOISE,
    NOT_RUN,
    PAPER_STOCHASTIC_CELLS,
    REGIMES,
    STRICT,
    ZERO_STEP_TAU_MAX,
    Claim,
    cell_name,
    mean_tau,
)
from analysis.rankings import DIVERGED, OK
from analysis.selectors import TauDraws, scope_draws, signals
from analysis.stats import clearly_above_zero, clearly_below_zero


class Verdict(NamedTuple):
    """A statistical verdict: the verdict, the deciding effect and its CI, and the numbers behind it."""

    verdict: str
    effect: float
    ci_low: float
    ci_high: float
    evidence: str


def _fmt_ci(effect: float, low: float, high: float) -> str:
    """'+0.0500 [+0.0400, +0.0600]', or 'CI n/a'."""
    if math.isnan(effect):
        return "n/a"
    if math.isnan(low):
        return f"{effect:+.4f} (CI n/a)"
    return f"{effect:+.4f} [{low:+.4f}, {high:+.4f}]"


def _percentile(draws: np.ndarray) -> tuple[float, float]:
    alpha = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.percentile(draws, [alpha, 100 - alpha])
    return float(lo), float(hi)


def cell_standing(cell: pd.DataFrame, pairs: dict, candidate: str) -> tuple[str, float, float, float, str]:
    """X's standing in one (cell, stage): strictly first, beaten or inside the noise, and the deciding margin.

    margin = rival - X (lower is better, so > 0 = X better). Strictly first: X ok and every ok rival's
    margin has a CI entirely > 0 (diverged rivals count as beaten by X). Beaten: X diverged, or some rival's
    margin has a CI entirely < 0. Otherwise inside the noise (including: no CI available).
    Returns (standing, margin, ci_low, ci_high, rival) with the deciding rival: the most clearly ahead one
    when beaten, else the one with the smallest margin.
    """
    mine = cell[cell["candidate"] == candidate].iloc[0]
    if mine["status"] != OK:
        return BEATEN, math.nan, math.nan, math.nan, "(diverged)"
    rivals = cell[(cell["candidate"] != candidate) & (cell["status"] == OK)]
    margins = []
    for r in rivals.itertuples():
        key = (r.experiment, r.seed, r.growth_step, r.regime, r.stage, r.candidate, candidate)
        hit = pairs.get(key)
        diff, low, high = (
            (math.nan, math.nan, math.nan) if hit is None else (hit["diff"], hit["ci_low"], hit["ci_high"])
        )
        if hit is None:
            diff = float(r.value - mine["value"])
        margins.append((diff, low, high, r.candidate))
    if not margins:
        return STRICT, math.nan, math.nan, math.nan, "(all rivals diverged)"
    ahead = [m for m in margins if clearly_below_zero(m[2])]
    if ahead:
        return BEATEN, *min(ahead, key=lambda m: m[2])
    smallest = min(margins, key=lambda m: m[0])
    if all(clearly_above_zero(m[1]) for m in margins):
        return STRICT, *smallest
    return NOISE, *smallest


def stat_first_place(
    ranks: pd.DataFrame,
    pairs: pd.DataFrame,
    stage: str,
    regime: str | None,
    candidate: str,
    cells: tuple[tuple[int, int], ...] | None,
) -> Verdict:
    """Statistical verdict of 'candidate ranks first at stage' over the evaluated cells, effect, CI, evidence.

    Holds: strictly first in every cell; does not hold: beaten in at least one; else inconclusive.
    The effect is the deciding margin (rival - candidate, > 0 = candidate better): the most clearly ahead
    rival of a cell where it was beaten, else the smallest margin over all cells.
    """
    lookup = {
        (r["experiment"], r["seed"], r["growth_step"], r["regime"], r["stage"], r["candidate"], r["other"]): r
        for r in pairs.to_dict("records")
    }
    rows = ranks[(ranks["stage"] == stage) & ranks["status"].isin([OK, DIVERGED])]
    if regime:
        rows = rows[rows["regime"] == regime]
    multi = ranks["experiment"].nunique() > 1
    results = []
    for (exp, seed, step, reg), cell in rows.groupby(["experiment", "seed", "growth_step", "regime"], sort=True):
        if cells is not None and (seed, step) not in cells:
            continue
        if (cell["candidate"] == candidate).sum() == 0 or len(cell) < 2:
            continue
        results.append((cell_name(exp, seed, step, reg, multi), *cell_standing(cell, lookup, candidate)))
    if not results:
        return Verdict(NOT_RUN, math.nan, math.nan, math.nan, "")
    beaten = [r for r in results if r[1] == BEATEN]
    if beaten:
        verdict = FAILS
        decisive = [r for r in beaten if not math.isnan(r[2])]
        pick = min(decisive, key=lambda r: r[4]) if decisive else beaten[0]
    else:
        verdict = HOLDS if all(r[1] == STRICT for r in results) else INCONCLUSIVE
        finite = [r for r in results if not math.isnan(r[2])]
        pick = min(finite, key=lambda r: r[2]) if finite else results[0]
    counts = {k: sum(r[1] == k for r in results) for k in (STRICT, BEATEN, NOISE)}
    evidence = (
        f"{candidate}: strictly first in {counts[STRICT]}/{len(results)} cells, beaten in {counts[BEATEN]}, "
        f"inside the noise in {counts[NOISE]}; margin (rival - {candidate}) per cell: "
        + "; ".join(f"{r[0]}: {r[1]}, vs {r[5]} {_fmt_ci(r[2], r[3], r[4])}" for r in results)
    )
    return Verdict(verdict, pick[2], pick[3], pick[4], evidence)


def _draws_ci(draws: np.ndarray | None) -> tuple[float, float]:
    return (math.nan, math.nan) if draws is None else _percentile(draws)


def stat_claim4(agreement: pd.DataFrame, draws: TauDraws | None) -> Verdict:
    """Both zero-step signals' mean tau (all cells) has a CI entirely < ZERO_STEP_TAU_MAX: holds; one has a
    CI entirely >= it: does not hold; else inconclusive. Effect: the larger of the two mean taus."""
    parts = []
    for signal in ("token_kl", "abs_loss_gap"):
        mean, n = mean_tau(agreement, signal)
        if n:
            parts.append((signal, mean, *_draws_ci(scope_draws(agreement, draws, signal, REGIMES))))
    if not parts:
        return Verdict(NOT_RUN, math.nan, math.nan, math.nan, "")
    below = [p for p in parts if p[3] < ZERO_STEP_TAU_MAX]
    above = [p for p in parts if p[2] >= ZERO_STEP_TAU_MAX]
    verdict = FAILS if above else HOLDS if len(below) == len(parts) else INCONCLUSIVE
    pick = max(parts, key=lambda p: p[1])
    evidence = "; ".join(f"{p[0]} mean tau {_fmt_ci(p[1], p[2], p[3])}" for p in parts)
    return Verdict(verdict, pick[1], pick[2], pick[3], evidence)


def stat_claim5(agreement: pd.DataFrame, draws: TauDraws | None) -> Verdict:
    """Paired: robustness(probe_kl) - robustness(other) per draw, for each other primary signal measured in
    both regimes. Holds: every such difference has a CI entirely > 0; does not hold: one has a CI entirely
    < 0; else inconclusive (exact ties included). Effect: the smallest difference."""
    robust: dict[str, tuple[float, np.ndarray | None]] = {}
    for signal in (s.name for s in signals() if s.primary):
        per_regime = [mean_tau(agreement, signal, (r,))[0] for r in REGIMES]
        if any(math.isnan(v) for v in per_regime):
            continue
        regime_draws = [scope_draws(agreement, draws, signal, (r,)) for r in REGIMES]
        both = None if any(d is None for d in regime_draws) else np.minimum(*regime_draws)
        robust[signal] = (min(per_regime), both)
    if "probe_kl" not in robust or len(robust) < 2:
        return Verdict(NOT_RUN, math.nan, math.nan, math.nan, "")
    kl, kl_draws = robust.pop("probe_kl")
    diffs = []
    for signal, (value, d) in robust.items():
        low, high = (math.nan, math.nan) if d is None or kl_draws is None else _percentile(kl_draws - d)
        diffs.append((signal, kl - value, low, high))
    if any(d[3] < 0 for d in diffs):
        verdict = FAILS
    else:
        verdict = HOLDS if all(d[2] > 0 for d in diffs) else INCONCLUSIVE
    pick = min(diffs, key=lambda d: d[1])
    evidence = "robustness(probe_kl) - robustness(other): " + ", ".join(
        f"{d[0]} {_fmt_ci(d[1], d[2], d[3])}" for d in diffs
    )
    return Verdict(verdict, pick[1], pick[2], pick[3], evidence)


def stat_claim6(
    agreement: pd.DataFrame, probe_agreement: pd.DataFrame, draws: TauDraws | None, probe_draws: TauDraws | None
) -> Verdict:
    """(a) deterministic AUC tau > 0, (b) stochastic AUC tau <= 0, (c) probe-lag loss tau <= 0 (escape high =
    better). A part is established when its CI lies entirely on its side ((a) low > 0; (b), (c) high <= 0)
    and refuted when it lies entirely on the other ((a) high <= 0; (b), (c) low > 0). Holds: all three
    established; does not hold: one refuted; else inconclusive. Effect: the refuted, else the first
    undecided, else part (a)'s mean tau."""
    parts = []
    for name, frame, d, regimes, positive in (
        ("(a) deterministic AUC", agreement, draws, ("deterministic",), True),
        ("(b) stochastic AUC", agreement, draws, ("stochastic",), False),
        ("(c) probe-lag loss", probe_agreement, probe_draws, REGIMES, False),
    ):
        mean, n = mean_tau(frame, "probe_escape", regimes)
        if not n:
            return Verdict(NOT_RUN, math.nan, math.nan, math.nan, "")
        low, high = _draws_ci(scope_draws(frame, d, "probe_escape", regimes))
        if positive:
            state = "established" if low > 0 else "refuted" if high <= 0 else "undecided"
        else:
            state = "established" if high <= 0 else "refuted" if low > 0 else "undecided"
        parts.append((name, mean, low, high, state))
    states = [p[4] for p in parts]
    verdict = FAILS if "refuted" in states else HOLDS if set(states) == {"established"} else INCONCLUSIVE
    pick = next((p for p in parts if p[4] == "refuted"), None) or next(
        (p for p in parts if p[4] == "undecided"), parts[0]
    )
    evidence = "probe_escape mean tau: " + "; ".join(f"{p[0]} {_fmt_ci(p[1], p[2], p[3])} {p[4]}" for p in parts)
    return Verdict(verdict, pick[1], pick[2], pick[3], evidence)


STAT_TESTS = {
    "first": "paired 95% bootstrap CI of every rival's difference to the candidate; holds iff the candidate is "
    "strictly first (every difference's CI > 0) in every cell, does not hold iff beaten (a CI < 0, or the "
    "candidate diverged) in some cell, else inconclusive",
    4: "holds iff both zero-step signals' mean tau has a 95% CI entirely below the threshold; does not hold iff "
    "one has a CI entirely at or above it; else inconclusive",
    5: "paired CI of robustness(probe_kl) - robustness(other) per primary signal; holds iff all > 0, does not "
    "hold iff one < 0, else inconclusive",
    6: "each part's mean-tau CI on its side (established) or on the other (refuted); holds iff all three "
    "established, does not hold iff one refuted, else inconclusive",
}


def with_statistics(
    claims: list[Claim],
    ranks: pd.DataFrame,
    agreement: pd.DataFrame,
    probe_agreement: pd.DataFrame,
    pairs: pd.DataFrame | None,
    draws: TauDraws | None,
    probe_draws: TauDraws | None,
) -> list[Claim]:
    """The point claims with the statistical verdict, effect and CI put in front of them."""
    pairs = pairs if pairs is not None else pd.DataFrame(columns=["experiment", "candidate", "other"])
    stat = {
        1: stat_first_place(ranks, pairs, "probe", None, "exact_copy", None),
        3: stat_first_place(ranks, pairs, "continuation", "deterministic", "structured_non_clone", None),
        4: stat_claim4(agreement, draws),
        5: stat_claim5(agreement, draws),
        6: stat_claim6(agreement, probe_agreement, draws, probe_draws),
    }
    paper = stat_first_place(ranks, pairs, "continuation", "stochastic", "exact_copy", PAPER_STOCHASTIC_CELLS)
    stat[2] = (
        paper
        if paper[0] != NOT_RUN
        else stat_first_place(ranks, pairs, "continuation", "stochastic", "exact_copy", None)
    )
    out = []
    for c in claims:
        verdict, effect, low, high, evidence = stat[c.claim_id]
        if c.verdict == NOT_RUN:
            verdict = NOT_RUN
        test = STAT_TESTS.get(c.claim_id, STAT_TESTS["first"])
        evidence = f"{evidence} | point estimates: {c.evidence}" if evidence else c.evidence
        out.append(Claim(c.claim_id, c.claim, verdict, c.test, evidence, c.cells, c.verdict, effect, low, high, test))
    return out
