"""Proposed loss heads and the table of variants: explicit losses for growth.training.train's step builders (`loss=`).

A variant is an attention function (benchmarks/explore/attention.py) and a head-and-loss function
`(model, hidden, targets)`, made into a loss `(graphdef, params, batch_BxT1, dropout_key) -> loss`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from benchmarks.explore.attention import (
    attention_current,
    attention_deferred,
    attention_dpa,
    attention_scaled_scores,
    attention_variant,
    forward,
)
from growth.training import train


def _head(m, h):
    return m.tok_embed.attend(h) * m.cfg.logit_scale if m.cfg.tie_embeddings else m.lm_head(h)


def head_current(m, h_BxLxD, targets_BxL):
    """The library's loss head: growth.training.train.head_cross_entropy (logits in row blocks, custom VJP)."""
    return train.head_cross_entropy(h_BxLxD, m.head_matrix(), targets_BxL)


def head_full(m, h_BxLxD, targets_BxL):
    """The loss before issue 12: the whole (B, L, V) logits, optax's softmax cross-entropy."""
    return train.cross_entropy(_head(m, h_BxLxD), targets_BxL)


def head_lse(m, h_BxLxD, targets_BxL):
    """Proposal: logsumexp minus the target logit (no one-hot scatter, one pass fewer over B*L*V)."""
    logits = _head(m, h_BxLxD).astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return (lse_BxL - target_BxL).mean()


@jax.custom_vjp
def _ce_barrier(logits_BxLxV, targets_BxL):
    return _ce_barrier_fwd(logits_BxLxV, targets_BxL)[0]


def _ce_barrier_fwd(logits_BxLxV, targets_BxL):
    logits = logits_BxLxV.astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return (lse_BxL - target_BxL).mean(), (logits, lse_BxL, targets_BxL)


def _ce_barrier_bwd(res, ct):
    logits, lse_BxL, targets_BxL = res
    p = jnp.exp(logits - lse_BxL[..., None])
    onehot = jax.nn.one_hot(targets_BxL, logits.shape[-1], dtype=p.dtype)
    g = jax.lax.optimization_barrier((p - onehot) * (ct / targets_BxL.size))
    return g, None


_ce_barrier.defvjp(_ce_barrier_fwd, _ce_barrier_bwd)


def head_barrier(m, h_BxLxD, targets_BxL):
    """Proposal: the same loss with a hand-written gradient behind an optimization barrier."""
    return _ce_barrier(_head(m, h_BxLxD), targets_BxL)


def head_blocks(block_rows: int):
    """growth.training.train.head_cross_entropy with another row-block size."""

    def head(m, h_BxLxD, targets_BxL):
        return train.head_cross_entropy(h_BxLxD, m.head_matrix(), targets_BxL, block_rows)

    return head


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _recompute_ce_sum(h_NxD, w_DxV, targets_N, weight_N, n_blocks):
    return _recompute_fwd(h_NxD, w_DxV, targets_N, weight_N, n_blocks)[0]


def _recompute_fwd(h_NxD, w_DxV, targets_N, weight_N, n_blocks):
    def body(total, xs):
        h, t, wt = xs
        _, lse, target = train._block_logits(h, w_DxV, t)
        return total + jnp.sum((lse - target) * wt), lse

    blocks = train._row_blocks(h_NxD, targets_N, weight_N, n_blocks)
    total, lse = jax.lax.scan(body, jnp.zeros((), jnp.float32), blocks)
    return total, (h_NxD, w_DxV, targets_N, weight_N, lse)


def _recompute_bwd(n_blocks, res, ct):
    h_NxD, w_DxV, targets_N, weight_N, lse = res

    def body(dw, xs):
        h, t, wt, lse_b = xs
        g = jnp.exp((h @ w_DxV).astype(jnp.float32) - lse_b[:, None])
        g = (g.at[jnp.arange(t.shape[0]), t].add(-1.0) * (wt * ct)[:, None]).astype(h.dtype)
        return dw + h.T @ g, g @ w_DxV.T

    blocks = (*train._row_blocks(h_NxD, targets_N, weight_N, n_blocks), lse)
    dw, dh = jax.lax.scan(body, jnp.zeros_like(w_DxV), blocks)
    return dh.reshape(h_NxD.shape), dw, None, None


_recompute_ce_sum.defvjp(_recompute_fwd, _recompute_bwd)


def head_recompute(m, h_BxLxD, targets_BxL):
    """The loss before issue 29: row blocks whose backward pass forms every block's logits again."""
    D = h_BxLxD.shape[-1]
    h_NxD, targets_N = h_BxLxD.reshape(-1, D), targets_BxL.reshape(-1)
    N = targets_N.shape[0]
    n_blocks = N // train.CE_BLOCK_ROWS
    weight_N = jnp.ones((N,), jnp.float32)
    return _recompute_ce_sum(h_NxD, m.head_matrix(), targets_N, weight_N, n_blocks) / N


