"""Muon on the hidden matrices, AdamW on the rest: the `adam` slot of the chain under optim.name=muon.

Muon (Jordan et al. 2024) keeps a momentum M <- beta M + (1 - beta) G of each matrix's gradient and
steps along its orthogonalisation, the polar factor U V^T of M = U S V^T, computed by optax's quintic
Newton-Schulz iteration, times a shape scale: each hidden matrix is one call of
`optax.contrib.scale_by_muon` (momentum, Nesterov look-ahead, bias correction, orthogonalisation). As its
authors prescribe, only the hidden 2-D kernels (the blocks' q/k/v/o and MLP matrices) take Muon; the
embeddings, the unembedding, biases and norm gains take Adam (`is_muon`).

The state keeps Adam's field names, so every growth operator maps it as it maps Adam's
(docs/strategies.md, "Muon"):
  count -> the bias-correction count of both halves (carried by growth like Adam's)
  mu    -> Muon's momentum on a Muon leaf, Adam's first moment elsewhere: both are exponential averages
           of the gradient, so the one linear gradient map of a candidate maps them alike
  nu    -> Adam's second moment; zeros on a Muon leaf, which every map sends to zeros
The clip, direction scale, weight decay and schedule slots around it are the AdamW chain's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonState, scale_by_muon

from growth.config import OptimConfig

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # optax's default quintic (Keller Jordan's), fixed here on purpose


class MuonAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # updates so far (shadows tuple.count, as in optax)
    mu: Any  # Muon momentum (Muon leaves) / Adam's first moment (Adam leaves)
    nu: Any  # Adam's second moment; zeros on Muon leaves


def _path_str(path: Sequence[Any]) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def is_muon(path: str, shape: Sequence[int]) -> bool:
    """A hidden matrix: a block's 2-D kernel (the embeddings, lm_head, biases and gains take Adam)."""
    return path.startswith("blocks/") and path.endswith("/kernel") and len(shape) == 2


def shape_scale(shape: Sequence[int], consistent_rms: float) -> float:
    """The multiplier of a (fan_in, fan_out) matrix's orthogonalised update (MuonConfig.consistent_rms)."""
    fan_in, fan_out = shape
    if consistent_rms > 0:
        return consistent_rms * math.sqrt(max(fan_in, fan_out))
    return math.sqrt(max(1.0, fan_out / fan_in))


def width_lr_ratio(small_shape: Sequence[int], c_in: int, c_out: int, consistent_rms: float) -> float:
    """The direction scale under which a clone's Muon step is the small step, mapped (docs/strategies.md).

    A clone's momentum is tile(M) / c_out, whose orthogonalisation is tile(O) / sqrt(c_in c_out); the
    weight must move by tile(dW) / c_in, so the wide step needs sqrt(c_out / c_in) x s_small / s_wide.
    """
    wide = (small_shape[0] * c_in, small_shape[1] * c_out)
    return math.sqrt(c_out / c_in) * shape_scale(small_shape, consistent_rms) / shape_scale(wide, consistent_rms)


def scale_by_muon_adam(cfg: OptimConfig) -> optax.GradientTransformation:
    """Muon directions on the hidden matrices, Adam's elsewhere, one state (MuonAdamState)."""
    beta, b1, b2, eps = cfg.muon.beta, cfg.b1, cfg.b2, cfg.eps
    coeffs = jnp.asarray(NS_COEFFS, jnp.float32)
    one_matrix = scale_by_muon(NS_COEFFS, cfg.muon.ns_steps, beta, nesterov=cfg.muon.nesterov)

    def init_fn(params):
        zeros = lambda: jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        return MuonAdamState(count=jnp.zeros((), jnp.int32), mu=zeros(), nu=zeros())

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        t = count.astype(jnp.float32)

        def one(path, g, mu, nu):
            if is_muon(_path_str(path), g.shape):  # the shared count is optax's pre-increment count
                o, new = one_matrix.update(g, MuonState(count=state.count, mu=mu, ns_coeffs=coeffs))
                return o * shape_scale(g.shape, cfg.muon.consistent_rms), new.mu, nu
            mu = b1 * mu + (1 - b1) * g
            nu = b2 * nu + (1 - b2) * g * g
            return (mu / (1 - b1**t)) / (jnp.sqrt(nu / (1 - b2**t)) + eps), mu, nu

        out = jax.tree_util.tree_map_with_path(one, updates, state.mu, state.nu)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)
        return pick(0), MuonAdamState(count=count, mu=pick(1), nu=pick(2))

    return optax.GradientTransformation(init_fn, update_fn)
