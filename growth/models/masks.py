"""msg's growth masks (SPEC section 3b): per-unit multipliers that are model parameters no gradient moves.

A model built with `model.growth_masks: true` holds, as parameters:

  mask_resid (D,)                  one per residual dimension: multiplies every writer's output and
                                   every norm's output, and weights the norms' statistics
  mask_ramp ()                     R, the ramp length in steps
  blocks/{i}/attn/mask_heads (H,)  one per head: multiplies the head's output before `o`
  blocks/{i}/mlp/mask_hidden (F,)  one per hidden unit: multiplies its activation before `proj`

Old units hold 1, new units start at 0. The forward reads them through `stop_gradient`, so Adam sees a
zero gradient and leaves them (and their zero moments) unchanged; the train step then ramps every mask
by one step (`ramp`): m <- min(1, (round(m R) + 1) / R), which is exactly t / R after t steps. As
parameters they are saved in every checkpoint, so a resumed run resumes its ramp exactly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

RESID, RAMP, HEADS, HIDDEN = "mask_resid", "mask_ramp", "mask_heads", "mask_hidden"
NAMES = (RESID, RAMP, HEADS, HIDDEN)


def is_mask(path: str) -> bool:
    """True for a mask parameter's path ("blocks/0/attn/mask_heads", ...)."""
    return path.rsplit("/", 1)[-1] in NAMES


def read(value: jax.Array) -> jax.Array:
    """A mask as the forward pass sees it: no gradient flows into it."""
    return jax.lax.stop_gradient(value)


def weighted_norm(x: jax.Array, w_D: jax.Array, scale: jax.Array, bias: jax.Array | None, eps: float) -> jax.Array:
    """LayerNorm (bias given) or RMSNorm (bias None) with statistics over the dims weighted by w, output times w.

    With w in {0, 1} this is the ordinary norm of the dims where w = 1 (zeros elsewhere); with w = 1
    everywhere it is the ordinary norm of the whole vector.
    """
    x32 = x.astype(jnp.float32)
    total = jnp.sum(w_D)
    if bias is None:
        y = x32 * jax.lax.rsqrt(jnp.sum(w_D * x32 * x32, axis=-1, keepdims=True) / total + eps) * scale
    else:
        mean = jnp.sum(w_D * x32, axis=-1, keepdims=True) / total
        var = jnp.sum(w_D * (x32 - mean) ** 2, axis=-1, keepdims=True) / total
        y = (x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    return (y * w_D).astype(x.dtype)


def ramp(params: Any) -> Any:
    """Every mask one step further up its linear ramp (a no-op for a model without masks)."""
    if not isinstance(params, dict) or RAMP not in params:
        return params
    steps = params[RAMP]

    def step(path, x):
        name = getattr(path[-1], "key", None)
        if name not in (RESID, HEADS, HIDDEN):
            return x
        return jnp.minimum(1.0, (jnp.round(x * steps) + 1.0) / steps).astype(x.dtype)

    return jax.tree_util.tree_map_with_path(step, params)


def apply_norm(norm: nnx.LayerNorm | nnx.RMSNorm, x: jax.Array, m_D: jax.Array | None) -> jax.Array:
    """The norm, or with masks its mask-weighted form (growth/models/masks.py)."""
    if m_D is None:
        return norm(x)
    bias = norm.bias[...] if isinstance(norm, nnx.LayerNorm) and norm.bias is not None else None
    assert norm.scale is not None  # every norm of this model has a gain
    return weighted_norm(x, m_D, norm.scale[...], bias, norm.epsilon)
