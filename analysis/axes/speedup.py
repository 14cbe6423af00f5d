"""Speedup against training the wide model from scratch (SPEC section 5b), with hierarchical CIs.

For a target loss L, T_X(L) = the first lag at which X's mean eval-loss curve is <= L, linearly
interpolated between the two evaluated lags around the crossing, in tokens (lag x tokens per step).
speedup_X(L) = T_scratch(L) / (T_X(L) + growth_tokens_X); in FLOPs, scratch's FLOPs over X's, X charged
its continuation, its growth tokens (both at the wide model's FLOPs per token) and the small model's
pretraining (growth_step x pretraining tokens per step, at the small model's FLOPs per token).

The target ladder: n rungs evenly spaced below L_top = the best lag-0 mean loss of the group (where the
warm starts begin) down to L_bottom = the best mean loss scratch_wide reaches within its budget
(growth.experiment.scratch); rung n is L_bottom. A candidate whose mean curve never reaches a rung within its
budget is **not reached** there: no speedup, never an extrapolated one; its row carries instead the upper
bound the budget proves, speedup < T_scratch(L) / (budget_X + growth_tokens_X) (and likewise in FLOPs): a
bound below 1 means scratch reached the target with less than X was given. Curves come from the shared
scratch run when there is one, else from the pool's own scratch_wide (said in `scratch_source`).

CIs: the hierarchical bootstrap (analysis.axes.hierarchical) draws seeds, replicates and sequences once for
the candidates and scratch together; each draw recomputes the mean curves, the crossings and the
speedups. In a draw where scratch misses a rung the speedup is +inf, where X misses it 0, where both
miss it undefined (left out). Pooled verdict at a rung: `faster` if the CI lies above 1, `slower` if
below 1, else `inconclusive`; per seed the same test on that seed's replicates and sequences alone.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.axes import hierarchical as h
from analysis.axes.curves import Curves, ScratchCurves
from growth.widen import registry

SCRATCH = "scratch_wide"  # the baseline the speedup is measured against (growth.experiment.scratch.CANDIDATE)
SMALL = registry.reference()  # the small model continued (the candidate registry's reference)


@dataclass
class GroupSpeedup:
    """One group's ladder, table and the FLOP-speedup draws the growth-factor axis reuses."""

    curves: Curves
    targets: np.ndarray  # (T,)
    candidates: list[str]  # warm starts (and continue_small) the speedup is computed for
    flops_est: np.ndarray  # (C, T), NaN = not reached
    flops_draws: np.ndarray  # (B, C, T)
    n_seeds: int
    table: pd.DataFrame


