"""GPT-style causal LM in Flax NNX (SPEC section 2), used functionally: `apply(graphdef, params, ...)`.

Parameters are plain nested dicts so growth operators and checkpoints work on ordinary pytrees:

  tok_embed/embedding (V, D)      pos_embed/embedding (T, D)
  blocks/{i}/ln1/{scale, bias}    blocks/{i}/attn/{q, k, v, o}/{kernel (D, D), bias (D,)}
  blocks/{i}/ln2/{scale, bias}    blocks/{i}/mlp/{fc: (D, F), proj: (F, D)}/{kernel, bias}
  ln_f/{scale, bias}              lm_head/kernel (D, V)   (absent when embeddings are tied)

RMSNorm layers have `scale` only. Heads are contiguous slices of q/k/v outputs: head h owns
columns h*head_dim .. (h+1)*head_dim.

`growth_masks` (msg) adds mask_resid, mask_ramp, blocks/{i}/attn/mask_heads, blocks/{i}/mlp/mask_hidden.

Options for imported checkpoints (docs/surgery.md): `activation`, unscaled attention
(`attn_scale: false`) and sliding-window blocks (`attention_layers`, `window_size`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from growth import masks
from growth.config import ModelConfig
from growth.model_checks import ConfigError as ConfigError  # re-exported: raised by every config check
from growth.model_checks import block_windows, validate_model_config

Params = dict[str, Any]


ACTIVATIONS = {
    "gelu_tanh": jax.nn.gelu,  # tanh approximation (HF gelu_new / gelu_pytorch_tanh)
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact erf form (HF gelu)
    "relu": jax.nn.relu,
}


def compute_dtype(cfg: ModelConfig):
    """The dtype layers compute in: None (float32, from the float32 parameters) or bfloat16."""
    return jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else None


def _norm(cfg: ModelConfig, dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm | nnx.RMSNorm:
    if cfg.norm == "layernorm":
        return nnx.LayerNorm(dim, epsilon=cfg.norm_eps, dtype=compute_dtype(cfg), rngs=rngs)
    return nnx.RMSNorm(dim, epsilon=cfg.norm_eps, dtype=compute_dtype(cfg), rngs=rngs)


def _dense(din: int, dout: int, cfg: ModelConfig, rngs: nnx.Rngs, std: float | None = None) -> nnx.Linear:
    init = jax.nn.initializers.normal(cfg.init_std if std is None else std)
    return nnx.Linear(
        din, dout, kernel_init=init, bias_init=jax.nn.initializers.zeros, dtype=compute_dtype(cfg), rngs=rngs
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

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        if deterministic or rngs is None or self.threshold == 0:
            return x
        n = x.size
        words = jax.random.bits(rngs, ((n + 1) // 2,), jnp.uint32)
        u16 = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n].reshape(x.shape)
        keep_prob = 1.0 - self.threshold / 2**DROPOUT_BITS
        return jnp.where(u16 >= self.threshold, x / keep_prob, 0).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, window: int = 0):
        d = cfg.d_model
        out_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.n_heads = cfg.n_heads
        self.scaled = cfg.attn_scale
        self.window = window  # 0: causal over the whole context; w > 0: the last w positions only
        self.q = _dense(d, d, cfg, rngs)
        self.k = _dense(d, d, cfg, rngs)
        self.v = _dense(d, d, cfg, rngs)
        self.o = _dense(d, d, cfg, rngs, std=out_std)
        self.drop = Dropout(cfg.dropout)
        if cfg.growth_masks:
            self.mask_heads = nnx.Param(jnp.ones((cfg.n_heads,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        B, L, D = x_BxLxD.shape
        hd = D // self.n_heads

        def heads(t):
            return t.reshape(B, L, self.n_heads, hd)

        q, k, v = heads(self.q(x_BxLxD)), heads(self.k(x_BxLxD)), heads(self.v(x_BxLxD))
        s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k).astype(jnp.float32)  # softmax in float32 under bf16
        if self.scaled:
            s_BxHxLxL = s_BxHxLxL / math.sqrt(hd)
        causal_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
        if self.window:
            pos = jnp.arange(L)
            causal_LxL = causal_LxL & (pos[:, None] - pos[None, :] < self.window)
        s_BxHxLxL = jnp.where(causal_LxL, s_BxHxLxL, jnp.finfo(s_BxHxLxL.dtype).min)
        p_BxHxLxL = jax.nn.softmax(s_BxHxLxL, axis=-1)
        p_BxHxLxL = self.drop(p_BxHxLxL, deterministic=deterministic, rngs=rngs).astype(v.dtype)
        o_BxLxHxd = jnp.einsum("bhlm,bmhd->blhd", p_BxHxLxL, v)
        if hasattr(self, "mask_heads"):
            o_BxLxHxd = o_BxLxHxd * masks.read(self.mask_heads[...])[:, None]
        return self.o(o_BxLxHxd.reshape(B, L, D))


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
        self.fc = _dense(d, f, cfg, rngs)
        self.proj = _dense(f, d, cfg, rngs, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))
        self.activation = cfg.activation
        if cfg.growth_masks:
            self.mask_hidden = nnx.Param(jnp.ones((f,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        h = ACTIVATIONS[self.activation](self.fc(x_BxLxD))
        if hasattr(self, "mask_hidden"):
            h = h * masks.read(self.mask_hidden[...])
        return self.proj(h)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, window: int = 0):
        self.ln1 = _norm(cfg, cfg.d_model, rngs)
        self.attn = Attention(cfg, rngs, window)
        self.ln2 = _norm(cfg, cfg.d_model, rngs)
        self.mlp = MLP(cfg, rngs)
        self.drop = Dropout(cfg.dropout)

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: jax.Array | None, m_D: jax.Array | None = None):
        """`m_D`: the residual mask of a growth-masked model (None otherwise)."""
        k_attn, k_res1, k_res2 = (None, None, None) if rngs is None else jax.random.split(rngs, 3)
        out = (lambda h: h) if m_D is None else (lambda h: h * m_D)
        h = out(self.attn(masks.apply_norm(self.ln1, x, m_D), deterministic=deterministic, rngs=k_attn))
        x = x + self.drop(h, deterministic=deterministic, rngs=k_res1)
        h = out(self.mlp(masks.apply_norm(self.ln2, x, m_D)))
        return x + self.drop(h, deterministic=deterministic, rngs=k_res2)


class GPT(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        validate_model_config(cfg)
        self.cfg = cfg
        emb_init = jax.nn.initializers.normal(cfg.init_std)
        dt = compute_dtype(cfg)
        self.tok_embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=emb_init, dtype=dt, rngs=rngs)
        self.pos_embed = nnx.Embed(cfg.context, cfg.d_model, embedding_init=emb_init, dtype=dt, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs, w) for w in block_windows(cfg)])
        self.ln_f = _norm(cfg, cfg.d_model, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(
                cfg.d_model, cfg.vocab_size, use_bias=False, kernel_init=emb_init, dtype=dt, rngs=rngs
            )
        self.drop = Dropout(cfg.dropout)
        if cfg.growth_masks:
            self.mask_resid = nnx.Param(jnp.ones((cfg.d_model,), jnp.float32))
            self.mask_ramp = nnx.Param(jnp.ones((), jnp.float32))

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
        logits = self.tok_embed.attend(h) * self.cfg.logit_scale if self.cfg.tie_embeddings else self.lm_head(h)
        return (logits, residual_BxLxD) if return_residual else logits

    def features(self, tokens_BxL: jax.Array, *, deterministic: bool = True, dropout_key: jax.Array | None = None):
        """(final normed hidden state (B, L, D), final residual stream (B, L, D)): all but the head."""
        L = tokens_BxL.shape[1]
        if self.cfg.context < L:
            raise ConfigError(f"sequence length {L} exceeds model.context={self.cfg.context}")
        deterministic = deterministic or dropout_key is None or self.cfg.dropout == 0.0
        keys = [None] * (len(self.blocks) + 1)
        if not deterministic and dropout_key is not None:
            keys = list(jax.random.split(dropout_key, len(self.blocks) + 1))
        m_D = masks.read(self.mask_resid[...]) if self.cfg.growth_masks else None
        x = self.tok_embed(tokens_BxL) + self.pos_embed(jnp.arange(L))[None]
        x = x if m_D is None else x * m_D
        x = self.drop(x, deterministic=deterministic, rngs=keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, deterministic=deterministic, rngs=key, m_D=m_D)
        return masks.apply_norm(self.ln_f, x, m_D), x

    def head_matrix(self) -> jax.Array:
        """(D, V): logits = features @ head_matrix (the tied embedding, transposed and scaled, or lm_head)."""
        if self.cfg.tie_embeddings:
            return self.tok_embed.embedding[...].T * self.cfg.logit_scale
        return self.lm_head.kernel[...]


def build(cfg: ModelConfig, key: jax.Array) -> tuple[nnx.GraphDef, Params]:
    """Initialise a model: its graph definition and its parameters as a plain nested dict."""
    model = GPT(cfg, nnx.Rngs(params=key))
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def abstract(cfg: ModelConfig) -> tuple[nnx.GraphDef, Params]:
    """Graph definition and parameter shapes (jax.ShapeDtypeStruct leaves), allocating nothing."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: GPT(cfg, nnx.Rngs(0))), nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def apply(
    graphdef: nnx.GraphDef,
    params: Params,
    tokens_BxL: jax.Array,
    *,
    dropout_key: jax.Array | None = None,
    return_residual: bool = False,
):
    """Run the model functionally; dropout is active only when `dropout_key` is given."""
    model = nnx.merge(graphdef, params)
    return model(
        tokens_BxL,
        deterministic=dropout_key is None,
        dropout_key=dropout_key,
        return_residual=return_residual,
    )


