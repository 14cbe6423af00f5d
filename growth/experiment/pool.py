"""The candidate pool: build every warm start, stack those of one shape, and the programs that train
and measure them.

Candidates that share a wide shape are stacked on a leading axis and trained by one compiled step on
the same batch (`runner.pool_step`). Compiled programs are cached by an explicit key (ProgramKey), so
every regime and replicate of a process reuses them.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from growth import widen
from growth.config import Config, ModelConfig, PoolStep, config_hash
from growth.data import pipeline as data_lib
from growth.distributed import hosts
from growth.measure import metric_registry, metrics
from growth.models import gpt as model_lib
from growth.training import optimizer, train

REFERENCE = widen.registry.reference()  # the small model continued: it runs beside the stacked pool


class PoolError(ValueError):
    """A pool setting that cannot work; the message names it and the fix."""


@dataclass
class Group:
    """Candidates sharing one wide shape, stacked on a leading axis."""

    names: list[str]
    model_cfg: ModelConfig
    state: train.TrainState  # stacked
    projectors: jax.Array  # (C, D, D) projector onto each candidate's inherited subspace
    has_subspace: list[bool]


# ---------------------------------------------------------------- building


def _stable_key(root: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(root, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def with_default_pool(cfg: Config) -> Config:
    """`cfg` with the registry's default pool where it names none."""
    return cfg if cfg.pool is not None else dataclasses.replace(cfg, pool=widen.registry.default_pool())


def check_pool(cfg: Config) -> None:
    """Every pool name is registered and its options are valid (run once per cell, before anything is built)."""
    unknown = [n for n in cfg.filled_pool() if widen.registry.get(n) is None]
    if unknown:
        raise PoolError(f"pool has unknown candidates {unknown}; valid: {', '.join(widen.registry.names())}")
    for name in cfg.filled_pool():
        widen.check_options(name, cfg.growth)


def growth_batches(cfg: Config, data: data_lib.TokenData | None) -> np.ndarray | None:
    """The pretraining batches of the `growth.ligo.steps` steps just before the growth step (cycled when
    fewer were taken): what a candidate that trains before its continuation (ligo) may use. None
    unless the pool has an entry with `pregrowth_batches`."""
    needing = widen.registry.needing_batches(cfg.filled_pool())
    if not needing:
        return None
    if data is None:
        raise PoolError(f"pool {needing} trains on pretraining batches; pass data")
    g, n = cfg.growth_step, int(cfg.growth.ligo.steps)
    if g < 1:
        raise PoolError(
            f"ligo trains its growth operator on the pretraining batches before growth_step={g}, and there are"
            " none; grow from a later step (growth_step >= 1) or drop ligo from the pool"
        )
    steps = [g - n + j for j in range(n)] if g >= n else [j % g for j in range(n)]
    return np.stack([data_lib.batch_at(data, cfg.seed, t, cfg.pretrain.batch_size) for t in steps])


def build_pool(
    cfg: Config, small_state: train.TrainState, data: data_lib.TokenData | None = None
) -> dict[str, widen.Grown]:
    """Every wide candidate of the pool (the small reference continues beside them, unstacked).

    `data` supplies the pre-growth batches of the candidates that train before continuing (ligo).
    """
    root = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), train.GROWTH_ROLE)
    batches = growth_batches(cfg, data)
    return {
        name: widen.grow(name, small_state, cfg.model, cfg.growth, cfg.optim, _stable_key(root, name), batches)
        for name in cfg.filled_pool()
        if name != REFERENCE
    }


def _signature(grown: widen.Grown):
    leaves, treedef = jax.tree.flatten(grown.state)
    return (config_hash(grown.model_cfg), treedef, tuple((x.shape, str(jnp.result_type(x))) for x in leaves))


