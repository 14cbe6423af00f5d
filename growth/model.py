"""GPT-style causal LM in Flax NNX (SPEC section 2), used functionally: `apply(graphdef, params, ...)`.

Parameters are plain nested dicts so growth operators and checkpoints work on ordinary pytrees:

  tok_embed/embedding (V, D)      pos_embed/embedding (T, D)
  blocks/{i}/ln1/{scale, bias}    blocks/{i}/attn/{q, k, v, o}/{kernel (D, D), bias (D,)}
  blocks/{i}/ln2/{scale, bias}    blocks/{i}/mlp/{fc: (D, F), proj: (F, D)}/{kernel, bias}
  ln_f/{scale, bias}              lm_head/kernel (D, V)   (absent when embeddings are tied)

RMSNorm layers have `scale` only. The llama family (model.family=llama) lives in growth/llama.py. Heads are contiguous slices of q/k/v outputs: head h owns
columns h*head_dim .. (h+1)*head_dim.

Options for imported checkpoints (docs/surgery.md): `activation`, unscaled attention
(`attn_scale: false`) and sliding-window blocks (`attention_layers`, `window_size`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from growth import llama
from growth.config import Activation, AttentionKind, Family, ModelConfig, Norm, check_choice
from growth.layers import DROPOUT_BITS, CausalLM, ConfigError, Dropout, dense, norm

__all__ = ["DROPOUT_BITS", "ConfigError", "Dropout"]  # re-exported: callers name them model_lib.*

Params = dict[str, Any]


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise ConfigError for shapes that cannot build a model."""
    if cfg.d_model <= 0 or cfg.n_heads <= 0 or cfg.n_layers <= 0:
        raise ConfigError(
            f"model.d_model={cfg.d_model}, model.n_heads={cfg.n_heads}, model.n_layers={cfg.n_layers}:"
            " all must be positive integers"
        )
    if cfg.d_model % cfg.n_heads != 0:
        raise ConfigError(
            f"model.n_heads={cfg.n_heads} does not divide model.d_model={cfg.d_model}; choose a head"
            f" count that divides it (e.g. model.n_heads={_divisor_near(cfg.d_model, cfg.n_heads)})"
        )
    try:
        check_choice("model.family", cfg.family, Family)
        check_choice("model.norm", cfg.norm, Norm)
        check_choice("model.activation", cfg.activation, Activation)
        for kind in cfg.attention_layers:
            check_choice("model.attention_layers[]", kind, AttentionKind)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.dropout} must lie in [0, 1)")
    layers = [str(x) for x in cfg.attention_layers]
    if layers and len(layers) != cfg.n_layers:
        raise ConfigError(
            f"model.attention_layers={layers} must be empty or name 'global' or 'local' for each of the"
            f" model.n_layers={cfg.n_layers} blocks"
        )
    if "local" in layers and cfg.window_size <= 0:
        raise ConfigError(f"model.window_size={cfg.window_size}: local blocks need a positive window")
    if cfg.family == Family.llama:
        llama.validate(cfg)


ACTIVATIONS = {
    "gelu_tanh": jax.nn.gelu,  # tanh approximation (HF gelu_new / gelu_pytorch_tanh)
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact erf form (HF gelu)
    "relu": jax.nn.relu,
}


def block_windows(cfg: ModelConfig) -> list[int]:
    """Attention window of each block: 0 for global (causal) attention."""
    return [cfg.window_size if t == "local" else 0 for t in cfg.attention_layers] or [0] * cfg.n_layers


