"""The growth experiment for one (seed, growth step): build the pool, measure lag 0, continue per regime.

Candidates that share a wide shape are stacked on a leading axis and trained by one compiled train
step on the same batch (`runner.pool_step`: a loop over them or a vmap); the small model continues
beside them as the reference for the probe KL (and as the `continue_small` candidate). A cell is one
(seed, growth step, regime); its rows are appended to `results.jsonl` in one locked write when it
finishes, so a killed run redoes only the unfinished cell (deterministically: the batches and keys
are functions of seed and step).
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.metadata
import json
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from growth import checkpoint, hf_import, metrics, pretrain, train, widen
from growth import data as data_lib
from growth import model as model_lib
from growth.config import Config, ModelConfig, as_dict, config_hash
from growth.tracking import Tracker, progress, read_jsonl

log = logging.getLogger(__name__)

GROWTH_ROLE, CONTINUATION_ROLE = 2, 3
REGIMES = ("deterministic", "stochastic")
REFERENCE = "continue_small"


class RunnerError(ValueError):
    """A runner setting that cannot work; the message names it and the fix."""


@dataclass
class Group:
    """Candidates sharing one wide shape, stacked on a leading axis."""

    names: list[str]
    model_cfg: ModelConfig
    state: train.TrainState  # stacked
    projectors: jax.Array  # (C, D, D) projector onto each candidate's inherited subspace
    has_subspace: list[bool]


# ---------------------------------------------------------------- results store


def results_path(cfg: Config) -> Path:
    return Path(cfg.out_dir) / cfg.name / "results.jsonl"


def grow_identity(cfg: Config) -> dict:
    """What fixes a cell's numbers, besides its (seed, growth step, regime)."""
    return pretrain.trajectory_identity(cfg) | {
        "growth": dataclasses.asdict(cfg.growth),
        "runner": dataclasses.asdict(cfg.runner),
        "pool": list(cfg.pool),
        "lags": [cfg.probe_lag, cfg.continuation_lag],
        "growth_step": cfg.growth_step,
    }


def versions() -> dict:
    names = ("jax", "flax", "optax", "orbax-checkpoint", "width-growth")
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def finished_cells(path: Path, chash: str) -> set[tuple[int, int, str]]:
    """(seed, growth_step, regime) cells already written by a run of this config."""
    return {
        (r["seed"], r["growth_step"], r["regime"])
        for r in read_jsonl(path)
        if r.get("config_hash") == chash and r.get("metric") == "wall_time"
    }


