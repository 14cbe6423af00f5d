"""The claims of arXiv 2605.13405 (SPEC section 6b), each with a verdict, its effect and CI, and its groups.

Our operational tests (docs/analysis.md "Claims of arXiv 2605.13405"); losses are the eval loss at each
group's longest evaluated lag, pooled over seeds with the hierarchical bootstrap, differences paired:

A. "Preservation at growth is not needed for the final loss": effect = best non-preserving warm start
   minus best preserving one (preserving = measured lag-0 token KL below its registered noise floor,
   never assumed from the name). Per group: `holds` if the CI lies below +margin (the non-preserving one
   is within `margin` nats or better), `does not hold` if it lies above +margin, else `inconclusive`.
B. "Simple operators (zero_pad, shrink_perturb) match or beat complex ones (exact_copy, msg, ligo)":
   effect = best simple minus best complex, same rule. The groups are the claim's own words; a group
   of the pool without a member of each side is skipped, and no group at all gives `not run`.
C. "2x is the most reliable growth factor": effect = FLOP speedup of the best warm start at k = 2 minus
   the best at any other k, at the growth-factor rung (analysis.axes.growth_factor). `holds` if the CI lies
   above 0, `does not hold` if below, else `inconclusive`; `not run` without k = 2 and another k.
Across groups: `holds` iff it holds in every group, `does not hold` iff it fails in one, else
`inconclusive`; the effect shown is a failing group's when one fails, else the least favourable group's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.axes import hierarchical as h
from analysis.axes.curves import Curves
from analysis.axes.speedup import SCRATCH, SMALL, GroupSpeedup
from growth.measure import metric_registry

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
SIMPLE, COMPLEX = ("zero_pad", "shrink_perturb"), ("exact_copy", "msg", "ligo")  # the claim's own groups
CLAIMS = {
    "A": "preservation at growth is not needed for the final loss",
    "B": "simple operators (zero_pad, shrink_perturb) match or beat complex ones (exact_copy, msg, ligo)",
    "C": "2x is the most reliable growth factor",
}


def final_losses(curves: Curves, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pooled final-lag loss per candidate (C,), its draws (B, C), and the number of seeds."""
    data = h.nested(curves.x[..., -1], curves.valid)
    rng = np.random.default_rng([seed, zlib.crc32(repr(("final", curves.key)).encode())])
    return data.estimate(), h.draws(data, n_resamples, rng), data.n_seeds


def _equivalence(low: float, high: float, margin: float) -> str:
    if high < margin:
        return HOLDS
    if low > margin:
        return FAILS
    return INCONCLUSIVE


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return NOT_RUN
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


@dataclass(frozen=True)
class Comparison:
    """One group's test of a claim: side a's best minus side b's best, its CI and the group's verdict."""

    label: str  # the group (or, for claim C, the group and the two k)
    effect: float
    ci_low: float
    ci_high: float
    a: str  # side a's best candidate
    b: str  # side b's best candidate
    verdict: str


def _row(claim: str, comparisons: list[Comparison], worst: Comparison | None, evidence: str) -> dict:
    """One row of the claims table: the verdict across groups and the least favourable group's effect and CI."""
    if worst is None:
        return {"claim_id": claim, "claim": CLAIMS[claim], "verdict": NOT_RUN, "effect": np.nan, "ci_low": np.nan,
                "ci_high": np.nan, "evidence": evidence, "cells": ""}  # fmt: skip
    return {"claim_id": claim, "claim": CLAIMS[claim], "verdict": _combine([c.verdict for c in comparisons]),
            "effect": worst.effect, "ci_low": worst.ci_low, "ci_high": worst.ci_high, "evidence": evidence,
            "cells": " | ".join(c.label for c in comparisons)}  # fmt: skip


def _best_vs_best(curves: Curves, side_a: list[str], side_b: list[str], n_resamples: int, seed: int, margin: float):
    est, boot, n_seeds = final_losses(curves, n_resamples, seed)
    ia = min((curves.candidates.index(n) for n in side_a), key=lambda i: est[i])
    ib = min((curves.candidates.index(n) for n in side_b), key=lambda i: est[i])
    low, high = h.interval(np.array(est[ia] - est[ib]), boot[:, ia] - boot[:, ib], n_seeds)
    a, b = curves.candidates[ia], curves.candidates[ib]
    low, high = float(low), float(high)
    return Comparison(curves.label(), float(est[ia] - est[ib]), low, high, a, b, _equivalence(low, high, margin))


