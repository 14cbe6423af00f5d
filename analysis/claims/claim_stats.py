"""Statistical verdicts of the claims: the same tests as analysis/claims/verdicts.py on paired bootstrap CIs.

Each test reads the claim's `Inputs` (and, for a first-place claim, its `FirstPlace` scope, the same one the
point test judges) and gives a named `Verdict`: holds / does not hold / inconclusive, the deciding effect,
its CI and the evidence text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.claims.claim_text import (
    BEATEN,
    CI_LEVEL,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NO_VERDICT,
    NOISE,
    REGIMES,
    STRICT,
    ZERO_STEP_TAU_MAX,
    FirstPlace,
    Inputs,
    Verdict,
    cell_name,
    mean_tau,
    scope_cells,
)
from analysis.ranking.rankings import OK
from analysis.ranking.selectors import TauDraws, scope_draws, signals
from analysis.ranking.stats import clearly_above_zero, clearly_below_zero


@dataclass(frozen=True)
class Margin:
    """rival - candidate on one (cell, stage) (lower is better, so > 0 = the candidate better), with its CI."""

    diff: float
    ci_low: float
    ci_high: float
    rival: str


@dataclass(frozen=True)
class Standing:
    """A candidate's standing in one cell, and the margin that decides it."""

    cell: str
    standing: str  # STRICT, BEATEN or NOISE
    margin: Margin


@dataclass(frozen=True)
class Part:
    """One part of a tau-based claim: its mean tau (or paired difference), CI and, where it has one, state."""

    name: str
    effect: float
    ci_low: float
    ci_high: float
    state: str = ""  # claim 6: established / refuted / undecided


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


def _verdict(verdict: str, pick: Part, evidence: str) -> Verdict:
    return Verdict(verdict, pick.effect, pick.ci_low, pick.ci_high, evidence)


def cell_standing(cell: pd.DataFrame, pairs: dict, candidate: str) -> tuple[str, Margin]:
    """X's standing in one (cell, stage): strictly first, beaten or inside the noise, and the deciding margin.

    Strictly first: X ok and every ok rival's margin has a CI entirely > 0 (diverged rivals count as beaten
    by X). Beaten: X diverged, or some rival's margin has a CI entirely < 0. Otherwise inside the noise
    (including: no CI available). The deciding rival: the most clearly ahead one when beaten, else the one
    with the smallest margin.
    """
    mine = cell[cell["candidate"] == candidate].iloc[0]
    if mine["status"] != OK:
        return BEATEN, Margin(math.nan, math.nan, math.nan, "(diverged)")
    rivals = cell[(cell["candidate"] != candidate) & (cell["status"] == OK)]
    margins = []
    for r in rivals.itertuples():
        hit = pairs.get((r.experiment, r.seed, r.growth_step, r.regime, r.stage, r.candidate, candidate))
        if hit is None:
            margins.append(Margin(float(r.value - mine["value"]), math.nan, math.nan, r.candidate))
        else:
            margins.append(Margin(hit["diff"], hit["ci_low"], hit["ci_high"], r.candidate))
    if not margins:
        return STRICT, Margin(math.nan, math.nan, math.nan, "(all rivals diverged)")
    ahead = [m for m in margins if clearly_below_zero(m.ci_high)]
    if ahead:
        return BEATEN, min(ahead, key=lambda m: m.ci_high)
    smallest = min(margins, key=lambda m: m.diff)
    if all(clearly_above_zero(m.ci_low) for m in margins):
        return STRICT, smallest
    return NOISE, smallest


