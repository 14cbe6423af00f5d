"""Hierarchical bootstrap over seeds, replicates within a seed, and eval sequences (SPEC section 5c).

Data x[s, r, n, k]: pretraining seed s, continuation replicate r of that seed (a seed may have fewer:
`valid[s, r]`), eval sequence n (the same held-out set everywhere: crossed with the rest), quantity k
(every candidate x lag of a comparison, so one draw is shared by all of them and differences of draws
are paired). The estimate is the mean over seeds of the mean over that seed's replicates of the mean
over sequences. One draw:
1. draws S seeds with replacement;
2. for each drawn seed slot, draws that seed's R_s replicates with replacement (two slots of the same
   seed draw independently);
3. draws N sequences with replacement (count weights shared by every slot);
and takes the same nested mean. Our construction; no library does nested resampling with a crossed factor.

Small-S correction: the percentile interval of a bootstrap over S top-level units is too narrow by
about sqrt((S - 1) / S) x z / t_{S-1} (it treats the S seeds as the population and ignores that the
spread itself is estimated). With S > 1 seeds the interval is therefore widened about the estimate by
sqrt(S / (S - 1)) x t_{S-1, 0.975} / z_{0.975} (1.58 at S = 5, 1.17 at S = 20), which brings coverage
to about 95% when the seed level dominates, and errs wide (<= 99%) when it does not
(tests/test_hierarchical.py measures it). With one seed nothing is widened: the bootstrap is the
two-way one over replicates and sequences of analysis.ranking.stats.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CI_LEVEL = 0.95
_CHUNK = 250  # draws per block (bounds memory at chunk x S x R x K floats)


@dataclass(frozen=True)
class Nested:
    """x[s, r, n, k] with its replicate mask; NaN values propagate into any draw that uses them."""

    x: np.ndarray  # (S, R, N, K)
    valid: np.ndarray  # (S, R) bool: replicate r exists for seed s (each seed has at least one)

    @property
    def n_seeds(self) -> int:
        return self.x.shape[0]

    def estimate(self) -> np.ndarray:
        """(K,) the nested mean: seeds, then replicates within a seed, then sequences."""
        per_rep = self.x.mean(axis=2)  # (S, R, K)
        w = self.valid / self.valid.sum(axis=1, keepdims=True)
        return np.einsum("srk,sr->k", np.where(self.valid[..., None], per_rep, 0.0), w) / self.n_seeds


def nested(x: np.ndarray, valid: np.ndarray | None = None) -> Nested:
    """A Nested with every replicate valid by default; checks the shapes once."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 4:
        raise ValueError(f"hierarchical data must be x[seed, replicate, sequence, quantity]; got shape {x.shape}")
    valid = np.ones(x.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != x.shape[:2] or not valid.any(axis=1).all():
        raise ValueError(f"replicate mask of shape {valid.shape} must match {x.shape[:2]} and give every seed one")
    return Nested(x, valid)


def draws(data: Nested, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, K) bootstrap draws of the nested mean (steps 1-3 of the module docstring)."""
    x, valid = data.x, data.valid
    n_seeds, n_reps, n_seq, _ = x.shape
    n_valid = valid.sum(axis=1)  # (S,)
    order = np.argsort(~valid, axis=1, kind="stable")  # valid replicate indices first, per seed
    out = np.empty((n_resamples, x.shape[3]))
    for start in range(0, n_resamples, _CHUNK):
        b = min(_CHUNK, n_resamples - start)
        w_seq = rng.multinomial(n_seq, np.full(n_seq, 1.0 / n_seq), size=b) / n_seq  # (b, N)
        per_rep = np.einsum("srnk,bn->bsrk", x, w_seq)  # (b, S, R, K)
        seeds = rng.integers(0, n_seeds, size=(b, n_seeds)) if n_seeds > 1 else np.zeros((b, 1), int)
        count = n_valid[seeds]  # (b, S) replicates of each drawn seed
        u = rng.random((b, n_seeds, n_reps))
        pick = order[seeds[..., None], np.minimum((u * count[..., None]).astype(int), n_reps - 1)]  # (b, S, R)
        used = np.arange(n_reps) < count[..., None]  # only the first R_s picks of a slot count
        values = per_rep[np.arange(b)[:, None, None], seeds[..., None], pick]  # (b, S, R, K)
        values = np.where(used[..., None], values, 0.0) / count[..., None, None]
        out[start : start + b] = values.sum(axis=(1, 2)) / n_seeds
    return out


def widening(n_seeds: int, level: float = CI_LEVEL) -> float:
    """The small-S factor of the module docstring (1 for one seed)."""
    if n_seeds < 2:
        return 1.0
    q = 0.5 + level / 2
    return float(np.sqrt(n_seeds / (n_seeds - 1)) * scipy_stats.t.ppf(q, n_seeds - 1) / scipy_stats.norm.ppf(q))


def interval(
    estimate: np.ndarray, boot: np.ndarray, n_seeds: int, level: float = CI_LEVEL, skip_nan: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of draws (B, ...) widened about the estimate for S seeds.

    Infinite draws (a speedup whose baseline never reached the target in that draw) are kept: they
    make an end infinite rather than being dropped. A quantity with a NaN draw gets a NaN interval,
    unless `skip_nan` (then NaN draws, undefined in that resample, are left out).
    """
    alpha = 100 * (1 - level) / 2
    boot = np.asarray(boot, dtype=float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN quantities
        pct = np.nanpercentile if skip_nan else np.percentile
        # No interpolation next to an infinite draw (inf - inf is NaN): the nearest draw outwards instead.
        low, high = pct(boot, alpha, axis=0), pct(boot, 100 - alpha, axis=0)
        if np.isinf(boot).any():
            low = np.where(np.isnan(low), pct(boot, alpha, axis=0, method="lower"), low)
            high = np.where(np.isnan(high), pct(boot, 100 - alpha, axis=0, method="higher"), high)
    bad = np.isnan(boot).all(axis=0) if skip_nan else np.isnan(boot).any(axis=0)
    f = widening(n_seeds, level)
    with np.errstate(invalid="ignore"):
        low = np.where(np.isfinite(low), estimate - f * (estimate - low), low)
        high = np.where(np.isfinite(high), estimate + f * (high - estimate), high)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def ratio_interval(
    estimate: np.ndarray, boot: np.ndarray, n_seeds: int, level: float = CI_LEVEL, skip_nan: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """`interval` of a positive ratio (a speedup), widened on the log scale so that both ends stay > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = interval(np.log(estimate), np.log(np.asarray(boot, dtype=float)), n_seeds, level, skip_nan)
    return np.exp(low), np.exp(high)


def mean_ci(
    data: Nested, n_resamples: int, rng: np.random.Generator, level: float = CI_LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) of every quantity's nested mean."""
    est = data.estimate()
    low, high = interval(est, draws(data, n_resamples, rng), data.n_seeds, level)
    return est, low, high