def make_loss(attention=attention_current, head=head_current, key_impl: str | None = None) -> train.LossFn:
    """A loss for growth.training.train's step builders from an attention, a head-and-loss and a dropout key kind.

    `key_impl` ("rbg", "unsafe_rbg") re-wraps the step's threefry dropout key as a key of that PRNG for
    the masks only (the checkpointed key stays threefry).
    """

    def loss(graphdef, params, batch_BxT1, dropout_key):
        if dropout_key is not None and key_impl:
            raw = jnp.issubdtype(dropout_key.dtype, jnp.unsignedinteger)
            data = dropout_key if raw else jax.random.key_data(dropout_key)
            data = jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)])
            dropout_key = jax.random.wrap_key_data(data, impl=key_impl)
        m, h = forward(graphdef, params, batch_BxT1[:, :-1], dropout_key, attention)
        return head(m, h, batch_BxT1[:, 1:])

    return loss


def microbatched(n: int) -> train.LossFn:
    """Proposal: the loss as the mean over n equal micro-batches, scanned, so each op's working set
    (above all the (B/n, L, V) logits) is n times smaller. Same value and gradient (equal sizes)."""

    def loss(graphdef, params, batch_BxT1, dropout_key):
        chunks = batch_BxT1.reshape(n, batch_BxT1.shape[0] // n, batch_BxT1.shape[1])

        def body(total, xs):
            i, chunk = xs
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            return total + train.loss_fn(graphdef, params, chunk, key), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (jnp.arange(n), chunks))
        return total / n

    return loss


def unrolled_parts(n: int) -> train.LossFn:
    """Proposal: the mean of n equal parts' losses, written out (no scan), so each part's forward and
    backward is an independent chain that XLA's CPU runtime may run beside the others. Same value and
    gradient up to the order of the sums; dropout keys folded per part (another random stream)."""

    def loss(graphdef, params, batch_BxT1, dropout_key):
        size = batch_BxT1.shape[0] // n
        parts = [
            train.loss_fn(
                graphdef,
                params,
                batch_BxT1[i * size : (i + 1) * size],
                None if dropout_key is None else jax.random.fold_in(dropout_key, i),
            )
            for i in range(n)
        ]
        return sum(parts) / n

    return loss


VARIANTS: dict[str, train.LossFn | None] = {  # None: growth.training.train.loss_fn itself
    "baseline": None,
    "explicit_forward": make_loss(),  # the variants' forward with the library's pieces: must equal baseline
    "attention_autodiff": make_loss(attention_variant(False, "blhd")),  # the attention before issue 29
    "attention_scaled_scores": make_loss(attention_scaled_scores),  # before issue 29's third session
    "fused_qkv": make_loss(attention_variant(True, "blhd")),
    "heads_first": make_loss(attention_variant(False, "bhld")),
    "fused_qkv+heads_first": make_loss(attention_variant(True, "bhld")),
    "attention_dpa": make_loss(attention_dpa),
    "attention_deferred": make_loss(attention_deferred),
    "ce_full_logits": make_loss(head=head_full),  # the loss before issue 12
    "ce_logsumexp": make_loss(head=head_lse),
    "ce_barrier": make_loss(head=head_barrier),
    "ce_blocks256": make_loss(head=head_blocks(256)),
    "ce_blocks1024": make_loss(head=head_blocks(1024)),
    "ce_recompute": make_loss(head=head_recompute),  # the loss before issue 29 (needs N % 512 == 0)
    "fused_qkv+ce_full_logits": make_loss(attention_variant(True, "blhd"), head_full),
    "dropout_rbg": make_loss(key_impl="rbg"),
    "dropout_unsafe_rbg": make_loss(key_impl="unsafe_rbg"),
    "microbatch2": microbatched(2),
    "microbatch4": microbatched(4),
    "halves_unrolled": unrolled_parts(2),
    "quarters_unrolled": unrolled_parts(4),
    "deferred+ce_barrier": make_loss(attention_deferred, head_barrier),
    "heads_first+ce_full_logits": make_loss(attention_variant(False, "bhld"), head_full),
}
# Variants that change the random masks: their loss is checked only with dropout off.
RANDOM_STREAM_VARIANTS = {
    "dropout_rbg",
    "dropout_unsafe_rbg",
    "microbatch2",
    "microbatch4",
    "halves_unrolled",
    "quarters_unrolled",
}
