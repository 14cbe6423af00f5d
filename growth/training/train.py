"""Train state, PRNG roles, the jitted train step and the one evaluation program.

The optimizer chain and its counters are in `growth.training.optimizer`. Keys are split by role from the
run's seed: `fold_in(PRNGKey(seed), ROLE)`, so adding a use of randomness never shifts another.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from growth.config import Config, OptimConfig, PoolStep
from growth.distributed import hosts
from growth.distributed import mesh as mesh_lib
from growth.models import gpt as model_lib
from growth.models import masks
from growth.store import checkpoint
from growth.training import optimizer

# PRNG roles: each use of randomness folds its own role into the seed's root key.
PARAMS_ROLE, DROPOUT_ROLE, GROWTH_ROLE, CONTINUATION_ROLE = 0, 1, 2, 3


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or inf."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"training loss became {loss} at step {step}; lower optim.lr or enable clipping")
        self.step = step


@struct.dataclass
class TrainState:
    """Everything needed to continue a run: parameters, optimizer state with all counters, step, key."""

    params: Any
    opt_state: Any
    step: jax.Array  # training steps taken; a grown model carries the small run's count on
    dropout_key: jax.Array  # raw uint32 key; the key of step t is fold_in(dropout_key, t)

    def replace(self, **updates: Any) -> TrainState:
        """A copy with `updates` (typed here; flax's struct dataclass provides the same)."""
        return dataclasses.replace(self, **updates)


# ---------------------------------------------------------------- state


def init_state(params, tx: optax.GradientTransformation, dropout_key: jax.Array) -> TrainState:
    """A fresh train state for freshly initialised parameters."""
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        step=jnp.zeros((), jnp.int32),
        dropout_key=dropout_key,
    )


def fresh_state(cfg: Config) -> tuple[nnx.GraphDef, optax.GradientTransformation, TrainState]:
    """(graphdef, optimizer, state) of a freshly initialised small run, keys split by role."""
    root = jax.random.PRNGKey(cfg.seed)
    graphdef, params = model_lib.build(cfg.model, jax.random.fold_in(root, PARAMS_ROLE))
    tx = optimizer.make_optimizer(cfg.optim)
    state = init_state(params, tx, jax.random.fold_in(root, DROPOUT_ROLE))
    return graphdef, tx, state


def abstract_state(cfg: Config) -> tuple[nnx.GraphDef, optax.GradientTransformation, TrainState]:
    """(graphdef, optimizer, state of ShapeDtypeStructs) for restoring into."""
    graphdef, _ = model_lib.abstract(cfg.model)
    tx = optimizer.make_optimizer(cfg.optim)
    state = jax.eval_shape(lambda: fresh_state(cfg)[2])
    return graphdef, tx, state


def load_state(directory: str | Path, step: int, cfg: Config):
    """(graphdef, optimizer, train state) restored from a run directory's checkpoint."""
    graphdef, tx, target = abstract_state(cfg)
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target)
    state = checkpoint.restore(Path(directory) / "checkpoints", step, target)
    return graphdef, tx, jax.tree.map(jnp.asarray, state)


# ---------------------------------------------------------------- loss, step


def cross_entropy(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """Mean token cross-entropy in float32."""
    logits = logits_BxLxV.astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets_BxL).mean()


# Rows of logits the loss forms at once: (512, V) float32 is 8 MiB at V = 4096, where the whole
# (B*L, V) array is 32 MiB and each pass over it goes through memory (docs/performance.md: 1.3x on
# the wide CPU step, measured in alternation).
CE_BLOCK_ROWS = 512


def _row_blocks(h_NxD, targets_N, weight_N, n_blocks):
    N, D = h_NxD.shape
    rows = N // n_blocks
    return h_NxD.reshape(n_blocks, rows, D), targets_N.reshape(n_blocks, rows), weight_N.reshape(n_blocks, rows)