def apply_features(
    graphdef: nnx.GraphDef, params: Params, tokens_BxL: jax.Array, *, dropout_key: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """(final normed hidden (B, L, D), head matrix (D, V)): the logits are their product, left to the
    caller (growth.train's loss never forms all of them at once)."""
    model = nnx.merge(graphdef, params)
    h, _ = model.features(tokens_BxL, deterministic=dropout_key is None, dropout_key=dropout_key)
    return h, model.head_matrix().astype(h.dtype)  # a bf16 head matmul under compute_dtype=bfloat16


def identity(cfg: ModelConfig) -> dict:
    """The model settings for run-directory hashes; compute_dtype enters only when not float32, so the
    hashes of runs made before the field existed stay valid."""
    out = dataclasses.asdict(cfg)
    if cfg.compute_dtype == "float32":
        out.pop("compute_dtype")
    return out


def param_count(params: Params) -> int:
    """Number of scalar parameters."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def count_params(cfg: ModelConfig) -> int:
    """Parameter count for a config, computed in closed form."""
    d, f, v, t = cfg.d_model, cfg.mlp_ratio * cfg.d_model, cfg.vocab_size, cfg.context
    norm = 2 * d if cfg.norm == "layernorm" else d
    block = 2 * norm + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    head = 0 if cfg.tie_embeddings else d * v
    return v * d + t * d + cfg.n_layers * block + norm + head