def stat_first_place(inputs: Inputs, scope: FirstPlace) -> Verdict:
    """Statistical verdict of 'candidate ranks first at stage' over the scope's cells, effect, CI, evidence.

    Holds: strictly first in every cell; does not hold: beaten in at least one; else inconclusive.
    The effect is the deciding margin (rival - candidate, > 0 = candidate better): the most clearly ahead
    rival of a cell where it was beaten, else the smallest margin over all cells.
    """
    lookup = {
        (r["experiment"], r["seed"], r["growth_step"], r["regime"], r["stage"], r["candidate"], r["other"]): r
        for r in inputs.pairs.to_dict("records")
    }
    candidate = scope.candidate
    results = []
    for c in scope_cells(inputs.ranks, scope):
        name = cell_name(c.experiment, c.seed, c.growth_step, c.regime, inputs.multi)
        results.append(Standing(name, *cell_standing(c.rows, lookup, candidate)))
    if not results:
        return NO_VERDICT
    beaten = [r for r in results if r.standing == BEATEN]
    if beaten:
        verdict = FAILS
        decisive = [r for r in beaten if not math.isnan(r.margin.diff)]
        pick = min(decisive, key=lambda r: r.margin.ci_high) if decisive else beaten[0]
    else:
        verdict = HOLDS if all(r.standing == STRICT for r in results) else INCONCLUSIVE
        finite = [r for r in results if not math.isnan(r.margin.diff)]
        pick = min(finite, key=lambda r: r.margin.diff) if finite else results[0]
    counts = {k: sum(r.standing == k for r in results) for k in (STRICT, BEATEN, NOISE)}
    evidence = (
        f"{candidate}: strictly first in {counts[STRICT]}/{len(results)} cells, beaten in {counts[BEATEN]}, "
        f"inside the noise in {counts[NOISE]}; margin (rival - {candidate}) per cell: "
        + "; ".join(
            f"{r.cell}: {r.standing}, vs {r.margin.rival} {_fmt_ci(r.margin.diff, r.margin.ci_low, r.margin.ci_high)}"
            for r in results
        )
    )
    m = pick.margin
    return Verdict(verdict, m.diff, m.ci_low, m.ci_high, evidence)


def _draws_ci(draws: np.ndarray | None) -> tuple[float, float]:
    return (math.nan, math.nan) if draws is None else _percentile(draws)


def stat_claim4(inputs: Inputs) -> Verdict:
    """Both zero-step signals' mean tau (all cells) has a CI entirely < ZERO_STEP_TAU_MAX: holds; one has a
    CI entirely >= it: does not hold; else inconclusive. Effect: the larger of the two mean taus."""
    agreement, parts = inputs.agreement, []
    for signal in ("token_kl", "abs_loss_gap"):
        mean, n = mean_tau(agreement, signal)
        if n:
            parts.append(Part(signal, mean, *_draws_ci(scope_draws(agreement, inputs.draws, signal, REGIMES))))
    if not parts:
        return NO_VERDICT
    below = [p for p in parts if p.ci_high < ZERO_STEP_TAU_MAX]
    above = [p for p in parts if p.ci_low >= ZERO_STEP_TAU_MAX]
    verdict = FAILS if above else HOLDS if len(below) == len(parts) else INCONCLUSIVE
    evidence = "; ".join(f"{p.name} mean tau {_fmt_ci(p.effect, p.ci_low, p.ci_high)}" for p in parts)
    return _verdict(verdict, max(parts, key=lambda p: p.effect), evidence)