def crossing(lags: np.ndarray, curve: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """First lag at which curve (..., L) is <= each target (T,), interpolated: (..., T); NaN = not reached."""
    lags = np.asarray(lags, dtype=float)
    below = curve[..., None, :] <= targets[:, None]  # (..., T, L)
    first = np.argmax(below, axis=-1)
    reached = below.any(axis=-1)
    prev = np.maximum(first - 1, 0)
    c = np.broadcast_to(curve[..., None, :], below.shape)
    c1 = np.take_along_axis(c, first[..., None], -1)[..., 0]
    c0 = np.take_along_axis(c, prev[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(c0 > c1, (c0 - targets) / (c0 - c1), 1.0)
    t = np.where(first == 0, lags[0], lags[prev] + np.clip(frac, 0, 1) * (lags[first] - lags[prev]))
    return np.where(reached, t, np.nan)


def ladder(top: float, bottom: float, n: int) -> np.ndarray:
    """n targets evenly spaced strictly below top, the last at bottom; empty when bottom >= top."""
    if not np.isfinite(top) or not np.isfinite(bottom) or bottom >= top or n < 1:
        return np.zeros(0)
    return top - (top - bottom) * np.arange(1, n + 1) / n


def ratio(t_scratch: np.ndarray, t_x: np.ndarray) -> np.ndarray:
    """Cost ratio with the draw rules of the module docstring (inputs: cost, NaN = not reached)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = t_scratch / t_x
    out = np.where(np.isnan(t_scratch) & ~np.isnan(t_x), np.inf, out)
    out = np.where(~np.isnan(t_scratch) & np.isnan(t_x), 0.0, out)
    return np.where(np.isnan(t_scratch) & np.isnan(t_x), np.nan, out)


def _align(curves: Curves, scratch: ScratchCurves | None) -> tuple[h.Nested, int, int, str]:
    """Candidates and scratch in one Nested (shared seeds and replicates); sizes of the two parts."""
    n_c, n_l = len(curves.candidates), len(curves.lags)
    if scratch is None:
        x = curves.x.reshape(*curves.x.shape[:3], n_c * n_l)
        return h.nested(x, curves.valid), n_c * n_l, 0, "pool"
    seeds = [s for s in curves.seeds if s in scratch.seeds]
    rows = []
    for s in seeds:
        i, j = curves.seeds.index(s), scratch.seeds.index(s)
        reps = [r for r in curves.replicates[i] if r in scratch.replicates[j]]
        a = curves.x[i, [curves.replicates[i].index(r) for r in reps]]  # (R', N, C, L)
        b = scratch.x[j, [scratch.replicates[j].index(r) for r in reps]]  # (R', N, Ls)
        if a.shape[1] != b.shape[1]:  # per-sequence on one side only: compare run means
            a, b = a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True)
        rows.append(np.concatenate([a.reshape(*a.shape[:2], -1), b], axis=2))
    if not rows:
        raise ValueError(f"{curves.label()}: no seed has both grow cells and a scratch run")
    n_reps, n_seq = max(r.shape[0] for r in rows), min(r.shape[1] for r in rows)
    x = np.full((len(rows), n_reps, n_seq, rows[0].shape[2]), np.nan)
    valid = np.zeros((len(rows), n_reps), bool)
    for s, r in enumerate(rows):
        x[s, : r.shape[0]] = r[:, :n_seq] if r.shape[1] == n_seq else r.mean(axis=1, keepdims=True)
        valid[s, : r.shape[0]] = True
    return h.nested(x, valid), n_c * n_l, scratch.x.shape[3], "scratch run"


def _costs(curves: Curves, names: list[str], t_x: np.ndarray, t_s: np.ndarray) -> dict[str, np.ndarray]:
    """Tokens and FLOPs of X and scratch from crossing lags (..., C, T) and (..., T)."""
    cost = curves.cost
    tps = float(cost.get("tokens_per_step", 1.0))
    f_small, f_wide = float(cost.get("flops_per_token_small", np.nan)), float(cost.get("flops_per_token_wide", np.nan))
    growth = np.array([curves.growth_tokens.get(n, 0.0) for n in names])[:, None]
    per_token = np.array([f_small if n == SMALL else f_wide for n in names])[:, None]
    tokens_x = t_x * tps + growth
    pretrain = float(cost.get("pretrain_tokens", 0.0)) * f_small
    return {
        "tokens_x": tokens_x,
        "tokens_s": t_s[..., None, :] * tps,
        "flops_x": tokens_x * per_token + pretrain,
        "flops_s": t_s[..., None, :] * tps * f_wide,
    }


def _budget_bounds(curves: Curves, names: list[str], t_s_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Upper bounds (C, T) on the speedup of a candidate that misses a rung: as if it had reached it at the
    very end of its budget (the last evaluated lag); NaN where scratch missed the rung too."""
    tps = float(curves.cost.get("tokens_per_step", 1.0))
    budget = np.full((len(names), len(t_s_tokens)), float(np.max(curves.lags)))
    costs = _costs(curves, names, budget, t_s_tokens / tps)
    return {unit: costs[f"{unit}_s"] / costs[f"{unit}_x"] for unit in ("tokens", "flops")}


def _verdict(low: float, high: float) -> str:
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return "inconclusive"


def _speedups(
    data: h.Nested, curves: Curves, n_cand: int, n_scr: int, scr_lags: np.ndarray, targets: np.ndarray,
    names: list[str], b: int, rng: np.random.Generator,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Point and draws of token and FLOP speedups (C, T) / (B, C, T), plus the point crossings."""
    index = [curves.candidates.index(n) for n in names]
    n_l = len(curves.lags)

    def split(flat: np.ndarray):
        cand = flat[..., :n_cand].reshape(*flat.shape[:-1], -1, n_l)[..., index, :]
        return cand, flat[..., n_cand : n_cand + n_scr]

    est_c, est_s = split(data.estimate())
    boot_c, boot_s = split(h.draws(data, b, rng))
    out = {}
    for tag, (c, s) in {"est": (est_c, est_s), "boot": (boot_c, boot_s)}.items():
        t_x, t_s = crossing(curves.lags, c, targets), crossing(scr_lags, s, targets)
        costs = _costs(curves, names, t_x, t_s)
        out[f"tokens_{tag}"] = ratio(costs["tokens_s"], costs["tokens_x"])
        out[f"flops_{tag}"] = ratio(costs["flops_s"], costs["flops_x"])
        if tag == "est":
            out |= {"t_x": costs["tokens_x"], "t_s": costs["tokens_s"]}
    return out


def group_speedup(
    curves: Curves,
    scratch: ScratchCurves | None,
    n_targets: int,
    n_resamples: int,
    seed: int,
    targets: np.ndarray | None = None,
) -> GroupSpeedup | None:
    """The ladder (or the given `targets`), speedups with pooled and per-seed CIs of one group; None without
    any scratch curve."""
    if scratch is None and SCRATCH not in curves.candidates:
        return None
    data, n_cand, n_scr, source = _align(curves, scratch)
    scr_lags = scratch.lags if scratch is not None else curves.lags
    if scratch is None:  # the pool's own scratch_wide is the baseline: append it as the scratch part
        flat = data.x.reshape(*data.x.shape[:3], len(curves.candidates), -1)[..., curves.candidates.index(SCRATCH), :]
        data, n_scr = h.nested(np.concatenate([data.x, flat], axis=3), data.valid), len(curves.lags)
    names = [n for n in curves.candidates if n != SCRATCH]
    est = data.estimate()
    lag0 = est[:n_cand].reshape(len(curves.candidates), -1)[:, 0]
    top = float(np.nanmin([v for n, v in zip(curves.candidates, lag0, strict=True) if n != SCRATCH] or [np.nan]))
    if targets is None:
        targets = ladder(top, float(np.nanmin(est[n_cand : n_cand + n_scr])), n_targets)
    rng_key = [seed, zlib.crc32(repr((curves.key, curves.lr_policy)).encode())]
    pooled = _speedups(
        data, curves, n_cand, n_scr, scr_lags, targets, names, n_resamples, np.random.default_rng(rng_key)
    )
    per_seed = []
    for s in range(data.n_seeds):
        one = h.nested(data.x[s : s + 1], data.valid[s : s + 1])
        per_seed.append(
            _speedups(
                one, curves, n_cand, n_scr, scr_lags, targets, names, n_resamples, np.random.default_rng([*rng_key, s])
            )
        )
    bounds = _budget_bounds(curves, names, pooled["t_s"][0])
    records = []
    lows, highs = {}, {}
    for unit in ("tokens", "flops"):
        lows[unit], highs[unit] = h.ratio_interval(
            pooled[f"{unit}_est"], pooled[f"{unit}_boot"], data.n_seeds, skip_nan=True
        )
    seed_ci = [h.ratio_interval(p["flops_est"], p["flops_boot"], 1, skip_nan=True) for p in per_seed]
    experiment, policy, growth_step, regime = curves.key
    for c, name in enumerate(names):
        for t, target in enumerate(targets):
            reached = np.isfinite(pooled["t_x"][c, t])
            verdicts = [_verdict(lo[c, t], hi[c, t]) if np.isfinite(p["t_x"][c, t]) else "not reached"
                        for p, (lo, hi) in zip(per_seed, seed_ci, strict=True)]  # fmt: skip
            records.append(
                {
                    "experiment": experiment,
                    "policy": policy,
                    "lr_policy": curves.lr_policy,
                    "k": curves.k,
                    "growth_step": growth_step,
                    "regime": regime,
                    "candidate": name,
                    "rung": t + 1,
                    "target_loss": float(target),
                    "status": "ok" if reached else "not reached",
                    "tokens_x": float(pooled["t_x"][c, t]),
                    "tokens_scratch": float(pooled["t_s"][0, t]),
                    "speedup_tokens": float(pooled["tokens_est"][c, t]) if reached else np.nan,
                    "tokens_ci_low": float(lows["tokens"][c, t]),
                    "tokens_ci_high": float(highs["tokens"][c, t]),
                    "speedup_flops": float(pooled["flops_est"][c, t]) if reached else np.nan,
                    "flops_ci_low": float(lows["flops"][c, t]),
                    "flops_ci_high": float(highs["flops"][c, t]),
                    "verdict": _verdict(lows["flops"][c, t], highs["flops"][c, t]) if reached else "not reached",
                    "tokens_bound": np.nan if reached else float(bounds["tokens"][c, t]),
                    "flops_bound": np.nan if reached else float(bounds["flops"][c, t]),
                    "per_seed_flops": " ".join(f"{p['flops_est'][c, t]:.3g}" for p in per_seed),
                    "per_seed_verdicts": " ".join(verdicts),
                    "n_seeds": data.n_seeds,
                    "scratch_source": source,
                }
            )
    flops_est = np.where(np.isfinite(pooled["t_x"]), pooled["flops_est"], np.nan)
    return GroupSpeedup(curves, targets, names, flops_est, pooled["flops_boot"], data.n_seeds, pd.DataFrame(records))
