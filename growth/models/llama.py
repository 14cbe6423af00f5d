"""The llama family (SPEC section 2b): RMSNorm, RoPE, grouped-query attention, SwiGLU, no biases.

Parameters, as plain nested dicts (the names the GPT family uses wherever the role is the same, so
growth layouts and depth surgery read both):

  tok_embed/embedding (V, D)      blocks/{i}/ln1/scale (D,)      blocks/{i}/ln2/scale (D,)
  blocks/{i}/attn/q/kernel (D, H hd)    blocks/{i}/attn/{k, v}/kernel (D, K hd)
  blocks/{i}/attn/{q, k, v}/bias        (only with model.qkv_bias, as Qwen2)
  blocks/{i}/attn/o/kernel (H hd, D)    blocks/{i}/mlp/{gate, up}/kernel (D, F)
  blocks/{i}/mlp/proj/kernel (F, D)     (HF's down_proj)
  ln_f/scale (D,)                       lm_head/kernel (D, V)   (absent when embeddings are tied)

Query head h reads kv head h // (H / K), Hugging Face's rule. RoPE rotates each pair (j, j + hd / 2)
of a head by position * theta^(-2j / hd), the rotate-half layout of transformers' Llama.

`growth_masks` (msg) adds the GPT family's masks (growth/models/masks.py): mask_resid, mask_ramp,
blocks/{i}/attn/mask_heads (one per query head) and blocks/{i}/mlp/mask_hidden (one per SwiGLU unit);
the RMSNorms then take their mean square over the mask-weighted dims only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from growth.config import ModelConfig
from growth.models import attention, masks
from growth.models.checks import hidden, kv_heads
from growth.models.checks import validate_llama as validate
from growth.models.layers import CausalLM, Dropout, PreNormBlock, compute_dtype, dense, norm

__all__ = ["hidden", "kv_heads", "validate"]  # re-exported: the llama helpers live beside the config checks


def rope_tables(length: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """(cos, sin), each (L, head_dim): angle position * theta^(-2j / head_dim) on columns j and j + hd/2."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles_LxH = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    angles = jnp.concatenate([angles_LxH, angles_LxH], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def rope(x_BxLxNxd: jax.Array, cos_Lxd: jax.Array, sin_Lxd: jax.Array) -> jax.Array:
    """Rotate-half RoPE: x cos + rotate_half(x) sin, rotate_half(x) = (-x2, x1), in x's dtype."""
    half = x_BxLxNxd.shape[-1] // 2
    cos_Lxd, sin_Lxd = cos_Lxd.astype(x_BxLxNxd.dtype), sin_Lxd.astype(x_BxLxNxd.dtype)
    rotated = jnp.concatenate([-x_BxLxNxd[..., half:], x_BxLxNxd[..., :half]], axis=-1)
    return x_BxLxNxd * cos_Lxd[None, :, None] + rotated * sin_Lxd[None, :, None]


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, hd = cfg.d_model, cfg.d_model // cfg.n_heads
        self.n_heads, self.n_kv, self.head_dim, self.theta = cfg.n_heads, kv_heads(cfg), hd, cfg.rope_theta
        self.q = dense(d, cfg.n_heads * hd, cfg, rngs, bias=cfg.qkv_bias)
        self.k = dense(d, self.n_kv * hd, cfg, rngs, bias=cfg.qkv_bias)
        self.v = dense(d, self.n_kv * hd, cfg, rngs, bias=cfg.qkv_bias)
        self.o = dense(cfg.n_heads * hd, d, cfg, rngs, std=cfg.init_std / math.sqrt(2 * cfg.n_layers), bias=False)
        self.drop = Dropout(cfg.dropout)
        if cfg.growth_masks:
            self.mask_heads = nnx.Param(jnp.ones((cfg.n_heads,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        B, L, _ = x_BxLxD.shape
        hd, group = self.head_dim, self.n_heads // self.n_kv
        cos, sin = rope_tables(L, hd, self.theta)
        q = rope(self.q(x_BxLxD).reshape(B, L, self.n_heads, hd), cos, sin)
        k = rope(self.k(x_BxLxD).reshape(B, L, self.n_kv, hd), cos, sin)
        v = self.v(x_BxLxD).reshape(B, L, self.n_kv, hd)
        k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)  # query head h reads kv head h // group
        keep = self.drop.keep_mask((B, self.n_heads, L, L), deterministic=deterministic, rngs=rngs)
        o_BxLxHxd = attention.attend(q, k, v, attention.causal_mask(L), keep, math.sqrt(hd), self.drop.keep_prob)
        if hasattr(self, "mask_heads"):  # msg: a query head's output enters through its mask
            o_BxLxHxd = o_BxLxHxd * masks.read(self.mask_heads[...])[:, None]
        return self.o(o_BxLxHxd.reshape(B, L, self.n_heads * hd))


class SwiGLU(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.d_model, hidden(cfg)
        self.gate = dense(d, f, cfg, rngs, bias=False)
        self.up = dense(d, f, cfg, rngs, bias=False)
        self.proj = dense(f, d, cfg, rngs, std=cfg.init_std / math.sqrt(2 * cfg.n_layers), bias=False)
        if cfg.growth_masks:
            self.mask_hidden = nnx.Param(jnp.ones((f,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        h = jax.nn.silu(self.gate(x_BxLxD)) * self.up(x_BxLxD)
        if hasattr(self, "mask_hidden"):  # msg: a hidden unit enters through its mask
            h = h * masks.read(self.mask_hidden[...])
        return self.proj(h)


class Block(PreNormBlock):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.ln1 = norm(cfg, cfg.d_model, rngs)  # RMSNorm (model_checks.validate_llama), in the compute dtype
        self.attn = Attention(cfg, rngs)
        self.ln2 = norm(cfg, cfg.d_model, rngs)
        self.mlp = SwiGLU(cfg, rngs)
        self.drop = Dropout(cfg.dropout)


class Llama(CausalLM):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        emb_init = jax.nn.initializers.normal(cfg.init_std)
        dt = compute_dtype(cfg)  # None (float32) or bfloat16; parameters stay float32
        self.tok_embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=emb_init, dtype=dt, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_f = norm(cfg, cfg.d_model, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(
                cfg.d_model, cfg.vocab_size, use_bias=False, kernel_init=emb_init, dtype=dt, rngs=rngs
            )
        self.drop = Dropout(cfg.dropout)
        if cfg.growth_masks:
            self.mask_resid = nnx.Param(jnp.ones((cfg.d_model,), jnp.float32))
            self.mask_ramp = nnx.Param(jnp.ones((), jnp.float32))

    def features(self, tokens_BxL: jax.Array, *, deterministic: bool = True, dropout_key: jax.Array | None = None):
        """(final normed hidden state (B, L, D), final residual stream (B, L, D)): all but the head."""
        deterministic, keys = self.dropout_keys(tokens_BxL, deterministic, dropout_key)
        m_D = masks.read(self.mask_resid[...]) if self.cfg.growth_masks else None
        x = self.tok_embed(tokens_BxL)
        x = x if m_D is None else x * m_D
        x = self.drop(x, deterministic=deterministic, rngs=keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, deterministic=deterministic, rngs=key, m_D=m_D)
        return masks.apply_norm(self.ln_f, x, m_D), x


def count_params(cfg: ModelConfig) -> int:
    """Parameter count of a llama config, in closed form."""
    d, hd, kv, f, v = cfg.d_model, cfg.d_model // cfg.n_heads, kv_heads(cfg), hidden(cfg), cfg.vocab_size
    attn = 2 * d * d + 2 * d * kv * hd + (d + 2 * kv * hd if cfg.qkv_bias else 0)
    block = 2 * d + attn + 3 * d * f
    return v * d + cfg.n_layers * block + d + (0 if cfg.tie_embeddings else d * v)