def _group_claim(claim: str, groups: list[Curves], split, n_resamples: int, seed: int, margin: float) -> dict:
    comparisons = []
    for curves in groups:
        side_a, side_b = split(curves)
        if side_a and side_b:
            comparisons.append(_best_vs_best(curves, side_a, side_b, n_resamples, seed, margin))
    if not comparisons:
        return _row(claim, [], None, "no group holds a candidate of each side")
    # The effect shown is the group that decides the verdict: a failing one, else the least favourable upper end.
    worst = max([c for c in comparisons if c.verdict == FAILS] or comparisons, key=lambda c: c.ci_high)
    per_group = "; ".join(
        f"{c.label}: {c.a} - {c.b} = {c.effect:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}] {c.verdict}"
        for c in comparisons
    )
    return _row(claim, comparisons, worst, f"margin {margin} nats; {per_group}")


def _warm(curves: Curves) -> list[str]:
    return [c for c in curves.candidates if c not in (SCRATCH, SMALL)]


def _preservation_split(curves: Curves) -> tuple[list[str], list[str]]:
    tol = metric_registry.noise_floor("token_kl")
    measured = [c for c in _warm(curves) if np.isfinite(curves.token_kl.get(c, np.nan))]
    preserving = [c for c in measured if curves.token_kl[c] < tol]
    return [c for c in measured if c not in preserving], preserving


def _simple_split(curves: Curves) -> tuple[list[str], list[str]]:
    return [c for c in SIMPLE if c in curves.candidates], [c for c in COMPLEX if c in curves.candidates]


def claim_c(results: list[GroupSpeedup], rung: int) -> dict:
    """Claim C from the FLOP speedups of every k (see the module docstring)."""
    by_axis: dict[tuple, dict[int, GroupSpeedup]] = {}
    for res in results:
        if len(res.targets) >= rung:
            experiment, _, growth_step, regime = res.curves.key
            by_axis.setdefault((experiment, res.curves.lr_policy, growth_step, regime), {})[res.curves.k] = res
    comparisons = []
    for key, per_k in sorted(by_axis.items()):
        if 2 not in per_k or len(per_k) < 2:
            continue

        def best(res: GroupSpeedup) -> int:
            warm = [i for i, n in enumerate(res.candidates) if n != SMALL]
            values = np.nan_to_num(res.flops_est[warm, rung - 1], nan=0.0)
            return warm[int(np.argmax(values))]

        two = per_k[2]
        i2 = best(two)
        for k, other in sorted(per_k.items()):
            if k == 2:
                continue
            io = best(other)
            b = min(two.flops_draws.shape[0], other.flops_draws.shape[0])
            est = float(np.nan_to_num(two.flops_est[i2, rung - 1]) - np.nan_to_num(other.flops_est[io, rung - 1]))
            d = two.flops_draws[:b, i2, rung - 1] - other.flops_draws[:b, io, rung - 1]
            low, high = h.interval(np.array(est), d, min(two.n_seeds, other.n_seeds), skip_nan=True)
            verdict = HOLDS if low > 0 else FAILS if high < 0 else INCONCLUSIVE
            label = " ".join(str(v) for v in key)
            comparisons.append(Comparison(f"{label} k2 vs k{k}", est, float(low), float(high),
                                          two.candidates[i2], other.candidates[io], verdict))  # fmt: skip
    if not comparisons:
        return _row("C", [], None, "needs k = 2 and another k with a speedup ladder")
    worst = min([c for c in comparisons if c.verdict == FAILS] or comparisons, key=lambda c: c.ci_low)
    evidence = "; ".join(
        f"{c.label}: {c.a} vs {c.b} = {c.effect:+.3g} [{c.ci_low:+.3g}, {c.ci_high:+.3g}] {c.verdict}"
        for c in comparisons
    )
    return _row("C", comparisons, worst, f"FLOP speedup at rung {rung}; {evidence}")


def claims_table(
    groups: list[Curves], speedups: list[GroupSpeedup], n_resamples: int, seed: int, margin: float, rung: int
) -> pd.DataFrame:
    """One row per claim of arXiv 2605.13405."""
    return pd.DataFrame(
        [
            _group_claim("A", groups, _preservation_split, n_resamples, seed, margin),
            _group_claim("B", groups, _simple_split, n_resamples, seed, margin),
            claim_c(speedups, rung),
        ]
    )
