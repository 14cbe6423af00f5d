"""The AdamW chain, named so every counter is read and moved by name, never by position.

  clip      -> weighted global-norm clip (ClipState.weight: per-tensor weight of its squared norm)
  adam      -> scale_by_adam (Adam's bias-correction `count`, mu, nu); under optim.name=muon,
               growth.training.muon.scale_by_muon_adam (Muon on the hidden matrices, Adam elsewhere; the same
               field names, so growth maps both alike)
  direction -> per-tensor direction scale, reset-unit re-warmup, its own `count`
  decay     -> add_decayed_weights
  schedule  -> the schedule's `count`, steps since growth, optional re-warmup

`direction` sits before the weight decay on purpose: `lr_correction: fan_in` scales the Adam direction
of a cloned fan-in tensor by 1/c_in but must not touch its weight decay. The clip holds its weights in
its state because growth sets them: `clip_mode: clone_consistent` weights each tensor by c_out / c_in,
so a grown model is clipped by the norm the small model would see; weights of 1 are the plain global
norm, computed in the same order as `optax.clip_by_global_norm`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from growth.config import Decay, OptimConfig, OptimName
from growth.training import muon

CLIP, ADAM, DIRECTION, DECAY, SCHEDULE = "clip", "adam", "direction", "decay", "schedule"


class ClipState(NamedTuple):
    weight: Any  # per-tensor weight of its squared gradient norm in the clip's global norm


class DirectionState(NamedTuple):
    scale: Any  # per-tensor multiplier of the Adam direction (1/c_in under lr_correction=fan_in)
    reset_mask: Any  # 1.0 where a unit's moments were reset at growth (asymmetric_reset)
    reset_rewarm_steps: jax.Array  # linear re-warmup length of reset units; 0 = off
    count: jax.Array  # type: ignore[assignment]  # updates since growth (shadows tuple.count, as in optax)


class GrowthScheduleState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # position in the learning-rate schedule
    since_growth: jax.Array  # updates since growth (since start for a fresh run)
    rewarm_steps: jax.Array  # schedule=rewarm: linear ramp to the schedule's value; 0 = off


def weighted_norm(tree: Any, weight: Any) -> jax.Array:
    """sqrt(sum_t weight_t * |tree_t|^2): the global norm when every weight is 1."""
    sums = jax.tree.leaves(jax.tree.map(lambda x, w: w * jnp.sum(jnp.square(x)), tree, weight))
    return jnp.sqrt(sum(sums, start=jnp.zeros((), jnp.float32)))


def clip_by_weighted_norm(max_norm: float) -> optax.GradientTransformation:
    """Clip the gradient by its weighted global norm; max_norm <= 0 never clips."""

    def init_fn(params):
        return ClipState(weight=jax.tree.map(lambda _: jnp.ones((), jnp.float32), params))

    def update_fn(updates, state, params=None):
        del params
        if max_norm <= 0:
            return updates, state
        g_norm = weighted_norm(updates, state.weight)
        trigger = jnp.squeeze(g_norm < max_norm)
        updates = jax.tree.map(lambda t: jax.lax.select(trigger, t, (t / g_norm.astype(t.dtype)) * max_norm), updates)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_direction() -> optax.GradientTransformation:
    """Multiply the Adam direction per tensor, and re-warm reset units linearly if asked."""

    def init_fn(params):
        return DirectionState(
            scale=jax.tree.map(lambda _: jnp.ones((), jnp.float32), params),
            reset_mask=jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
            reset_rewarm_steps=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None):
        del params
        steps = state.reset_rewarm_steps
        ramp = jnp.where(steps > 0, jnp.minimum(1.0, (state.count + 1) / jnp.maximum(steps, 1)), 1.0)
        updates = jax.tree.map(lambda u, s, m: u * s * (1.0 - m * (1.0 - ramp)), updates, state.scale, state.reset_mask)
        return updates, state._replace(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
    """Linear warmup, then cosine or constant."""
    if cfg.decay == Decay.cosine:
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            decay_steps=max(cfg.decay_steps, cfg.warmup_steps + 1),
            end_value=cfg.lr * cfg.min_lr_ratio,
        )
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps), optax.constant_schedule(cfg.lr)],
        [cfg.warmup_steps],
    )


def schedule_lr(schedule: optax.Schedule, state: GrowthScheduleState) -> jax.Array:
    """The learning rate the next update will use."""
    ramp = jnp.where(
        state.rewarm_steps > 0,
        jnp.minimum(1.0, (state.since_growth + 1) / jnp.maximum(state.rewarm_steps, 1)),
        1.0,
    )
    return schedule(state.count) * ramp


def scale_by_growth_schedule(schedule: optax.Schedule) -> optax.GradientTransformation:
    """`scale_by_learning_rate` with a growth-aware re-warmup and separate counters."""

    def init_fn(params):
        del params
        # Separate buffers: the state is donated, and one buffer must not be donated twice.
        return GrowthScheduleState(*(jnp.zeros((), jnp.int32) for _ in range(3)))

    def update_fn(updates, state, params=None):
        del params
        lr = schedule_lr(schedule, state)
        updates = jax.tree.map(lambda u: -lr * u, updates)
        return updates, state._replace(
            count=optax.safe_int32_increment(state.count),
            since_growth=optax.safe_int32_increment(state.since_growth),
        )

    return optax.GradientTransformation(init_fn, update_fn)


def decay_mask(params):
    """Weight decay on matrices (kernels, embeddings), not on biases or norm gains."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """The named chain (AdamW, or Muon + AdamW); see the module docstring for its counters."""
    direction = (
        muon.scale_by_muon_adam(cfg)
        if cfg.name == OptimName.muon
        else optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    )
    return optax.named_chain(
        (CLIP, clip_by_weighted_norm(cfg.clip_norm)),
        (ADAM, direction),
        (DIRECTION, scale_direction()),
        (DECAY, optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask)),
        (SCHEDULE, scale_by_growth_schedule(make_schedule(cfg))),
    )


def current_lr(cfg: OptimConfig, opt_state) -> jax.Array:
    """The learning rate the next step of this optimizer state will use."""
    return schedule_lr(make_schedule(cfg), opt_state[SCHEDULE])
