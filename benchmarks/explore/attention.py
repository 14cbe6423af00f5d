"""The variants' rewritten model: growth.models.gpt.GPT's forward written out with the attention swappable.

Each attention function `(attn, x, deterministic, rngs)` runs inside `forward`; nothing in growth/ is modified.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from growth.models import attention as lib_attention
from growth.models import gpt as model_lib


def attention_current(attn, x_BxLxD, *, deterministic, rngs):
    """The library's attention, called explicitly (growth.models.gpt.Attention.__call__)."""
    return model_lib.Attention.__call__(attn, x_BxLxD, deterministic=deterministic, rngs=rngs)


def _scores_to_out(attn, q, k, v, *, deterministic, rngs, layout):
    """Masked softmax attention of (B, L, H, d) heads ("blhd") or of (B, H, L, d) heads ("bhld")."""
    hd = q.shape[-1]
    if layout == "bhld":
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        s_BxHxLxL = jnp.einsum("bhld,bhmd->bhlm", q, k)
    else:
        s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k)
    if attn.scaled:
        s_BxHxLxL = s_BxHxLxL / math.sqrt(hd)
    L = s_BxHxLxL.shape[-1]
    keep_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
    if attn.window:
        pos = jnp.arange(L)
        keep_LxL = keep_LxL & (pos[:, None] - pos[None, :] < attn.window)
    s_BxHxLxL = jnp.where(keep_LxL, s_BxHxLxL, jnp.finfo(s_BxHxLxL.dtype).min)
    p_BxHxLxL = attn.drop(jax.nn.softmax(s_BxHxLxL, axis=-1), deterministic=deterministic, rngs=rngs)
    if layout == "bhld":
        return jnp.einsum("bhlm,bhmd->bhld", p_BxHxLxL, v).transpose(0, 2, 1, 3)
    return jnp.einsum("bhlm,bmhd->blhd", p_BxHxLxL, v)


def fused_qkv(attn, x_BxLxD):
    """q, k, v (B, L, H, d) from one matmul with the three kernels concatenated at trace time."""
    B, L, D = x_BxLxD.shape
    w_Dx3D = jnp.concatenate([attn.q.kernel[...], attn.k.kernel[...], attn.v.kernel[...]], axis=1)
    b_3D = jnp.concatenate([attn.q.bias[...], attn.k.bias[...], attn.v.bias[...]])
    qkv = (x_BxLxD @ w_Dx3D + b_3D).reshape(B, L, 3, attn.n_heads, D // attn.n_heads)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


def attention_variant(fused: bool, layout: str):
    """Proposal: fused qkv matmul and/or heads-first (B, H, L, d) batched contractions."""

    def attention(attn, x_BxLxD, *, deterministic, rngs):
        B, L, D = x_BxLxD.shape
        if fused:
            q, k, v = fused_qkv(attn, x_BxLxD)
        else:
            q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, D // attn.n_heads) for f in (attn.q, attn.k, attn.v))
        o = _scores_to_out(attn, q, k, v, deterministic=deterministic, rngs=rngs, layout=layout)
        return attn.o(o.reshape(B, L, D))

    return attention


def attention_dpa(attn, x_BxLxD, *, deterministic, rngs):
    """Proposal: jax.nn.dot_product_attention when no dropout falls on the probabilities."""
    if not (deterministic or rngs is None) or attn.window:
        return attention_current(attn, x_BxLxD, deterministic=deterministic, rngs=rngs)
    B, L, D = x_BxLxD.shape
    hd = D // attn.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, hd) for f in (attn.q, attn.k, attn.v))
    o_BxLxHxd = jax.nn.dot_product_attention(q, k, v, scale=None if attn.scaled else 1.0, is_causal=True)
    return attn.o(o_BxLxHxd.reshape(B, L, D))


def attention_deferred(attn, x_BxLxD, *, deterministic, rngs):
    """Proposal: normalise after the value product (divide (B,H,L,hd), not (B,H,L,L)); dropout commutes."""
    B, L, D = x_BxLxD.shape
    hd = D // attn.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, hd) for f in (attn.q, attn.k, attn.v))
    if attn.scaled:
        q = q / math.sqrt(hd)  # scale q (B,L,D) instead of the scores (B,H,L,L)
    s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k)
    pos = jnp.arange(L)
    keep_LxL = pos[:, None] >= pos[None, :]
    if attn.window:
        keep_LxL = keep_LxL & (pos[:, None] - pos[None, :] < attn.window)
    s_BxHxLxL = jnp.where(keep_LxL, s_BxHxLxL, -jnp.inf)
    m_BxHxLx1 = jax.lax.stop_gradient(s_BxHxLxL.max(axis=-1, keepdims=True))
    e_BxHxLxL = jnp.exp(s_BxHxLxL - m_BxHxLx1)
    denom_BxHxL = e_BxHxLxL.sum(axis=-1)
    e_BxHxLxL = attn.drop(e_BxHxLxL, deterministic=deterministic, rngs=rngs)
    o_BxLxHxd = jnp.einsum("bhlm,bmhd->blhd", e_BxHxLxL, v) / denom_BxHxL.transpose(0, 2, 1)[..., None]
    return attn.o(o_BxLxHxd.reshape(B, L, D))


