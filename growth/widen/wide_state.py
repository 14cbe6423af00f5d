"""The wide train state of a grown candidate: the optimizer chain's state with every counter moved on
purpose, the per-tensor direction scale and clip weights, and the carried step and dropout key."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from growth.config import ClipMode, GrowthConfig, LrCorrection, OptimConfig, OptimName, Schedule
from growth.training import muon, optimizer, train
from growth.widen.core import Factors, c_in, c_out
from growth.widen.trees import flatten, path_str


def wide_opt_state(
    small: train.TrainState,
    params: Any,
    mu: Any,
    nu: Any,
    tx,
    spec: GrowthConfig,
    scale: dict[str, float],
    clip_weight: dict[str, float],
    reset_mask: dict[str, np.ndarray] | None = None,
    reset_rewarm_steps: int = 0,
) -> Any:
    """The make_optimizer chain's state for the wide params, every counter moved on purpose.

    Clip: per-tensor weights given. Adam: count carried, mu/nu given. Direction: per-tensor scale,
    reset mask, its count 0. Schedule:
    continue keeps the count, rewarm keeps it and ramps over spec.rewarm_steps, restart sets it to 0;
    since_growth = 0 in all three. Built from the abstract init, so no template value is ever read.
    """
    abstract = jax.eval_shape(tx.init, params)
    small_adam, small_sched = small.opt_state[optimizer.ADAM], small.opt_state[optimizer.SCHEDULE]
    i32 = lambda v: jnp.asarray(np.asarray(v), jnp.int32)
    per_tensor = lambda values: jax.tree_util.tree_map_with_path(
        lambda p, _: jnp.asarray(values[path_str(p)], jnp.float32), params
    )
    clip = optimizer.ClipState(weight=per_tensor(clip_weight))
    if isinstance(abstract[optimizer.ADAM], muon.MuonAdamState):  # nu is never read on a Muon leaf: keep it 0
        nu = jax.tree_util.tree_map_with_path(lambda p, v: v * 0 if muon.is_muon(path_str(p), v.shape) else v, nu)
    adam = abstract[optimizer.ADAM]._replace(count=i32(small_adam.count), mu=mu, nu=nu)
    mask = reset_mask or {}
    direction = optimizer.DirectionState(
        scale=per_tensor(scale),
        reset_mask=jax.tree_util.tree_map_with_path(
            lambda p, x: jnp.asarray(mask.get(path_str(p), np.zeros(x.shape)), jnp.float32), params
        ),
        reset_rewarm_steps=i32(reset_rewarm_steps),
        count=i32(0),
    )
    schedule = optimizer.GrowthScheduleState(
        count=i32(0 if spec.schedule == Schedule["restart"] else small_sched.count),
        since_growth=i32(0),
        rewarm_steps=i32(spec.rewarm_steps if spec.schedule == Schedule["rewarm"] else 0),
    )
    opt = type(abstract)(abstract)
    opt[optimizer.CLIP], opt[optimizer.ADAM] = clip, adam
    opt[optimizer.DIRECTION], opt[optimizer.SCHEDULE] = direction, schedule
    for (p, got), want in zip(jax.tree_util.tree_flatten_with_path(opt)[0], jax.tree.leaves(abstract), strict=True):
        if isinstance(got, jax.ShapeDtypeStruct) or got.shape != want.shape or got.dtype != want.dtype:
            raise AssertionError(f"wide optimizer state entry {path_str(p)} was not built from the small state")
    return opt


def fan_in_factor(path: str, small_shape: tuple[int, ...], k: Factors, optim_cfg: OptimConfig) -> float:
    """lr_correction=fan_in's factor of one tensor: 1 / c_in for an Adam direction, and for a Muon
    matrix sqrt(c_out / c_in) x s_small / s_wide (growth.training.muon.width_lr_ratio; docs/strategies.md)."""
    if optim_cfg.name == OptimName.muon and muon.is_muon(path, small_shape):
        return muon.width_lr_ratio(small_shape, c_in(path, k), c_out(path, k), optim_cfg.muon.consistent_rms)
    return 1.0 / c_in(path, k)


def direction_scale(
    small: train.TrainState, spec: GrowthConfig, k: Factors, optim_cfg: OptimConfig
) -> dict[str, float]:
    """Per-tensor direction scale: the small run's, times `fan_in_factor` under lr_correction=fan_in."""
    small_scale = flatten(small.opt_state[optimizer.DIRECTION].scale)
    shapes = {path: tuple(x.shape) for path, x in flatten(small.params).items()}
    fan_in = spec.lr_correction == LrCorrection.fan_in
    return {
        path: float(s) * (fan_in_factor(path, shapes[path], k, optim_cfg) if fan_in else 1)
        for path, s in small_scale.items()
    }


def clip_weight(small: train.TrainState, optim_cfg: OptimConfig, k: Factors) -> dict[str, float]:
    """Per-tensor weight in the clip's norm: the small run's, times c_out / c_in under clone_consistent.

    A clone's gradient has the small one's squared norm times c_in / c_out per tensor, so these
    weights give back the norm the small model sees on the same batch.
    """
    small_weight = flatten(small.opt_state[optimizer.CLIP].weight)
    consistent = optim_cfg.clip_mode == ClipMode["clone_consistent"]
    return {path: float(w) * (c_out(path, k) / c_in(path, k) if consistent else 1) for path, w in small_weight.items()}


def carried(small: train.TrainState, params: Any, opt_state: Any) -> train.TrainState:
    """Wide state carrying the small run's step and dropout key (copied, so either may be donated)."""
    return train.TrainState(
        params=params,
        opt_state=opt_state,
        step=jnp.array(np.asarray(small.step)),
        dropout_key=jnp.array(np.asarray(small.dropout_key)),
    )