def _block_logits(h, w_DxV, t):
    """(float32 logits, their logsumexp, the target logit) of one block of rows."""
    logits = (h @ w_DxV).astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    return logits, lse, jnp.take_along_axis(logits, t[:, None], axis=-1)[:, 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _blocked_ce_sum(h_NxD, w_DxV, targets_N, weight_N, n_blocks):
    def body(total, xs):
        h, t, wt = xs
        _, lse, target = _block_logits(h, w_DxV, t)
        return total + jnp.sum((lse - target) * wt), None

    blocks = _row_blocks(h_NxD, targets_N, weight_N, n_blocks)
    return jax.lax.scan(body, jnp.zeros((), jnp.float32), blocks)[0]


def _blocked_ce_fwd(h_NxD, w_DxV, targets_N, weight_N, n_blocks):
    # The loss is the last op of every step, so its cotangent is a scalar known to scale the whole
    # gradient: each block's softmax gradient is formed while its logits are still in cache, and the
    # backward pass only scales (no second pass over the logits; docs/performance.md, issue 29).
    def body(carry, xs):
        total, dw = carry
        h, t, wt = xs
        logits, lse, target = _block_logits(h, w_DxV, t)
        g = jnp.exp(logits - lse[:, None])  # softmax
        g = (g.at[jnp.arange(t.shape[0]), t].add(-1.0) * wt[:, None]).astype(h.dtype)
        return (total + jnp.sum((lse - target) * wt), dw + h.T @ g), g @ w_DxV.T

    init = (jnp.zeros((), jnp.float32), jnp.zeros_like(w_DxV))
    (total, dw), dh = jax.lax.scan(body, init, _row_blocks(h_NxD, targets_N, weight_N, n_blocks))
    return total, (dh.reshape(h_NxD.shape), dw)


def _blocked_ce_bwd(n_blocks, res, ct):
    dh, dw = res
    return (dh * ct).astype(dh.dtype), (dw * ct).astype(dw.dtype), None, None


_blocked_ce_sum.defvjp(_blocked_ce_fwd, _blocked_ce_bwd)


def head_cross_entropy(
    h_BxLxD: jax.Array, w_DxV: jax.Array, targets_BxL: jax.Array, block_rows: int = CE_BLOCK_ROWS
) -> jax.Array:
    """Mean token cross-entropy of the logits h @ w, in float32, never holding all of them.

    The same value and gradient as `cross_entropy(h @ w, targets)`: the logits are formed
    `block_rows` rows at a time and, under differentiation, each block's gradients (with respect
    to h and w) are formed in the same pass (a custom VJP whose backward only scales them), so the
    (B, L, V) logits, their softmax and its gradient never exist whole and are never recomputed.
    Rows are padded with zero weight to a multiple of the block.
    """
    D = h_BxLxD.shape[-1]
    h_NxD, targets_N = h_BxLxD.reshape(-1, D), targets_BxL.reshape(-1)
    N = targets_N.shape[0]
    n_blocks = -(-N // block_rows)
    pad = n_blocks * -(-N // n_blocks) - N  # blocks of equal size, as few padded rows as possible
    weight_N = jnp.ones((N,), jnp.float32)
    if pad:
        h_NxD = jnp.pad(h_NxD, ((0, pad), (0, 0)))
        targets_N, weight_N = jnp.pad(targets_N, (0, pad)), jnp.pad(weight_N, (0, pad))
    return _blocked_ce_sum(h_NxD, w_DxV, targets_N, weight_N, n_blocks) / N


def loss_fn(graphdef: nnx.GraphDef, params, batch_BxT1: jax.Array, dropout_key: jax.Array | None):
    """Mean token cross-entropy of the next token; the logits are formed in row blocks (head_cross_entropy)."""
    h_BxLxD, w_DxV = model_lib.apply_features(graphdef, params, batch_BxT1[:, :-1], dropout_key=dropout_key)
    return head_cross_entropy(h_BxLxD, w_DxV, batch_BxT1[:, 1:])


LossFn = Callable[[nnx.GraphDef, Any, jax.Array, "jax.Array | None"], jax.Array]


def make_train_step(
    graphdef: nnx.GraphDef, tx: optax.GradientTransformation, optim_cfg: OptimConfig, loss: LossFn | None = None
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict]]:
    """The pure train step `(state, batch) -> (state, metrics)`; jit it (see `jit_train_step`).

    `loss` replaces `loss_fn` (same signature): benchmarks time alternative formulations through it.
    """
    loss = loss_fn if loss is None else loss
    schedule = optimizer.make_schedule(optim_cfg)

    def train_step(state: TrainState, batch_BxT1: jax.Array):
        key = jax.random.fold_in(state.dropout_key, state.step)
        value, grads = jax.value_and_grad(loss, argnums=1)(graphdef, state.params, batch_BxT1, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = masks.ramp(optax.apply_updates(state.params, updates))  # msg's masks; else a no-op
        metrics = {
            "loss": value,
            "lr": optimizer.schedule_lr(schedule, state.opt_state[optimizer.SCHEDULE]),
            "grad_norm": optax.tree.norm(grads),
        }
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return train_step


def jit_train_step(graphdef, tx, optim_cfg: OptimConfig, loss: LossFn | None = None):
    """The train step compiled once, with the state donated."""
    return jax.jit(make_train_step(graphdef, tx, optim_cfg, loss), donate_argnums=0)


def jit_pool_step(graphdef, tx, optim_cfg: OptimConfig, how: PoolStep = PoolStep.map, loss: LossFn | None = None):
    """One compiled, donated step of C stacked candidates on the same batch: `(state_C, batch) -> (state_C, metrics_C)`.

    "map" runs the candidates one after another inside the program (`jax.lax.map`), "vmap" batches
    them. Both give each candidate exactly its own train step; they differ only in speed (on the
    2-core CPU, map is 1.2x faster than separate calls and vmap 0.8x; docs/performance.md).
    """
    return jax.jit(make_pool_step(graphdef, tx, optim_cfg, how, loss), donate_argnums=0)


def make_pool_step(graphdef, tx, optim_cfg: OptimConfig, how: PoolStep = PoolStep.map, loss: LossFn | None = None):
    """The pure step of C stacked candidates on one batch (see `jit_pool_step`)."""
    return over_candidates(make_train_step(graphdef, tx, optim_cfg, loss), how)


def jit_steps(step: Callable[[Any, jax.Array], tuple[Any, dict]]) -> Callable[[Any, jax.Array], tuple[Any, dict]]:
    """`(state, batches_NxBxT1) -> (state, metrics with a leading axis of N)`: N steps of the pure `step`
    in one compiled, donated program (`lax.scan`), the same updates as N calls of the jitted step.

    One dispatch per N steps: for the study's small models a step is a few milliseconds and the work
    between programs (dispatch, argument handling) is a measurable share (docs/performance.md, issue 29).
    """
    return jax.jit(lambda state, batches: jax.lax.scan(step, state, batches), donate_argnums=0)


def over_candidates(fn: Callable, how: PoolStep) -> Callable:
    """`fn(x, *shared)` applied to every candidate of the stacked `x_C`: `(x_C, *shared) -> out_C`.

    "map" loops inside the program (`jax.lax.map`), "vmap" batches. On the 2-core CPU the loop is
    the faster for training (1.5x) and for evaluation (2.4x, docs/performance.md): batched
    activations C times larger than the caches cost more than the loop saves.
    """
    if how == PoolStep.vmap:
        return lambda x_C, *shared: jax.vmap(lambda x: fn(x, *shared))(x_C)
    return lambda x_C, *shared: jax.lax.map(lambda x: fn(x, *shared), x_C)


# ---------------------------------------------------------------- evaluation


def sequence_cross_entropy(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """Mean token cross-entropy of each sequence, (B,), in float32."""
    losses_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV.astype(jnp.float32), targets_BxL)
    return losses_BxL.mean(axis=1)


def sequence_losses(graphdef: nnx.GraphDef, params, chunk_BxT1: jax.Array) -> jax.Array:
    """Per-sequence held-out losses, (B,): the one evaluation program of the harness."""
    return sequence_cross_entropy(model_lib.apply(graphdef, params, chunk_BxT1[:, :-1]), chunk_BxT1[:, 1:])


def chunks(eval_BxT1: np.ndarray, size: int, mesh: Mesh | None = None):
    """The evaluation set in fixed-size chunks (the last may be shorter), as int32; on a mesh, each
    chunk is split over its data axis (replicated if the axis does not divide it)."""
    for i in range(0, len(eval_BxT1), size):
        chunk = np.asarray(eval_BxT1[i : i + size], np.int32)
        yield chunk if mesh is None else mesh_lib.put_eval_chunk(mesh, chunk)


def make_eval_fn(
    graphdef: nnx.GraphDef, batch_size: int, mesh: Mesh | None = None
) -> Callable[[Any, np.ndarray], float]:
    """`eval(params, eval_set) -> mean token loss`, in fixed chunks so shapes compile once."""
    program = jax.jit(lambda params, chunk: sequence_losses(graphdef, params, chunk))

    def evaluate(params, eval_BxT1: np.ndarray) -> float:
        parts = [hosts.fetch(program(params, c)) for c in chunks(eval_BxT1, batch_size, mesh)]
        return float(np.concatenate(parts).mean())

    return evaluate


def check_finite(step: int, loss: float) -> None:
    """Raise TrainingDiverged if the loss of `step` is NaN or inf."""
    if not math.isfinite(loss):
        raise TrainingDiverged(step, loss)
