"""Comparison metrics of SPEC section 5, as pure functions over logits and residual streams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def token_kl(ref_logits: jax.Array, logits: jax.Array) -> jax.Array:
    """Per-token KL(ref || model), float32, summed over the vocabulary."""
    ref_logp = jax.nn.log_softmax(ref_logits.astype(jnp.float32), axis=-1)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(ref_logp) * (ref_logp - logp), axis=-1)


def subspace_projector(embed_map_DsxDw: np.ndarray | jax.Array | None, d_wide: int) -> np.ndarray:
    """Orthogonal projector (Dw, Dw) onto the row space of the embedding map (zeros if there is none)."""
    if embed_map_DsxDw is None:
        return np.zeros((d_wide, d_wide), np.float32)
    e = np.asarray(embed_map_DsxDw, np.float64)
    return (e.T @ np.linalg.solve(e @ e.T, e)).astype(np.float32)


def escape_parts(residual_BxLxD: jax.Array, projector_DxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(energy outside the inherited subspace, total energy) of a residual stream."""
    r = residual_BxLxD.astype(jnp.float32)
    outside = r - r @ projector_DxD
    return jnp.sum(outside**2), jnp.sum(r**2)


def trapezoid_auc(lags: list[int], losses: list[float]) -> float:
    """Area under the eval-loss curve over its lags, divided by the last lag (a mean loss)."""
    return float(np.trapezoid(losses, lags) / (lags[-1] - lags[0]))


def clone_escape(params: dict[str, np.ndarray], factors: dict[str, int]) -> float | None:
    """How far wide weights have left the cloned subspace: sqrt(sum |W - S(W)|^2 / sum |W|^2) over the
    widened tensors, S averaging the copies of every widened axis (axis of size f d: unit i and its copies
    i + d, ..., i + (f - 1) d). 0 for an exact clone (W' = tile(W) / c_in); for k = 2, W - S(W) is the
    antisymmetric part (a - b) / 2 of each cloned pair. None when no tensor is widened."""
    from growth.models import masks
    from growth.widen import core  # growth.widen imports the optimizer chain; only this function needs it

    num = den = 0.0
    for path, w in params.items():
        if masks.is_mask(path):
            continue
        w = np.asarray(w, np.float64)
        sym = w
        for axis, space in enumerate(core.layout(path).spaces):
            f = core.factor(space, factors)
            if f > 1:
                blocks = sym.reshape(sym.shape[:axis] + (f, sym.shape[axis] // f) + sym.shape[axis + 1 :])
                sym = np.broadcast_to(blocks.mean(axis=axis, keepdims=True), blocks.shape).reshape(w.shape)
        if sym is not w:
            num += float(np.sum((w - sym) ** 2))
            den += float(np.sum(w**2))
    return float(np.sqrt(num / den)) if den > 0 else None
