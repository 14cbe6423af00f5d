"""Pure bootstrap primitives: two-way resampling weights, weighted means, percentile CIs, Kendall tau-b.

analysis/ranking/stats.py explains the design (why not scipy.stats.bootstrap) and applies them to cells.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

import numpy as np

from growth.measure.metric_registry import NUMERICAL_TOLERANCE

DEFAULT_RESAMPLES = 2000
CI_LEVEL = 0.95
DEFAULT_SEED = 0
_CHUNK = 256  # bootstrap draws per einsum block (bounds memory at chunk x C x N floats)


def clearly_above_zero(low: float) -> bool:
    """The CI's lower end lies above zero by more than float rounding (False for NaN)."""
    return bool(low > NUMERICAL_TOLERANCE)


def clearly_below_zero(high: float) -> bool:
    """The CI's upper end lies below zero by more than float rounding (False for NaN)."""
    return bool(high < -NUMERICAL_TOLERANCE)


def per_sequence_auc(lags: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """AUC of each sequence's loss curve: trapezoid over lags / (lags[-1] - lags[0]); loss (..., L, N) -> (..., N).

    Same normalisation as growth.measure.metrics.trapezoid_auc, so the mean over sequences is the `auc` row.
    """
    lags = np.asarray(lags, dtype=float)
    return np.trapezoid(np.asarray(loss, dtype=float), lags, axis=-2) / (lags[-1] - lags[0])


def resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n) counts of n indices drawn with replacement (a multinomial)."""
    if n == 1:
        return np.ones((n_resamples, 1))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)


def draw_weights(rng: np.random.Generator, n_rows: int, n_cols: int, n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent resampling counts for rows (replicates) and columns (sequences) of one two-way design."""
    return resample_counts(rng, n_rows, n_resamples), resample_counts(rng, n_cols, n_resamples)


def weighted_means(x: np.ndarray, w_rows: np.ndarray, w_cols: np.ndarray) -> np.ndarray:
    """Resampled means of x (R, K, N) under count weights (B, R) and (B, N): (B, K)."""
    x = np.asarray(x, dtype=float)
    n_rows, _, n_cols = x.shape
    out = np.empty((w_rows.shape[0], x.shape[1]))
    for start in range(0, w_rows.shape[0], _CHUNK):
        stop = start + _CHUNK
        rows = np.einsum("br,rkn->bkn", w_rows[start:stop], x)
        out[start:stop] = np.einsum("bkn,bn->bk", rows, w_cols[start:stop]) / (n_rows * n_cols)
    return out


def percentile_ci(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap draws along axis 0."""
    alpha = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(draws, dtype=float), [alpha, 100 - alpha], axis=0)
    return low, high


def has_noise(n_replicates: int, n_sequences: int) -> bool:
    """A CI needs something to resample: two replicates, or two sequences."""
    return n_replicates * n_sequences > 1


def bootstrap_mean_ci(
    d: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int | np.random.Generator = DEFAULT_SEED,
) -> tuple[float, float, float]:
    """Mean of d[r, n] (a paired difference per replicate and sequence; 1-D = replicates only) and its CI.

    Two-way percentile bootstrap: rows and columns resampled independently per draw. NaN CI when d has a
    single value (one replicate, no per-sequence data): there is nothing to resample.
    """
    d = np.asarray(d, dtype=float)
    d = d[:, None] if d.ndim == 1 else d
    mean = float(d.mean())
    if not has_noise(*d.shape):
        return mean, math.nan, math.nan
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    w_rows, w_cols = draw_weights(rng, d.shape[0], d.shape[1], n_resamples)
    draws = weighted_means(d[:, None, :], w_rows, w_cols)[:, 0]
    low, high = percentile_ci(draws, level)
    return mean, float(low), float(high)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of x and y along the last axis (vectorised over leading axes); 0 where either is constant.

    tau-b = sum_{i<j} s_x s_y / sqrt(sum s_x^2 * sum s_y^2), s = sign of the pairwise difference: the same
    number as scipy.stats.kendalltau's default, for the small candidate counts of a cell.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(x.shape[-1], k=1)
    sx, sy = np.sign(x[..., i] - x[..., j]), np.sign(y[..., i] - y[..., j])
    denom = np.sqrt((sx**2).sum(-1) * (sy**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (sx * sy).sum(-1) / denom
    return np.where(denom > 0, out, 0.0)


def cell_rng(seed: int, key: Iterable) -> np.random.Generator:
    """A Generator fixed by the base seed and the cell's identity: a cell's CIs do not depend on other cells."""
    return np.random.default_rng([seed, zlib.crc32(repr(tuple(key)).encode())])