def forward(graphdef, params, tokens_BxL, dropout_key, attention):
    """(model, final normed hidden (B, L, D)): growth.models.gpt.GPT's forward with `attention` swapped in."""
    m = nnx.merge(graphdef, params)
    n = len(m.blocks)
    deterministic = dropout_key is None or m.cfg.dropout == 0.0
    keys = [None] * (n + 1) if deterministic else list(jax.random.split(dropout_key, n + 1))
    x = m.tok_embed(tokens_BxL) + m.pos_embed(jnp.arange(tokens_BxL.shape[1]))[None]
    x = m.drop(x, deterministic=deterministic, rngs=keys[0])
    for block, key in zip(m.blocks, keys[1:], strict=True):
        k_attn, k_res1, k_res2 = (None, None, None) if key is None else jax.random.split(key, 3)
        h = attention(block.attn, block.ln1(x), deterministic=deterministic, rngs=k_attn)
        x = x + block.drop(h, deterministic=deterministic, rngs=k_res1)
        h = block.mlp(block.ln2(x))
        x = x + block.drop(h, deterministic=deterministic, rngs=k_res2)
    return m, m.ln_f(x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _attend_scaled_scores(q, k, v, allowed_LxL, keep, divisor, keep_prob):
    return _scaled_scores_fwd(q, k, v, allowed_LxL, keep, divisor, keep_prob)[0]


def _scaled_scores_fwd(q, k, v, allowed_LxL, keep, divisor, keep_prob):
    s = jnp.einsum("blhd,bmhd->bhlm", q, k).astype(jnp.float32) / divisor
    p = jax.nn.softmax(jnp.where(allowed_LxL, s, jnp.finfo(jnp.float32).min), axis=-1)
    o = jnp.einsum("bhlm,bmhd->blhd", lib_attention._dropped(p, keep, keep_prob).astype(v.dtype), v)
    return o, (q, k, v, keep, p, o)


def _scaled_scores_bwd(divisor, keep_prob, res, do):
    q, k, v, keep, p, o = res
    dv = jnp.einsum("bhlm,blhd->bmhd", lib_attention._dropped(p, keep, keep_prob).astype(do.dtype), do)
    dp = lib_attention._dropped(jnp.einsum("blhd,bmhd->bhlm", do, v).astype(jnp.float32), keep, keep_prob)
    delta = jnp.einsum("blhd,blhd->bhl", do.astype(jnp.float32), o.astype(jnp.float32))
    ds = (p * (dp - delta[..., None]) / divisor).astype(q.dtype)
    return jnp.einsum("bhlm,bmhd->blhd", ds, k), jnp.einsum("bhlm,blhd->bmhd", ds, q), dv.astype(v.dtype), None, None


_attend_scaled_scores.defvjp(_scaled_scores_fwd, _scaled_scores_bwd)


def attention_scaled_scores(attn, x_BxLxD, *, deterministic, rngs):
    """The attention before issue 29's third session: the 1/divisor scale on the (B, H, L, L) scores
    (forward and backward) instead of on q."""
    B, L, D = x_BxLxD.shape
    hd = D // attn.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, hd) for f in (attn.q, attn.k, attn.v))
    keep = attn.drop.keep_mask((B, attn.n_heads, L, L), deterministic=deterministic, rngs=rngs)
    divisor = math.sqrt(hd) if attn.scaled else 1.0
    allowed = lib_attention.causal_mask(L, attn.window)
    o_BxLxHxd = _attend_scaled_scores(q, k, v, allowed, keep, divisor, attn.drop.keep_prob)
    return attn.o(o_BxLxHxd.reshape(B, L, D))