def group_pool(pool: dict[str, widen.Grown]) -> list[Group]:
    """Stack candidates that share a model config and state shapes."""
    by_sig: dict = {}
    for name, grown in pool.items():
        by_sig.setdefault(_signature(grown), []).append(name)
    groups = []
    for names in by_sig.values():
        members = [pool[n] for n in names]
        d_wide = members[0].model_cfg.d_model
        projectors = [metrics.subspace_projector(m.embed_map, d_wide) for m in members]
        groups.append(
            Group(
                names=names,
                model_cfg=members[0].model_cfg,
                state=jax.tree.map(lambda *xs: jnp.stack(xs), *[m.state for m in members]),
                projectors=jnp.asarray(np.stack(projectors)),
                has_subspace=[m.embed_map is not None for m in members],
            )
        )
    return groups


# ---------------------------------------------------------------- compiled programs


@dataclass(frozen=True)
class ProgramKey:
    """Everything a compiled program depends on besides its argument shapes."""

    kind: str  # train_step(s) | pool_step(s) | stacked_eval | small_eval | compare (steps: the scanned form)
    model: str  # config_hash of the model config it runs (the wide one for pool programs)
    optim: str = ""  # config_hash of the optimizer config (steps only)
    dropout: float = 0.0
    variant: str = ""  # pool_step, stacked_eval: map | vmap; compare: the small model's config hash and map | vmap


class ProgramCache:
    """Compiled programs by ProgramKey; a process compiles each program once."""

    def __init__(self) -> None:
        self._programs: dict[ProgramKey, Callable] = {}

    def get(self, key: ProgramKey, build: Callable[[], Callable]) -> Callable:
        if key not in self._programs:
            self._programs[key] = build()
        return self._programs[key]

    def clear(self) -> None:
        """Forget every program (benchmarks time compilation from a cold cache)."""
        self._programs.clear()


PROGRAMS = ProgramCache()


def _graphdef(model_cfg: ModelConfig, dropout: float = 0.0):
    return model_lib.abstract(dataclasses.replace(model_cfg, dropout=dropout))[0]


def small_step(cfg: Config, dropout: float, scanned: bool = False) -> Callable:
    """The small model's jitted step; `scanned`: several steps per call (`train.jit_steps`)."""
    key = ProgramKey(
        "train_steps" if scanned else "train_step", config_hash(cfg.model), config_hash(cfg.optim), dropout
    )

    def build():
        step = train.make_train_step(_graphdef(cfg.model, dropout), optimizer.make_optimizer(cfg.optim), cfg.optim)
        return train.jit_steps(step) if scanned else jax.jit(step, donate_argnums=0)

    return PROGRAMS.get(key, build)


def pool_step(cfg: Config, group: Group, dropout: float, scanned: bool = False) -> Callable:
    """A group's stacked step (`train.jit_pool_step`); `scanned`: several steps per call."""
    how = cfg.runner.pool_step
    name = "pool_steps" if scanned else "pool_step"
    key = ProgramKey(name, config_hash(group.model_cfg), config_hash(cfg.optim), dropout, str(how))

    def build():
        tx = optimizer.make_optimizer(cfg.optim)
        step = train.make_pool_step(_graphdef(group.model_cfg, dropout), tx, cfg.optim, how)
        return train.jit_steps(step) if scanned else jax.jit(step, donate_argnums=0)

    return PROGRAMS.get(key, build)


def small_eval(model_cfg: ModelConfig) -> Callable[[Any, np.ndarray], jax.Array]:
    """`(params, chunk_BxT1) -> (B,)` per-sequence losses of the small model."""

    def build():
        graphdef = _graphdef(model_cfg)
        return jax.jit(lambda params, chunk: train.sequence_losses(graphdef, params, chunk))

    return PROGRAMS.get(ProgramKey("small_eval", config_hash(model_cfg)), build)


def stacked_eval(model_cfg: ModelConfig, how: PoolStep) -> Callable[[Any, np.ndarray], jax.Array]:
    """`(params_C, chunk_BxT1) -> (C, B)` per-sequence losses of stacked candidates."""

    def build():
        graphdef = _graphdef(model_cfg)
        return jax.jit(train.over_candidates(lambda params, chunk: train.sequence_losses(graphdef, params, chunk), how))

    return PROGRAMS.get(ProgramKey("stacked_eval", config_hash(model_cfg), variant=str(how)), build)


