"""The growth experiment for one (seed, growth step): build the pool, then run each unfinished cell.

A cell is one (regime, replicate): every candidate and the small reference continue on the same
batches for `continuation_lag` steps, evaluated at `eval_lags`. Replicate r draws its own batch order
and dropout keys, shared by every candidate of the cell; replicate 0 continues the pretraining stream.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from growth import widen
from growth.config import Config, Regime
from growth.data import pipeline as data_lib
from growth.distributed import hosts
from growth.distributed import mesh as mesh_lib
from growth.experiment import base_run, continuation, evaluation, param_metrics, pool, pretrain, results
from growth.experiment import progress as progress_lib
from growth.experiment.results import CellKey, Row, SeqLosses
from growth.measure import lags as lags_lib
from growth.measure import throughput
from growth.store import lease
from growth.training import train
from growth.training.tracking import Fence, Tracker
from growth.validate import check_bpe_vocab, check_growth_step, to_config

log = logging.getLogger(__name__)

REFERENCE = pool.REFERENCE
SHUFFLE_OFFSET, REPLICATE_OFFSET = 1_000_003, 7_919_009  # batch-stream seeds of reshuffled continuations


class RunnerError(ValueError):
    """A runner setting that cannot work; the message names it and the fix."""


def eval_lags(cfg: Config) -> list[int]:
    every = set(range(0, cfg.continuation_lag + 1, cfg.runner.eval_every))
    log = set(lags_lib.log_spaced(cfg.continuation_lag, cfg.budget.log_eval_lags))  # budget axis, SPEC 5b
    return sorted(every | log | {0, cfg.probe_lag, cfg.continuation_lag})


def continuation_streams(cfg: Config, key: CellKey) -> tuple[int, jax.Array]:
    """(batch seed, dropout key) of a cell: fixed by seed, regime and replicate, shared by its candidates."""
    shuffled = key.regime == Regime.stochastic and cfg.runner.shuffle_stochastic
    batch_seed = key.seed + (SHUFFLE_OFFSET if shuffled else 0) + REPLICATE_OFFSET * key.replicate
    dropout_key = jax.random.fold_in(jax.random.PRNGKey(key.seed), train.CONTINUATION_ROLE)
    dropout_key = jax.random.fold_in(dropout_key, list(Regime).index(key.regime))
    if key.replicate:
        dropout_key = jax.random.fold_in(dropout_key, key.replicate)
    return batch_seed, dropout_key


def run_cell(
    cfg: Config,
    key: CellKey,
    data: data_lib.TokenData,
    small_state: train.TrainState,
    grown: dict[str, widen.Grown],
    fence: Fence | None = None,
) -> tuple[list[Row], SeqLosses]:
    """Continue every candidate and the small reference on the same batches; return rows and losses.

    `fence` (the cell's lease) guards each write of its training log: a lost lease stops the cell."""
    rate = 0.0 if key.regime == Regime.deterministic else cfg.runner.stochastic_dropout
    batch_seed, dropout_key = continuation_streams(cfg, key)
    lags = eval_lags(cfg)
    # Copies: the steps donate their state, and the caller's states serve the next cell too.
    small = jax.tree.map(jnp.copy, small_state.replace(dropout_key=dropout_key))
    groups = pool.group_pool(grown)
    for g in groups:
        g.state = g.state.replace(dropout_key=jnp.broadcast_to(dropout_key, (len(g.names), *dropout_key.shape)))
    mesh = mesh_lib.make(cfg.mesh)  # None on one device: the plain path
    mesh_lib.check_batch(mesh, cfg.runner.batch_size, "runner.batch_size")
    small = mesh_lib.put_state(mesh, small, cfg.mesh.fsdp)
    for g in groups:
        g.state = mesh_lib.put_state(mesh, g.state, cfg.mesh.fsdp)
    stepper = continuation.Stepper(cfg, data, groups, rate, batch_seed, mesh)
    params0 = [jax.tree.map(jnp.copy, g.state.params) for g in groups]
    names = [n for g in groups for n in g.names] + [REFERENCE]
    seq: dict[str, dict[int, np.ndarray]] = {n: {} for n in names}
    diverged: dict[str, int] = {}
    rows: list[Row] = []
    tracker = _tracker(cfg, key, fence)
    bar, meter = progress_lib.grow_job(cfg, key), throughput.grow_meter(cfg, mesh)
    try:
        done = 0
        for lag in lags:
            small, losses = stepper.advance(small, groups, done, lag, bar.update)
            for g, losses_SxC in zip(groups, losses, strict=True):
                if losses_SxC is not None:
                    found = evaluation.first_nonfinite(losses_SxC, g.names, done)
                    diverged |= {n: s for n, s in found.items() if n not in diverged}
            speed = meter.row(lag - done)  # the steps since the last evaluation (synced by device_get)
            done = lag
            seqs, new_rows = evaluation.evaluate(cfg, lag, data.eval_BxT1, groups, params0, small.params)
            new_rows += param_metrics.rows(cfg, lag, groups)  # weight metrics (clone_escape)
            for name, values in seqs.items():
                if name not in diverged and not np.isfinite(values.mean()):
                    diverged[name] = lag
                if name not in diverged:
                    seq[name][lag] = values
            rows += [r for r in new_rows if r.candidate not in diverged]
            losses_now = {f"eval_loss/{n}": float(v[lag].mean()) for n, v in seq.items() if lag in v}
            tracker.log({"step": lag} | losses_now | speed, step=lag)
            meter.start()
    finally:
        bar.close()
        tracker.finish()
    kept = [n for n in names if n != REFERENCE or REFERENCE in cfg.filled_pool()]
    rows += [Row(name, 0, "growth_tokens", float(g.growth_tokens)) for name, g in grown.items()]
    for name in kept:
        curve = {lag: float(v.mean()) for lag, v in seq[name].items()}
        rows += evaluation.curve_rows(name, curve, lags, diverged.get(name))
    n_seq = data.eval_BxT1.shape[0]
    loss = np.full((len(kept), len(lags), n_seq), np.nan, np.float32)
    for c, name in enumerate(kept):
        for l_idx, lag in enumerate(lags):
            if lag in seq[name]:
                loss[c, l_idx] = seq[name][lag]
    return rows, SeqLosses(candidates=kept, lags=lags, loss=loss)


def _tracker(cfg: Config, key: CellKey, fence: Fence | None) -> Tracker:
    out = results.results_path(cfg).parent / "grow" / f"{key.stem}-{results.cell_hash(cfg)}"
    return Tracker(
        out,
        cfg.logger.wandb,
        dataclasses.asdict(cfg),
        name=f"{cfg.name}-{key.stem}",
        group=cfg.name,
        run_id=f"grow-{out.name}",
        fresh=True,  # a redone cell starts its log afresh
        fence=fence,
    )


# ---------------------------------------------------------------- one (seed, growth step)


def base_state(cfg: Config, data: data_lib.TokenData) -> train.TrainState:
    """The small train state at the growth step: restored, pretrained first if missing."""
    if cfg.runner.base_dir:
        directory = Path(cfg.runner.base_dir)
    else:
        pcfg = dataclasses.replace(
            cfg.pretrain,
            steps=max(cfg.pretrain.steps, cfg.growth_step),
            checkpoint_steps=sorted(set(cfg.pretrain.checkpoint_steps) | {cfg.growth_step}),
        )
        directory = pretrain.run(dataclasses.replace(cfg, pretrain=pcfg), data=data)
    return train.load_state(directory, cfg.growth_step, cfg)[2]


def validate(cfg: Config) -> None:
    pool.check_pool(pool.with_default_pool(cfg))
    if not 0 < cfg.probe_lag <= cfg.continuation_lag:
        raise RunnerError(f"probe_lag={cfg.probe_lag} must lie in 1..continuation_lag={cfg.continuation_lag}")
    if cfg.growth_step < (0 if cfg.runner.base_dir else 1):
        raise RunnerError(f"growth_step={cfg.growth_step} must be a positive pretraining step")
    if cfg.replicates < 1:
        raise RunnerError(f"replicates={cfg.replicates} must be at least 1")
    check_growth_step(cfg)
    check_bpe_vocab(cfg)


def prepare(cfg: Config) -> Config:
    """The checked config of one (seed, growth step), before any compute; `cfg` is typed by its entry point."""
    cfg = pool.with_default_pool(cfg)
    validate(cfg)
    if cfg.runner.base_dir:  # the base run's saved model config (plain strings) is typed here, once
        cfg = to_config(base_run.with_base_run(cfg))  # model (and an imported run's tokenizer) from the base run
    return cfg


def run(cfg: Config) -> Path:
    """Run every unfinished cell of this (seed, growth step), and wait for those other workers hold."""
    cfg = prepare(cfg)
    lease.drain(lambda: run_pass(cfg), lambda: left(cfg), cfg.workers.poll_s)
    return results.results_path(cfg)


def cell_keys(cfg: Config) -> list[CellKey]:
    return [CellKey(cfg.seed, cfg.growth_step, regime, r) for r in range(cfg.replicates) for regime in cfg.regimes]


def left(cfg: Config) -> list[str]:
    """The cells of this (seed, growth step) not finished yet (`cfg` from `prepare`)."""
    return [k.stem for k in results.unfinished(cfg, results.results_path(cfg), cell_keys(cfg), quiet=True)]


def run_pass(cfg: Config) -> int:
    """Compute every unfinished cell this worker can lease (`cfg` from `prepare`); return how many cells
    live workers still hold."""
    path = results.results_path(cfg)
    chash = results.cell_hash(cfg)
    keys = cell_keys(cfg)
    todo = hosts.agreed_subset(keys, results.unfinished(cfg, path, keys))  # a multi-process job follows process 0
    if not todo:
        log.info("seed %d growth step %d: every cell already finished, skipping", cfg.seed, cfg.growth_step)
        return 0
    setup = None
    held = 0
    for key in todo:
        claimed = lease.claim(
            path.parent, f"{key.stem}-{chash}", cfg.workers, functools.partial(_finished, cfg, path, key)
        )
        if claimed is None:
            held += not _finished(cfg, path, key)
            continue
        try:
            if setup is None:
                data = data_lib.load(cfg.data)
                pretrain.check_vocab(cfg, data)
                data_lib.check_batch_size(data, cfg.runner.batch_size)
                small_state = base_state(cfg, data)
                setup = (data, small_state, pool.build_pool(cfg, small_state, data))
            t0 = time.perf_counter()
            rows, seq = run_cell(cfg, key, *setup, fence=claimed.fence)
            wall = time.perf_counter() - t0
            claimed.commit(lambda: results.write_cell(cfg, key, rows, seq, wall))  # noqa: B023 (called at once)
        except lease.LeaseLost:
            continue  # the worker that took it over writes it; `left` sees whether it finished
        except BaseException:
            claimed.release()
            raise
    return held


def _finished(cfg: Config, path: Path, key: CellKey) -> bool:
    """Finished and measured everything asked for (a worker that holds it may just have written it)."""
    return not results.unfinished(cfg, path, [key], quiet=True)
