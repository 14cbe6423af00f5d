"""Depth growth of a full train state: insert blocks, carry every optimizer entry with its block.

The candidates `deepen_identity` and `deepen_copy` (growth/widen/candidates.py) call `deepen`;
docs/surgery.md gives the rules. Width is unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from growth.config import DepthConfig, DepthInit, ModelConfig, OptimConfig, check_choice
from growth.models import gpt as model_lib
from growth.models.gpt import ConfigError
from growth.training import optimizer, train


def _zero_writers(block: dict) -> dict:
    """A block whose residual writers (attention out, MLP proj) are zero: it adds nothing to the stream."""
    out = {**block, "attn": dict(block["attn"]), "mlp": dict(block["mlp"])}
    out["attn"]["o"] = jax.tree.map(jnp.zeros_like, block["attn"]["o"])
    out["mlp"]["proj"] = jax.tree.map(jnp.zeros_like, block["mlp"]["proj"])
    return out


def depth_plan(n_layers: int, depth: DepthConfig) -> list[tuple[str, int]]:
    """The grown model's blocks in order: ("old", i) for small block i, ("new", p) for one inserted at p."""
    if depth.n_new < 1:
        raise ConfigError(f"depth.n_new={depth.n_new} must be at least 1")
    positions = list(depth.positions) or [n_layers] * depth.n_new
    if len(positions) != depth.n_new:
        raise ConfigError(
            f"depth.positions={positions} names {len(positions)} positions for depth.n_new={depth.n_new}"
            " blocks; give one position per new block, or none to append them all"
        )
    if any(not 0 <= p <= n_layers for p in positions):
        raise ConfigError(f"depth.positions={positions} must lie in 0..{n_layers} (n_layers appends)")
    plan: list[tuple[str, int]] = []
    for p in range(n_layers + 1):
        plan += [("new", p)] * positions.count(p)
        if p < n_layers:
            plan.append(("old", p))
    return plan


def _neighbour(p: int) -> int:
    """The small block a block inserted at `p` copies: the one before it, or block 0 at the front."""
    return max(p - 1, 0)


def deepen_params(
    params: dict, cfg: ModelConfig, depth: DepthConfig, key: jax.Array
) -> tuple[dict, ModelConfig, list[int]]:
    """(params, config, indices of the new blocks) of the model grown by `depth`."""
    try:
        check_choice("depth.init", depth.init, DepthInit)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    plan = depth_plan(cfg.n_layers, depth)
    layers = list(cfg.attention_layers)
    new_cfg = dataclasses.replace(
        cfg,
        n_layers=len(plan),
        attention_layers=[layers[i if kind == "old" else _neighbour(i)] for kind, i in plan] if layers else [],
    )
    _, fresh = model_lib.build(new_cfg, key)
    blocks, new_idx = {}, []
    for j, (kind, i) in enumerate(plan):
        if kind == "old":
            blocks[j] = params["blocks"][i]
            continue
        new_idx.append(j)
        if depth.init == DepthInit.copy:
            blocks[j] = jax.tree.map(jnp.array, params["blocks"][_neighbour(i)])
        else:
            blocks[j] = fresh["blocks"][j]
        if depth.init == DepthInit.identity:
            blocks[j] = _zero_writers(blocks[j])
    return {**params, "blocks": blocks}, new_cfg, new_idx


def deepen(
    small: train.TrainState,
    small_cfg: ModelConfig,
    depth: DepthConfig,
    optim_cfg: OptimConfig,
    key: jax.Array,
) -> tuple[train.TrainState, ModelConfig]:
    """Insert blocks into a full train state; new blocks get a fresh optimizer state (zero moments).

    Carried blocks keep their parameters and every per-parameter optimizer entry (Adam mu and nu,
    direction scale, reset mask), moved with their block; all counters, the step and the dropout key
    are carried unchanged.
    """
    params, cfg, _ = deepen_params(small.params, small_cfg, depth, key)
    plan = depth_plan(small_cfg.n_layers, depth)
    old_of = {j: i for j, (kind, i) in enumerate(plan) if kind == "old"}
    fresh_opt = optimizer.make_optimizer(optim_cfg).init(params)
    opt_state = _carry_opt(small.opt_state, fresh_opt, old_of)
    grown = small.replace(params=params, opt_state=opt_state)
    # New buffers throughout: the grown state may be donated to a train step without deleting `small`.
    return jax.tree.map(jnp.array, grown), cfg


def _carry_opt(old: Any, fresh: Any, old_of: dict[int, int]) -> Any:
    """Walk the optax state: remap parameter-shaped trees by block, carry everything else."""
    if isinstance(fresh, Mapping) and "blocks" in fresh:
        blocks = {j: old["blocks"][old_of[j]] if j in old_of else b for j, b in fresh["blocks"].items()}
        return {**{k: old[k] for k in fresh if k != "blocks"}, "blocks": blocks}
    if isinstance(fresh, Mapping):  # the named optimizer chain
        return type(fresh)((k, _carry_opt(old[k], f, old_of)) for k, f in fresh.items())  # type: ignore[call-arg]
    if isinstance(fresh, tuple):
        children = [_carry_opt(o, f, old_of) for o, f in zip(old, fresh, strict=True)]
        return type(fresh)(*children) if hasattr(fresh, "_fields") else type(fresh)(children)
    return old


def depth_spec(spec: Any) -> DepthConfig:
    """The DepthConfig inside a growth spec: the spec itself, or its `depth` field."""
    if isinstance(spec, DepthConfig):
        return spec
    depth = getattr(spec, "depth", None)
    if depth is None:
        raise ConfigError(
            f"the growth spec ({type(spec).__name__}) has no `depth` field; add growth.depth"
            " (growth.config.DepthConfig) to the config"
        )
    if isinstance(depth, DepthConfig):
        return depth
    return DepthConfig(**{f.name: getattr(depth, f.name) for f in dataclasses.fields(DepthConfig)})


def deepen_identity(
    small: train.TrainState, small_cfg: ModelConfig, spec: Any, optim_cfg: OptimConfig, key: jax.Array
) -> tuple[train.TrainState, ModelConfig]:
    """Growth candidate: new blocks freshly initialised with zero output projections (function kept)."""
    return deepen(small, small_cfg, dataclasses.replace(depth_spec(spec), init=DepthInit.identity), optim_cfg, key)


def deepen_copy(
    small: train.TrainState, small_cfg: ModelConfig, spec: Any, optim_cfg: OptimConfig, key: jax.Array
) -> tuple[train.TrainState, ModelConfig]:
    """Growth candidate: each new block copies its neighbour's parameters (moments start at zero)."""
    return deepen(small, small_cfg, dataclasses.replace(depth_spec(spec), init=DepthInit.copy), optim_cfg, key)
