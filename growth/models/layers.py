"""Layers both model families share: norms, dense layers, dropout, and the config error."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from growth.config import ComputeDtype, ModelConfig, Norm
from growth.models import masks
from growth.models.checks import ConfigError

__all__ = ["ConfigError"]  # re-exported: raised here (dropout_keys) and by the config checks


def compute_dtype(cfg: ModelConfig):
    """The dtype layers compute in: None (float32, from the float32 parameters) or bfloat16."""
    return jnp.bfloat16 if cfg.compute_dtype == ComputeDtype.bfloat16 else None


def norm(cfg: ModelConfig, dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm | nnx.RMSNorm:
    if cfg.norm == Norm.layernorm:
        return nnx.LayerNorm(dim, epsilon=cfg.norm_eps, dtype=compute_dtype(cfg), rngs=rngs)
    return nnx.RMSNorm(dim, epsilon=cfg.norm_eps, dtype=compute_dtype(cfg), rngs=rngs)


class Dense(nnx.Linear):
    """nnx.Linear over the last axis, computed as one (rows, din) x (din, dout) matmul.

    XLA's CPU backend runs a matmul of a rank-3 operand 1.25x slower than the same matmul of its
    rank-2 view, forward and backward (docs/performance.md, issue 29); the reshapes are free.
    """

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        y_NxF = super().__call__(inputs.reshape(-1, inputs.shape[-1]), out_sharding)
        return y_NxF.reshape(*inputs.shape[:-1], y_NxF.shape[-1])


def dense(din: int, dout: int, cfg: ModelConfig, rngs: nnx.Rngs, std: float | None = None, bias: bool = True) -> Dense:
    init = jax.nn.initializers.normal(cfg.init_std if std is None else std)
    return Dense(
        din,
        dout,
        use_bias=bias,
        kernel_init=init,
        bias_init=jax.nn.initializers.zeros,
        dtype=compute_dtype(cfg),
        rngs=rngs,
    )


# Dropout draws 16-bit uniforms, two from each 32-bit random word: one threefry draw per element
# cost a fifth of the stochastic-regime step on the CPU (docs/performance.md).
DROPOUT_BITS = 16


class Dropout(nnx.Module):
    """Inverted dropout whose drop probability is `rate` rounded to a multiple of 2^-16.

    A unit is dropped when its 16-bit uniform is below round(rate * 2^16); kept units are divided by
    the exact keep probability, so the expected output is the input (rate 0.1 drops with
    probability 0.1000061).
    """

    def __init__(self, rate: float):
        self.threshold = min(round(rate * 2**DROPOUT_BITS), 2**DROPOUT_BITS - 1)
        self.keep_prob = 1.0 - self.threshold / 2**DROPOUT_BITS

    def keep_mask(self, shape: tuple[int, ...], *, deterministic: bool, rngs: jax.Array | None) -> jax.Array | None:
        """The bool mask of kept units for an array of `shape`, or None when dropout is off."""
        if deterministic or rngs is None or self.threshold == 0:
            return None
        n = math.prod(shape)
        words = jax.random.bits(rngs, ((n + 1) // 2,), jnp.uint32)
        u16 = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n].reshape(shape)
        return u16 >= self.threshold

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        keep = self.keep_mask(x.shape, deterministic=deterministic, rngs=rngs)
        return x if keep is None else jnp.where(keep, x / self.keep_prob, 0).astype(x.dtype)


class PreNormBlock(nnx.Module):
    """The residual block both families share: x + attn(norm(x)), then + mlp(norm(x)); subclasses set the parts
    (`ln1`, `attn`, `ln2`, `mlp`, `drop`)."""

    ln1: Any
    attn: Any
    ln2: Any
    mlp: Any
    drop: Dropout

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: jax.Array | None, m_D: jax.Array | None = None):
        """`m_D`: the residual mask of a growth-masked model (None otherwise)."""
        k_attn, k_res1, k_res2 = (None, None, None) if rngs is None else jax.random.split(rngs, 3)
        out = (lambda h: h) if m_D is None else (lambda h: h * m_D)
        h = out(self.attn(masks.apply_norm(self.ln1, x, m_D), deterministic=deterministic, rngs=k_attn))
        x = x + self.drop(h, deterministic=deterministic, rngs=k_res1)
        h = out(self.mlp(masks.apply_norm(self.ln2, x, m_D)))
        return x + self.drop(h, deterministic=deterministic, rngs=k_res2)


class CausalLM(nnx.Module):
    """What both families share above `features`: the logits from the tied embedding or lm_head."""

    cfg: ModelConfig
    tok_embed: nnx.Embed
    lm_head: nnx.Linear

    blocks: nnx.List

    def features(self, tokens_BxL: jax.Array, *, deterministic: bool = True, dropout_key: jax.Array | None = None):
        raise NotImplementedError

    def dropout_keys(
        self, tokens_BxL: jax.Array, deterministic: bool, dropout_key: jax.Array | None
    ) -> tuple[bool, list[jax.Array | None]]:
        """What both families' `features` start with: the sequence must fit model.context; then whether
        dropout is off, and one dropout key for the embeddings and one per block (all None when it is)."""
        L = tokens_BxL.shape[1]
        if self.cfg.context < L:
            raise ConfigError(f"sequence length {L} exceeds model.context={self.cfg.context}")
        deterministic = deterministic or dropout_key is None or self.cfg.dropout == 0.0
        keys: list[jax.Array | None] = [None] * (len(self.blocks) + 1)
        if not deterministic and dropout_key is not None:
            keys = list(jax.random.split(dropout_key, len(self.blocks) + 1))
        return deterministic, keys

    def __call__(
        self,
        tokens_BxL: jax.Array,
        *,
        deterministic: bool = True,
        dropout_key: jax.Array | None = None,
        return_residual: bool = False,
    ):
        """Logits (B, L, V); with `return_residual`, also the final residual stream (B, L, D)."""
        h, residual_BxLxD = self.features(tokens_BxL, deterministic=deterministic, dropout_key=dropout_key)
        if self.cfg.tie_embeddings:
            logits = self.tok_embed.attend(h) * self.cfg.logit_scale
        else:
            logits = self.lm_head(h)
        return (logits, residual_BxLxD) if return_residual else logits

    def head_matrix(self) -> jax.Array:
        """(D, V): logits = features @ head_matrix (the tied embedding, transposed and scaled, or lm_head)."""
        if self.cfg.tie_embeddings:
            return self.tok_embed.embedding[...].T * self.cfg.logit_scale
        return self.lm_head.kernel[...]