def compare(wide_cfg: ModelConfig, small_cfg: ModelConfig, how: PoolStep) -> Callable:
    """Per candidate on one held-out chunk: per-sequence loss and every registered metric part."""
    parts = metric_registry.compared_parts()

    def build():
        graphdef_wide, graphdef_small = _graphdef(wide_cfg), _graphdef(small_cfg)

        @jax.jit
        def program(params_C, ref_params_C, small_params, projectors_C, chunk_BxT1):
            inputs, targets = chunk_BxT1[:, :-1], chunk_BxT1[:, 1:]
            small_logits = model_lib.apply(graphdef_small, small_params, inputs)

            def one(candidate, small_logits):
                params, ref_params, projector = candidate
                logits, residual = model_lib.apply(graphdef_wide, params, inputs, return_residual=True)
                ref_logits = model_lib.apply(graphdef_wide, ref_params, inputs)
                outputs = metric_registry.Outputs(logits, small_logits, ref_logits, residual, projector, targets)
                out = {"seq_loss": train.sequence_cross_entropy(logits, targets)}
                for part in parts:
                    out |= part.fn(outputs)
                return out

            return train.over_candidates(one, how)((params_C, ref_params_C, projectors_C), small_logits)

        return program

    names = ",".join(p.name for p in parts)  # a newly registered part compiles a new program
    key = ProgramKey("compare", config_hash(wide_cfg), variant=f"{config_hash(small_cfg)}-{how}-{names}")
    return PROGRAMS.get(key, build)


# ---------------------------------------------------------------- measuring


@dataclass
class Measured:
    """One evaluation of a group: per-sequence losses, plus the comparison sums when asked."""

    seq_loss: np.ndarray  # (C, N)
    sums: dict[str, np.ndarray]  # every part's quantities (C,), summed or maxed over chunks; empty if not compared


def measure(
    group: Group,
    params0: Any,
    small_params: Any,
    small_cfg: ModelConfig,
    eval_BxT1: np.ndarray,
    chunk: int,
    full: bool,
    how: PoolStep,
    mesh: Mesh | None = None,
) -> Measured:
    """Evaluate a group on the whole held-out set; `full` adds the lag-0 / probe comparisons."""
    seq_parts: list[np.ndarray] = []
    sums: dict[str, np.ndarray] = {}
    by_max = {q for p in metric_registry.compared_parts() if p.combine == "max" for q in _quantities(p)}
    program: Callable[..., Any] = (
        compare(group.model_cfg, small_cfg, how) if full else stacked_eval(group.model_cfg, how)
    )
    for part in train.chunks(eval_BxT1, chunk, mesh):
        if not full:
            seq_parts.append(hosts.fetch(program(group.state.params, part)))
            continue
        out = hosts.fetch(program(group.state.params, params0, small_params, group.projectors, part))
        seq_parts.append(np.asarray(out.pop("seq_loss")))
        for k, v in out.items():
            v = np.asarray(v, np.float64)
            sums[k] = v if k not in sums else (np.maximum(sums[k], v) if k in by_max else sums[k] + v)
    return Measured(seq_loss=np.concatenate(seq_parts, axis=1), sums=sums)


def _quantities(part: metric_registry.Part) -> list[str]:
    """The names a part returns (traced once, abstractly, on tiny inputs)."""
    z = jnp.zeros((1, 1, 2), jnp.float32)
    outputs = metric_registry.Outputs(z, z, z, z, jnp.eye(2), jnp.zeros((1, 1), jnp.int32))
    return list(jax.eval_shape(lambda: part.fn(outputs)))


def measure_small(
    small_cfg: ModelConfig, params: Any, eval_BxT1: np.ndarray, chunk: int, mesh: Mesh | None = None
) -> np.ndarray:
    """Per-sequence losses (N,) of the small model."""
    program = small_eval(small_cfg)
    return np.concatenate([hosts.fetch(program(params, part)) for part in train.chunks(eval_BxT1, chunk, mesh)])