def _divisor_near(n: int, target: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - target))


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

    def __call__(self, x_BxLxD: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        B, L, D = x_BxLxD.shape
        hd = D // self.n_heads

        def heads(t):
            return t.reshape(B, L, self.n_heads, hd)

        q, k, v = heads(self.q(x_BxLxD)), heads(self.k(x_BxLxD)), heads(self.v(x_BxLxD))
        s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k)
        if self.scaled:
            s_BxHxLxL = s_BxHxLxL / math.sqrt(hd)
        causal_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
        if self.window:
            pos = jnp.arange(L)
            causal_LxL = causal_LxL & (pos[:, None] - pos[None, :] < self.window)
        s_BxHxLxL = jnp.where(causal_LxL, s_BxHxLxL, jnp.finfo(s_BxHxLxL.dtype).min)
        p_BxHxLxL = jax.nn.softmax(s_BxHxLxL, axis=-1)
        p_BxHxLxL = self.drop(p_BxHxLxL, deterministic=deterministic, rngs=rngs)
        o_BxLxHxd = jnp.einsum("bhlm,bmhd->blhd", p_BxHxLxL, v)
        return self.o(o_BxLxHxd.reshape(B, L, D))


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
        self.fc = dense(d, f, cfg, rngs)
        self.proj = dense(f, d, cfg, rngs, std=cfg.init_std / math.sqrt(2 * cfg.n_layers))
        self.activation = cfg.activation

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        return self.proj(ACTIVATIONS[self.activation](self.fc(x_BxLxD)))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, window: int = 0):
        self.ln1 = norm(cfg, cfg.d_model, rngs)
        self.attn = Attention(cfg, rngs, window)
        self.ln2 = norm(cfg, cfg.d_model, rngs)
        self.mlp = MLP(cfg, rngs)
        self.drop = Dropout(cfg.dropout)

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: jax.Array | None) -> jax.Array:
        k_attn, k_res1, k_res2 = (None, None, None) if rngs is None else jax.random.split(rngs, 3)
        h = self.attn(self.ln1(x), deterministic=deterministic, rngs=k_attn)
        x = x + self.drop(h, deterministic=deterministic, rngs=k_res1)
        h = self.mlp(self.ln2(x))
        return x + self.drop(h, deterministic=deterministic, rngs=k_res2)


class GPT(CausalLM):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        validate_model_config(cfg)
        self.cfg = cfg
        emb_init = jax.nn.initializers.normal(cfg.init_std)
        self.tok_embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=emb_init, rngs=rngs)
        self.pos_embed = nnx.Embed(cfg.context, cfg.d_model, embedding_init=emb_init, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs, w) for w in block_windows(cfg)])
        self.ln_f = norm(cfg, cfg.d_model, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False, kernel_init=emb_init, rngs=rngs)
        self.drop = Dropout(cfg.dropout)

    def features(self, tokens_BxL: jax.Array, *, deterministic: bool = True, dropout_key: jax.Array | None = None):
        """(final normed hidden state (B, L, D), final residual stream (B, L, D)): all but the head."""
        L = tokens_BxL.shape[1]
        if self.cfg.context < L:
            raise ConfigError(f"sequence length {L} exceeds model.context={self.cfg.context}")
        deterministic = deterministic or dropout_key is None or self.cfg.dropout == 0.0
        keys = [None] * (len(self.blocks) + 1)
        if not deterministic and dropout_key is not None:
            keys = list(jax.random.split(dropout_key, len(self.blocks) + 1))
        x = self.tok_embed(tokens_BxL) + self.pos_embed(jnp.arange(L))[None]
        x = self.drop(x, deterministic=deterministic, rngs=keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, deterministic=deterministic, rngs=key)
        return self.ln_f(x), x


def module(cfg: ModelConfig, rngs: nnx.Rngs) -> CausalLM:
    """The model of `cfg`'s family (growth.llama for llama), validated."""
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
    caller (growth.train's loss never forms all of them at once)."""
    model = nnx.merge(graphdef, params)
    h, _ = model.features(tokens_BxL, deterministic=dropout_key is None, dropout_key=dropout_key)
    return h, model.head_matrix()


def param_count(params: Params) -> int:
    """Number of scalar parameters."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def count_params(cfg: ModelConfig) -> int:
    """Parameter count for a config, computed in closed form."""
    if cfg.family == Family.llama:
        return llama.count_params(cfg)
    d, f, v, t = cfg.d_model, cfg.mlp_ratio * cfg.d_model, cfg.vocab_size, cfg.context
    norm = 2 * d if cfg.norm == "layernorm" else d
    block = 2 * norm + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    head = 0 if cfg.tie_embeddings else d * v
    return v * d + t * d + cfg.n_layers * block + norm + head
