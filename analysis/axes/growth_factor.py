"""The growth-factor axis (SPEC section 5b): FLOP speedup vs k, and the k beyond which scratch is cheaper.

Groups of the same (experiment, lr_policy, growth step, regime) at different k are compared at one rung
of each k's own target ladder (`rung`, counted from the top; each k's scratch_wide sets its own ladder).
The bound k* of a candidate: the first k (in increasing order) at which its FLOP speedup (pretraining
charged) falls below 1, interpolated in log(speedup) between the two evaluated k around it; `> k_max`
when it never does, `<= k_min` when it already does at the smallest k. A k at which the candidate misses
the rung counts as below 1 only when its budget proves it (analysis.axes.speedup's bound < 1); otherwise k* is
`unknown`: a continuation too short to reach the rung says nothing about scratch being cheaper. Its CI
takes the same rule per bootstrap draw (the 2.5% and 97.5% draws, not interpolated: draws may be infinite; not widened); the
draws of different k come from separate resamples (unpaired: wider, not narrower).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.axes.speedup import GroupSpeedup

AXIS = ["experiment", "lr_policy", "growth_step", "regime"]


def bound(ks: np.ndarray, speedups: np.ndarray) -> np.ndarray:
    """k* per row of speedups (..., K) over increasing ks: +inf never below 1, -inf below 1 at ks[0]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(np.isnan(speedups), 0.0, speedups))
    below = logs < 0
    first = np.argmax(below, axis=-1)
    out = np.full(speedups.shape[:-1], np.inf)
    any_below = below.any(axis=-1)
    prev = np.maximum(first - 1, 0)
    l0 = np.take_along_axis(logs, prev[..., None], -1)[..., 0]
    l1 = np.take_along_axis(logs, first[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(np.isfinite(l1) & (l0 > l1), l0 / (l0 - l1), 1.0)
    k_star = ks[prev] + np.clip(frac, 0, 1) * (ks[first] - ks[prev])
    out = np.where(any_below, k_star, out)
    return np.where(any_below & (first == 0), -np.inf, out)


def bound_text(value: float, ks: np.ndarray) -> str:
    if value == np.inf:
        return f"> {ks.max():g}"
    if value == -np.inf:
        return f"<= {ks.min():g}"
    return f"{value:.2f}"


def _undetermined(res: GroupSpeedup, name: str, rung: int) -> bool:
    """The candidate missed the rung and its budget does not prove a FLOP speedup below 1 there."""
    row = res.table[(res.table["candidate"] == name) & (res.table["rung"] == rung)].iloc[0]
    return row["status"] != "ok" and not row["flops_bound"] < 1


def k_axis(results: list[GroupSpeedup], rung: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(speedup at the rung per candidate and k, bound k* per candidate with its CI) over every axis group."""
    by_axis: dict[tuple, list[GroupSpeedup]] = {}
    for res in results:
        experiment, _, growth_step, regime = res.curves.key
        by_axis.setdefault((experiment, res.curves.lr_policy, growth_step, regime), []).append(res)
    rows, bounds = [], []
    for key, members in sorted(by_axis.items()):
        members = sorted(members, key=lambda r: r.curves.k)
        usable = [m for m in members if len(m.targets) >= rung]
        for m in usable:
            part = m.table[m.table["rung"] == rung]
            rows += part.to_dict("records")
        if len(usable) < 2:
            continue
        ks = np.array([m.curves.k for m in usable], float)
        names = sorted(set.intersection(*(set(m.candidates) for m in usable)))
        b = min(m.flops_draws.shape[0] for m in usable)
        n_seeds = min(m.n_seeds for m in usable)
        for name in names:
            head = dict(zip(AXIS, key, strict=True)) | {
                "candidate": name,
                "rung": rung,
                "ks": " ".join(f"{k:g}" for k in ks),
            }
            unknown = [m.curves.k for m in usable if _undetermined(m, name, rung)]
            if unknown:  # a miss that proves no speedup below 1 says nothing about k*
                missed = " ".join(map(str, unknown))
                bounds.append(head | {"k_bound": f"unknown (not reached at k = {missed})", "ci_low": "", "ci_high": "",
                                      "n_seeds": n_seeds})  # fmt: skip
                continue
            est = np.array([m.flops_est[m.candidates.index(name), rung - 1] for m in usable])
            draws = np.stack([m.flops_draws[:b, m.candidates.index(name), rung - 1] for m in usable], axis=-1)
            k_est = float(bound(ks, est[None])[0])
            # Percentiles without interpolation: draws may be +-inf (never / always below 1).
            low = float(np.percentile(bound(ks, draws), 2.5, method="lower"))
            high = float(np.percentile(bound(ks, draws), 97.5, method="higher"))
            bounds.append(head | {
                "k_bound": bound_text(k_est, ks), "ci_low": bound_text(low, ks), "ci_high": bound_text(high, ks),
                "n_seeds": n_seeds,
            })  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(bounds)
