"""GPT-style causal LM in Flax NNX (SPEC section 2), used functionally: `apply(graphdef, params, ...)`.

Parameters are plain nested dicts so growth operators and checkpoints work on ordinary pytrees:

  tok_embed/embedding (V, D)      pos_embed/embedding (T, D)
  blocks/{i}/ln1/{scale, bias}    blocks/{i}/attn/{q, k, v, o}/{kernel (D, D), bias (D,)}
  blocks/{i}/ln2/{scale, bias}    blocks/{i}/mlp/{fc: (D, F), proj: (F, D)}/{kernel, bias}
  ln_f/{scale, bias}              lm_head/kernel (D, V)   (absent when embeddings are tied)

RMSNorm layers have `scale` only. The llama family (model.family=llama) lives in growth/models/llama.py. Heads are contiguous slices of q/k/v outputs: head h owns
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

from growth.config import Activation, ComputeDtype, Family, ModelConfig, Norm
from growth.models import attention, llama, masks
from growth.models.checks import ConfigError as ConfigError  # re-exported: raised by every config check
from growth.models.checks import block_windows, validate_model_config
from growth.models.layers import DROPOUT_BITS, CausalLM, Dropout, PreNormBlock, compute_dtype, dense, norm

__all__ = ["DROPOUT_BITS", "Dropout", "compute_dtype"]  # re-exported: callers name them model_lib.*

Params = dict[str, Any]


ACTIVATIONS = {
    Activation.gelu_tanh: jax.nn.gelu,  # tanh approximation (HF gelu_new / gelu_pytorch_tanh)
    Activation.gelu: lambda x: jax.nn.gelu(x, approximate=False),  # exact erf form (HF gelu)
    Activation.relu: jax.nn.relu,
}


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, window: int = 0):
        d = cfg.d_model
        out_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.n_heads = cfg.n_heads
        self.scaled = cfg.attn_scale
        self.window = window  # 0: causal over the whole context; w > 0: the last w positions only
        self.q = dense(d, d, cfg, rngs)
        self.k = dense(d, d, cfg, rngs)
        self.v = dense(d, d, cfg, rngs)
        self.o = dense(d, d, cfg, rngs, std=out_std)
        self.drop = Dropout(cfg.dropout)
        if cfg.growth_masks:
            self.mask_heads = nnx.Param(jnp.ones((cfg.n_heads,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        B, L, D = x_BxLxD.shape
        hd = D // self.n_heads

        def heads(t):
            return t.reshape(B, L, self.n_heads, hd)

        q, k, v = heads(self.q(x_BxLxD)), heads(self.k(x_BxLxD)), heads(self.v(x_BxLxD))
        keep = self.drop.keep_mask((B, self.n_heads, L, L), deterministic=deterministic, rngs=rngs)
        divisor = math.sqrt(hd) if self.scaled else 1.0  # softmax in float32 under bf16 (growth.models.attention)
        o_BxLxHxd = attention.attend(q, k, v, attention.causal_mask(L, self.window), keep, divisor, self.drop.keep_prob)
        if hasattr(self, "mask_heads"):
            o_BxLxHxd = o_BxLxHxd * masks.read(self.mask_heads[...])[:, None]
        return self.o(o_BxLxHxd.reshape(B, L, D))


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
        self.fc = dense(d, f, cfg, rngs)
        self.proj = dense(f, d, cfg, rngs, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))
        self.activation = cfg.activation
        if cfg.growth_masks:
            self.mask_hidden = nnx.Param(jnp.ones((f,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        h = ACTIVATIONS[self.activation](self.fc(x_BxLxD))
        if hasattr(self, "mask_hidden"):
            h = h * masks.read(self.mask_hidden[...])
        return self.proj(h)


class Block(PreNormBlock):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, window: int = 0):
        self.ln1 = norm(cfg, cfg.d_model, rngs)
        self.attn = Attention(cfg, rngs, window)
        self.ln2 = norm(cfg, cfg.d_model, rngs)
        self.mlp = MLP(cfg, rngs)
        self.drop = Dropout(cfg.dropout)


class GPT(CausalLM):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        validate_model_config(cfg)
        self.cfg = cfg
        emb_init = jax.nn.initializers.normal(cfg.init_std)
        dt = compute_dtype(cfg)
        self.tok_embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=emb_init, dtype=dt, rngs=rngs)
        self.pos_embed = nnx.Embed(cfg.context, cfg.d_model, embedding_init=emb_init, dtype=dt, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs, w) for w in block_windows(cfg)])
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
        L = tokens_BxL.shape[1]
        m_D = masks.read(self.mask_resid[...]) if self.cfg.growth_masks else None
        x = self.tok_embed(tokens_BxL) + self.pos_embed(jnp.arange(L))[None]
        x = x if m_D is None else x * m_D
        x = self.drop(x, deterministic=deterministic, rngs=keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, deterministic=deterministic, rngs=key, m_D=m_D)
        return masks.apply_norm(self.ln_f, x, m_D), x


def module(cfg: ModelConfig, rngs: nnx.Rngs) -> CausalLM:
    """The model of `cfg`'s family (growth.models.llama for llama), validated."""
    validate_model_config(cfg)
    return llama.Llama(cfg, rngs) if cfg.family == Family.llama else GPT(cfg, rngs)


def build(cfg: ModelConfig, key: jax.Array) -> tuple[nnx.GraphDef, Params]:
    """Initialise a model: its graph definition and its parameters as a plain nested dict."""
    model = module(cfg, nnx.Rngs(params=key))
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def abstract(cfg: ModelConfig) -> tuple[nnx.GraphDef, Params]:
    """Graph definition and parameter shapes (jax.ShapeDtypeStruct leaves), allocating nothing."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: module(cfg, nnx.Rngs(0))), nnx.Param)
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
    caller (growth.training.train's loss never forms all of them at once)."""
    model = nnx.merge(graphdef, params)
    h, _ = model.features(tokens_BxL, deterministic=dropout_key is None, dropout_key=dropout_key)
    return h, model.head_matrix().astype(h.dtype)  # a bf16 head matmul under compute_dtype=bfloat16


def identity(cfg: ModelConfig) -> dict:
    """The model settings for run-directory hashes; compute_dtype enters only when not float32 (the
    llama fields of a gpt model only when set), so hashes of runs made before the fields existed stay valid."""
    out, defaults = dataclasses.asdict(cfg), dataclasses.asdict(ModelConfig())
    if cfg.compute_dtype == ComputeDtype.float32:
        out.pop("compute_dtype")
    if cfg.family == Family.gpt:  # the llama fields enter a gpt hash only when set, for the same reason
        for name in ("family", "n_kv_heads", "mlp_hidden", "rope_theta", "qkv_bias"):
            if out[name] == defaults[name]:
                out.pop(name)
    return out


def param_count(params: Params) -> int:
    """Number of scalar parameters."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def count_params(cfg: ModelConfig) -> int:
    """Parameter count for a config, computed in closed form."""
    if cfg.family == Family.llama:
        return llama.count_params(cfg)
    d, f, v, t = cfg.d_model, cfg.mlp_ratio * cfg.d_model, cfg.vocab_size, cfg.context
    norm = 2 * d if cfg.norm == Norm.layernorm else d
    block = 2 * norm + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    head = 0 if cfg.tie_embeddings else d * v
    return v * d + t * d + cfg.n_layers * block + norm + head