def append_results(path: Path, rows: list[dict]) -> None:
    """Append a finished cell's rows in one locked, fsynced write (parallel jobs share the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- pool


def base_state(cfg: Config, data: data_lib.TokenData):
    """(graphdef, small train state) at the growth step: restored, pretrained first if missing."""
    if cfg.runner.base_dir:
        directory = Path(cfg.runner.base_dir)
    else:
        pcfg = dataclasses.replace(
            cfg.pretrain,
            steps=max(cfg.pretrain.steps, cfg.growth_step),
            checkpoint_steps=sorted(set(cfg.pretrain.checkpoint_steps) | {cfg.growth_step}),
        )
        directory = pretrain.run(dataclasses.replace(cfg, pretrain=pcfg), data=data)
    graphdef, _, state = pretrain.load_state(directory, cfg.growth_step, cfg)
    return graphdef, state


def _stable_key(root: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(root, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def build_pool(cfg: Config, small_state: train.TrainState) -> dict[str, widen.Grown]:
    """Every wide candidate of the pool (the small reference is handled by the runner)."""
    unknown = [n for n in cfg.pool if n != REFERENCE and n not in widen.CANDIDATES]
    if unknown:
        raise RunnerError(f"pool has unknown candidates {unknown}; valid: {sorted(widen.CANDIDATES)}")
    root = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), GROWTH_ROLE)
    return {
        name: widen.grow(name, small_state, cfg.model, cfg.growth, cfg.optim, _stable_key(root, name))
        for name in cfg.pool
        if name != REFERENCE
    }


def _signature(grown: widen.Grown):
    leaves, treedef = jax.tree.flatten(grown.state)
    return (repr(grown.model_cfg), treedef, tuple((x.shape, str(jnp.result_type(x))) for x in leaves))


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


# ---------------------------------------------------------------- compiled pieces


def _graphdef(model_cfg: ModelConfig, dropout: float):
    return model_lib.abstract(dataclasses.replace(model_cfg, dropout=dropout))[0]


# Compiled functions are shared by every regime and run in a process that has the same shapes.
_compiled: dict = {}


def _cached(kind: str, *cfgs, build):
    key = (kind,) + tuple(repr(c) for c in cfgs)
    if key not in _compiled:
        _compiled[key] = build()
    return _compiled[key]


def make_compare(graphdef_wide, graphdef_small):
    """Per-candidate sums over one held-out chunk: loss, KL to the small model, logit change, escape."""

    @jax.jit
    def compare(params_C, ref_params_C, small_params, projectors_C, chunk_BxT1):
        inputs, targets = chunk_BxT1[:, :-1], chunk_BxT1[:, 1:]
        small_logits = model_lib.apply(graphdef_small, small_params, inputs)

        def one(params, ref_params, projector):
            logits, residual = model_lib.apply(graphdef_wide, params, inputs, return_residual=True)
            ref_logits = model_lib.apply(graphdef_wide, ref_params, inputs)
            outside, total = metrics.escape_parts(residual, projector)
            return {
                "ce": optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).sum(),
                "kl": metrics.token_kl(small_logits, logits).sum(),
                "max_diff": jnp.abs(logits - small_logits).max(),
                "change": jnp.sum((logits - ref_logits).astype(jnp.float32) ** 2),
                "outside": outside,
                "total": total,
            }

        return jax.vmap(one)(params_C, ref_params_C, projectors_C)

    return compare


def make_stacked_eval(graphdef):
    @jax.jit
    def ce_sums(params_C, chunk_BxT1):
        def one(params):
            logits = model_lib.apply(graphdef, params, chunk_BxT1[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), chunk_BxT1[:, 1:]).sum()

        return jax.vmap(one)(params_C)

    return ce_sums


def _chunks(eval_BxT1: np.ndarray, size: int):
    for i in range(0, len(eval_BxT1), size):
        yield np.asarray(eval_BxT1[i : i + size], np.int32)


# ---------------------------------------------------------------- one regime


def eval_lags(cfg: Config) -> list[int]:
    r = cfg.runner
    return sorted(set(range(0, cfg.continuation_lag + 1, r.eval_every)) | {0, cfg.probe_lag, cfg.continuation_lag})


def run_regime(
    cfg: Config,
    regime: str,
    data: data_lib.TokenData,
    small_state: train.TrainState,
    pool: dict[str, widen.Grown],
) -> list[dict]:
    """Continue every candidate and the small reference on the same batches; return tidy rows."""
    r = cfg.runner
    t0 = time.perf_counter()
    rate = 0.0 if regime == "deterministic" else r.stochastic_dropout
    batch_seed = cfg.seed + 1_000_003 if (regime == "stochastic" and r.shuffle_stochastic) else cfg.seed
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), CONTINUATION_ROLE), REGIMES.index(regime))
    tx = train.make_optimizer(cfg.optim)
    lags = eval_lags(cfg)
    n_tok = data.eval_BxT1.shape[0] * (data.eval_BxT1.shape[1] - 1)

    # A copy: the step donates its state, and the caller's small state serves the next regime too.
    small = jax.tree.map(jnp.copy, small_state.replace(dropout_key=key))
    small_step = _cached(
        f"step{rate}",
        cfg.model,
        cfg.optim,
        build=lambda: train.jit_train_step(_graphdef(cfg.model, rate), tx, cfg.optim),
    )
    small_graphdef = model_lib.abstract(cfg.model)[0]
    small_eval = _cached(
        f"eval{r.eval_chunk}", cfg.model, build=lambda: train.make_eval_fn(small_graphdef, r.eval_chunk)
    )

    groups = group_pool(pool)
    runs = []
    for g in groups:
        g.state = g.state.replace(dropout_key=jnp.broadcast_to(key, (len(g.names),) + key.shape))
        eval_graphdef = model_lib.abstract(g.model_cfg)[0]
        runs.append(
            dict(
                group=g,
                step=_cached(
                    f"pool_step{rate}-{r.pool_step}",
                    g.model_cfg,
                    cfg.optim,
                    build=lambda: train.jit_pool_step(_graphdef(g.model_cfg, rate), tx, cfg.optim, r.pool_step),
                ),
                ce=_cached("ce", g.model_cfg, build=lambda: make_stacked_eval(eval_graphdef)),
                compare=_cached(
                    "compare", g.model_cfg, cfg.model, build=lambda: make_compare(eval_graphdef, small_graphdef)
                ),
                params0=jax.tree.map(jnp.copy, g.state.params),
                losses=[],
            )
        )

    curves: dict[str, dict[int, float]] = {n: {} for n in pool}
    curves[REFERENCE] = {}
    diverged: dict[str, int] = {}
    rows: list[tuple[str, int, str, float]] = []

    def alive(name: str) -> bool:
        return name not in diverged

    def evaluate(lag: int, small_params) -> None:
        small_loss = small_eval(small_params, data.eval_BxT1)
        curves[REFERENCE][lag] = small_loss
        if not math.isfinite(small_loss) and REFERENCE not in diverged:
            diverged[REFERENCE] = lag
        for run in runs:
            g = run["group"]
            full = lag in (0, cfg.probe_lag)
            sums: dict[str, np.ndarray] = {}
            for chunk in _chunks(data.eval_BxT1, r.eval_chunk):
                if full:
                    out = jax.device_get(
                        run["compare"](g.state.params, run["params0"], small_params, g.projectors, chunk)
                    )
                else:
                    out = {"ce": np.asarray(run["ce"](g.state.params, chunk))}
                for k, v in out.items():
                    sums[k] = np.maximum(sums[k], v) if (k == "max_diff" and k in sums) else sums.get(k, 0) + v
            for i, name in enumerate(g.names):
                loss = float(sums["ce"][i]) / n_tok
                if not math.isfinite(loss) and alive(name):
                    diverged[name] = lag
                if not alive(name):
                    continue
                curves[name][lag] = loss
                if lag == 0:
                    rows.append((name, 0, "loss_gap", loss - small_loss))
                    rows.append((name, 0, "token_kl", float(sums["kl"][i]) / n_tok))
                    rows.append((name, 0, "max_logit_diff", float(sums["max_diff"][i])))
                if lag == cfg.probe_lag:
                    rows.append((name, lag, "probe_kl", float(sums["kl"][i]) / n_tok))
                    v = g.model_cfg.vocab_size
                    rows.append((name, lag, "probe_rms", math.sqrt(float(sums["change"][i]) / (n_tok * v))))
                    if g.has_subspace[i]:
                        rows.append((name, lag, "probe_escape", float(sums["outside"][i] / sums["total"][i])))

    def check_losses(run) -> None:
        if not run["losses"]:
            return
        losses_SxC = np.asarray(jax.device_get(run["losses"]))
        first = lag_done - len(run["losses"])
        for i, name in enumerate(run["group"].names):
            bad = np.flatnonzero(~np.isfinite(losses_SxC[:, i]))
            if len(bad) and alive(name):
                diverged[name] = first + int(bad[0])
        run["losses"] = []

    lag_done = 0
    evaluate(0, small.params)
    tracker = _tracker(cfg, regime)
    bar = progress(cfg.continuation_lag, f"s{cfg.seed} g{cfg.growth_step} {regime}", cfg.logger.progress)
    try:
        for j in range(cfg.continuation_lag):
            batch = jnp.asarray(data_lib.batch_at(data, batch_seed, cfg.growth_step + j, r.batch_size))
            small, _ = small_step(small, batch)
            for run in runs:
                run["group"].state, m = run["step"](run["group"].state, batch)
                run["losses"].append(m["loss"])
            lag_done = j + 1
            bar.update(1)
            if lag_done in lags:
                for run in runs:
                    check_losses(run)
                evaluate(lag_done, small.params)
                tracker.log(
                    {"step": lag_done} | {f"eval_loss/{n}": c[lag_done] for n, c in curves.items() if lag_done in c},
                    step=lag_done,
                )
    finally:
        bar.close()
        tracker.finish()

    names = list(pool) + ([REFERENCE] if REFERENCE in cfg.pool else [])
    for name in names:
        for lag, value in sorted(curves[name].items()):
            rows.append((name, lag, "eval_loss", value))
        if name in diverged:
            rows.append((name, diverged[name], "diverged", 1.0))
        else:
            curve = [curves[name][lag] for lag in lags]
            rows.append((name, cfg.continuation_lag, "auc", metrics.trapezoid_auc(lags, curve)))
            rows.append((name, cfg.continuation_lag, "final_loss", curve[-1]))
    rows.append(("_pool", cfg.continuation_lag, "wall_time", time.perf_counter() - t0))
    return [_row(cfg, regime, *row) for row in rows if row[0] in names or row[0] == "_pool"]


def _row(cfg: Config, regime: str, candidate: str, lag: int, metric: str, value: float) -> dict:
    value = float(value)
    return {
        "experiment": cfg.name,
        "seed": cfg.seed,
        "growth_step": cfg.growth_step,
        "candidate": candidate,
        "regime": regime,
        "lag": int(lag),
        "metric": metric,
        "value": value if math.isfinite(value) else None,
        "config_hash": config_hash(grow_identity(cfg)),
        "versions": versions(),
    }


def cell_dir(cfg: Config) -> Path:
    return (
        Path(cfg.out_dir) / cfg.name / "grow" / f"seed{cfg.seed}-g{cfg.growth_step}-{config_hash(grow_identity(cfg))}"
    )


def _tracker(cfg: Config, regime: str) -> Tracker:
    out = cell_dir(cfg) / regime
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)  # a redone cell starts its log afresh
    return Tracker(
        out,
        cfg.logger.wandb,
        as_dict(cfg),
        name=f"{cfg.name}-s{cfg.seed}-g{cfg.growth_step}-{regime}",
        group=cfg.name,
        run_id=f"grow-{cell_dir(cfg).name}-{regime}",
    )


# ---------------------------------------------------------------- one (seed, growth step)


def with_base_model(cfg: Config) -> Config:
    """The config with the model config saved in the base checkpoint (e.g. an imported model)."""
    saved = checkpoint.read_config(Path(cfg.runner.base_dir) / "checkpoints", cfg.growth_step)
    return dataclasses.replace(cfg, model=ModelConfig(**saved["model"]))


def validate(cfg: Config) -> None:
    bad = [x for x in cfg.regimes if x not in REGIMES]
    if bad:
        raise RunnerError(f"regimes has unknown values {bad}; valid: {list(REGIMES)}")
    if cfg.runner.pool_step not in train.POOL_STEPS:
        raise RunnerError(f"runner.pool_step={cfg.runner.pool_step!r} is unknown; use one of {list(train.POOL_STEPS)}")
    if not cfg.pool:
        raise RunnerError("pool is empty; name at least one candidate, e.g. pool=[exact_copy]")
    if not 0 < cfg.probe_lag <= cfg.continuation_lag:
        raise RunnerError(f"probe_lag={cfg.probe_lag} must lie in 1..continuation_lag={cfg.continuation_lag}")
    if cfg.growth_step < (0 if cfg.runner.base_dir else 1):
        raise RunnerError(f"growth_step={cfg.growth_step} must be a positive pretraining step")


def run(cfg: Config) -> Path:
    """Run every unfinished regime of this (seed, growth step); return the results file."""
    validate(cfg)
    if cfg.runner.base_dir:
        cfg = hf_import.with_base_run(cfg)  # model (and an imported run's tokenizer) from the base run
    path = results_path(cfg)
    chash = config_hash(grow_identity(cfg))
    done = finished_cells(path, chash)
    todo = [x for x in cfg.regimes if (cfg.seed, cfg.growth_step, x) not in done]
    if not todo:
        log.info("seed %d growth step %d: every regime already finished, skipping", cfg.seed, cfg.growth_step)
        return path
    data = data_lib.load(cfg.data)
    pretrain.check_vocab(cfg, data)
    data_lib.check_batch_size(data, cfg.runner.batch_size)
    _, small_state = base_state(cfg, data)
    pool = build_pool(cfg, small_state)
    for regime in todo:
        append_results(path, run_regime(cfg, regime, data, small_state, pool))
    return path
