"""Masked softmax attention with a hand-written backward pass, shared by both model families.

The forward is the textbook one (scores in float32, masked, softmax, optional dropout on the
probabilities, value product). The backward uses the identity rowsum(dP * P) = rowsum(dO * O)
(P the dropped-out probabilities, O = P V), so the softmax gradient needs a reduction over the
(B, L, H, d) outputs instead of one over the (B, H, L, L) probabilities, and masked positions
need no select (their probabilities are exactly 0). Autodiff of the same forward makes three more
passes over the (B, H, L, L) arrays per layer; on the 2-core CPU this is the attention's main cost
(docs/performance.md, issue 29). The 1/divisor scale is applied to q, a (B, L, H, d) array, rather than
to the scores: XLA's CPU fusions otherwise materialise the scale as a whole (B, H, L, L) operand of the
backward. For a power-of-two divisor (head sizes 4, 16, 64, ...) the result is the same bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def causal_mask(length: int, window: int = 0) -> jax.Array:
    """(L, L) bool: query l may attend to key m (m <= l, and l - m < window when window > 0)."""
    pos = jnp.arange(length)
    allowed_LxL = pos[:, None] >= pos[None, :]
    if window:
        allowed_LxL = allowed_LxL & (pos[:, None] - pos[None, :] < window)
    return allowed_LxL


def _probabilities(scaled_q_BxLxHxd, k_BxLxHxd, allowed_LxL) -> jax.Array:
    s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", scaled_q_BxLxHxd, k_BxLxHxd).astype(jnp.float32)
    s_BxHxLxL = jnp.where(allowed_LxL, s_BxHxLxL, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(s_BxHxLxL, axis=-1)


def _dropped(p_BxHxLxL, keep_BxHxLxL, keep_prob: float) -> jax.Array:
    return p_BxHxLxL if keep_BxHxLxL is None else jnp.where(keep_BxHxLxL, p_BxHxLxL / keep_prob, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def attend(q_BxLxHxd, k_BxLxHxd, v_BxLxHxd, allowed_LxL, keep_BxHxLxL, divisor: float, keep_prob: float):
    """softmax(mask(q k^T / divisor)) v over heads in (B, L, H, d) layout; the output in v's dtype.

    `keep_BxHxLxL`: None, or the dropout keep mask of the probabilities (kept ones are divided by
    `keep_prob`). k and v carry as many heads as q (grouped heads are repeated by the caller).
    """
    return _attend_fwd(q_BxLxHxd, k_BxLxHxd, v_BxLxHxd, allowed_LxL, keep_BxHxLxL, divisor, keep_prob)[0]


def _attend_fwd(q, k, v, allowed_LxL, keep, divisor, keep_prob):
    scaled_q = q / jnp.asarray(divisor, q.dtype)
    p = _probabilities(scaled_q, k, allowed_LxL)
    o = jnp.einsum("bhlm,bmhd->blhd", _dropped(p, keep, keep_prob).astype(v.dtype), v)
    return o, (scaled_q, k, v, keep, p, o)


def _attend_bwd(divisor, keep_prob, res, do_BxLxHxd):
    scaled_q, k, v, keep, p, o = res
    dv = jnp.einsum("bhlm,blhd->bmhd", _dropped(p, keep, keep_prob).astype(do_BxLxHxd.dtype), do_BxLxHxd)
    dp = _dropped(jnp.einsum("blhd,bmhd->bhlm", do_BxLxHxd, v).astype(jnp.float32), keep, keep_prob)
    delta_BxHxL = jnp.einsum("blhd,blhd->bhl", do_BxLxHxd.astype(jnp.float32), o.astype(jnp.float32))
    ds = (p * (dp - delta_BxHxL[..., None])).astype(scaled_q.dtype)  # d loss / d (scaled_q k^T)
    dq = jnp.einsum("bhlm,bmhd->blhd", ds, k) / jnp.asarray(divisor, scaled_q.dtype)
    dk = jnp.einsum("bhlm,blhd->bmhd", ds, scaled_q)
    return dq, dk, dv.astype(v.dtype), None, None


attend.defvjp(_attend_fwd, _attend_bwd)