def stat_claim5(inputs: Inputs) -> Verdict:
    """Paired: robustness(probe_kl) - robustness(other) per draw, for each other primary signal measured in
    both regimes. Holds: every such difference has a CI entirely > 0; does not hold: one has a CI entirely
    < 0; else inconclusive (exact ties included). Effect: the smallest difference."""
    agreement, draws = inputs.agreement, inputs.draws
    robust: dict[str, tuple[float, np.ndarray | None]] = {}
    for signal in (s.name for s in signals() if s.primary):
        per_regime = [mean_tau(agreement, signal, (r,))[0] for r in REGIMES]
        if any(math.isnan(v) for v in per_regime):
            continue
        regime_draws = [scope_draws(agreement, draws, signal, (r,)) for r in REGIMES]
        both = None if any(d is None for d in regime_draws) else np.minimum(*regime_draws)
        robust[signal] = (min(per_regime), both)
    if "probe_kl" not in robust or len(robust) < 2:
        return NO_VERDICT
    kl, kl_draws = robust.pop("probe_kl")
    diffs = []
    for signal, (value, d) in robust.items():
        low, high = (math.nan, math.nan) if d is None or kl_draws is None else _percentile(kl_draws - d)
        diffs.append(Part(signal, kl - value, low, high))
    if any(d.ci_high < 0 for d in diffs):
        verdict = FAILS
    else:
        verdict = HOLDS if all(d.ci_low > 0 for d in diffs) else INCONCLUSIVE
    evidence = "robustness(probe_kl) - robustness(other): " + ", ".join(
        f"{d.name} {_fmt_ci(d.effect, d.ci_low, d.ci_high)}" for d in diffs
    )
    return _verdict(verdict, min(diffs, key=lambda d: d.effect), evidence)


def stat_claim6(inputs: Inputs) -> Verdict:
    """(a) deterministic AUC tau > 0, (b) stochastic AUC tau <= 0, (c) probe-lag loss tau <= 0 (escape high =
    better). A part is established when its CI lies entirely on its side ((a) low > 0; (b), (c) high <= 0)
    and refuted when it lies entirely on the other ((a) high <= 0; (b), (c) low > 0). Holds: all three
    established; does not hold: one refuted; else inconclusive. Effect: the refuted, else the first
    undecided, else part (a)'s mean tau."""
    parts = []
    spec: tuple[tuple[str, pd.DataFrame, TauDraws | None, tuple[str, ...], bool], ...] = (
        ("(a) deterministic AUC", inputs.agreement, inputs.draws, ("deterministic",), True),
        ("(b) stochastic AUC", inputs.agreement, inputs.draws, ("stochastic",), False),
        ("(c) probe-lag loss", inputs.probe_agreement, inputs.probe_draws, REGIMES, False),
    )
    for name, frame, d, regimes, positive in spec:
        mean, n = mean_tau(frame, "probe_escape", regimes)
        if not n:
            return NO_VERDICT
        low, high = _draws_ci(scope_draws(frame, d, "probe_escape", regimes))
        if positive:
            state = "established" if low > 0 else "refuted" if high <= 0 else "undecided"
        else:
            state = "established" if high <= 0 else "refuted" if low > 0 else "undecided"
        parts.append(Part(name, mean, low, high, state))
    states = [p.state for p in parts]
    verdict = FAILS if "refuted" in states else HOLDS if set(states) == {"established"} else INCONCLUSIVE
    pick = next((p for p in parts if p.state == "refuted"), None) or next(
        (p for p in parts if p.state == "undecided"), parts[0]
    )
    evidence = "probe_escape mean tau: " + "; ".join(
        f"{p.name} {_fmt_ci(p.effect, p.ci_low, p.ci_high)} {p.state}" for p in parts
    )
    return _verdict(verdict, pick, evidence)


FIRST_PLACE_TEST = (
    "paired 95% bootstrap CI of every rival's difference to the candidate; holds iff the candidate is "
    "strictly first (every difference's CI > 0) in every cell, does not hold iff beaten (a CI < 0, or the "
    "candidate diverged) in some cell, else inconclusive"
)
CLAIM4_TEST = (
    "holds iff both zero-step signals' mean tau has a 95% CI entirely below the threshold; does not hold iff "
    "one has a CI entirely at or above it; else inconclusive"
)
CLAIM5_TEST = (
    "paired CI of robustness(probe_kl) - robustness(other) per primary signal; holds iff all > 0, does not "
    "hold iff one < 0, else inconclusive"
)
CLAIM6_TEST = (
    "each part's mean-tau CI on its side (established) or on the other (refuted); holds iff all three "
    "established, does not hold iff one refuted, else inconclusive"
)
