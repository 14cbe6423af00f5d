"""What a grid will run, before it runs: its jobs, which are finished, and an estimated time.

`jobs(prepared)` lists every pretraining run, grow cell and shared scratch run of the grid's (prepared)
cells, each with its steps and FLOPs per step (growth/measure/throughput.py), marked finished from what is on
disk (the same checks the runner makes). `measure(cfg)` times a few training steps of the grid's wide
model on random tokens, so `text(...)` can turn FLOPs into seconds: `reproduce plan=true` prints it
without training anything.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from growth import widen
from growth.config import Config, Regime
from growth.distributed import hosts
from growth.experiment import pretrain, results, scratch
from growth.experiment.progress import Display, Job, duration, grow_name, pretrain_name, scratch_name
from growth.experiment.results import CellKey
from growth.measure import throughput
from growth.models import gpt as model_lib
from growth.store import checkpoint
from growth.training import optimizer, train

MEASURED_STEPS = 3  # timed steps of the short measurement (after one that compiles)


def pretrain_job(cfg: Config) -> Job:
    """The pretraining a cell needs (to max(pretrain.steps, growth_step)); done up to its last checkpoint."""
    steps = max(cfg.pretrain.steps, cfg.growth_step)
    saved = checkpoint.steps(pretrain.run_dir(cfg) / "checkpoints") if pretrain.run_dir(cfg).exists() else []
    done = steps if cfg.growth_step in saved and steps in saved else max([0, *saved])
    tokens = cfg.pretrain.batch_size * cfg.data.context
    return Job(
        "pretrain",
        pretrain_name(cfg.seed, pretrain.run_dir(cfg)),
        steps,
        throughput.flops_per_step(tokens, [cfg.model]),
        tokens,
        done,
    )


def jobs(prepared: list[Config]) -> list[Job]:
    """Every job of the grid's prepared cells, in the order the grid runs them (shared ones once)."""
    out: dict[tuple[str, str], Job] = {}
    needed: dict[tuple[str, str], bool] = {}  # pretraining runs only when one of its grow cells is to run
    for cfg in prepared:
        keys = [CellKey(cfg.seed, cfg.growth_step, r, i) for i in range(cfg.replicates) for r in cfg.regimes]
        todo = set(results.unfinished(cfg, results.results_path(cfg), keys, quiet=True))
        if not cfg.runner.base_dir:
            j = out.setdefault(pretrain_job(cfg).key, pretrain_job(cfg))
            needed[j.key] = needed.get(j.key, False) or bool(todo)
        tokens = cfg.runner.batch_size * cfg.model.context
        for key in keys:
            j = Job("grow", grow_name(cfg, key), cfg.continuation_lag, throughput.grow_flops_per_step(cfg), tokens)
            j.done = 0 if key in todo else j.steps
            out.setdefault(j.key, j)
        if cfg.budget.scratch_steps > 0:
            done = scratch.finished(cfg)
            for r in range(cfg.replicates):
                for regime in cfg.regimes:
                    key = CellKey(cfg.seed, 0, Regime(regime), r)
                    j = Job(
                        "scratch",
                        scratch_name(cfg, key),
                        cfg.budget.scratch_steps,
                        throughput.scratch_flops_per_step(cfg),
                        tokens,
                    )
                    j.done = j.steps if (key.seed, str(key.regime), r) in done else 0
                    out.setdefault(j.key, j)
    for job_key, need in needed.items():
        if not need:
            out[job_key].done = out[job_key].steps
    return list(out.values())


def display(cfg: Config, prepared: list[Config]) -> Display:
    """The live display of a grid about to run (only process 0 of a multi-process job shows one)."""
    return Display(jobs(prepared), cfg.logger.progress and hosts.is_writer(), cfg.logger.progress_every_s)


def show(cfg: Config, prepared: list[Config]) -> str:
    """`reproduce plan=true`: the plan of the grid, with a short measured step; trains nothing."""
    step_s, rate = measure(prepared[0])
    return text(cfg, jobs(prepared), rate, step_s)


def measure(cfg: Config) -> tuple[float, float]:
    """(seconds per step, FLOP/s) of the grid's wide model training on random tokens at the runner's batch."""
    wide = dataclasses.replace(widen.wide_config(cfg.model, cfg.growth), dropout=0.0)
    graphdef, params = model_lib.build(wide, jax.random.PRNGKey(0))
    tx = optimizer.make_optimizer(cfg.optim)
    state = train.init_state(params, tx, jax.random.PRNGKey(1))
    step = train.jit_train_step(graphdef, tx, cfg.optim)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, wide.vocab_size, (cfg.runner.batch_size, cfg.model.context + 1)).astype(np.int32)
    state, m = step(state, batch)  # compiles
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(MEASURED_STEPS):
        state, m = step(state, batch)
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - t0) / MEASURED_STEPS
    return seconds, throughput.scratch_flops_per_step(cfg) / seconds


def text(cfg: Config, grid_jobs: list[Job], flops_per_s: float, step_s: float) -> str:
    """The plan: one line per job (finished or to run, its estimated time) and the totals."""
    wide = widen.wide_config(cfg.model, cfg.growth)
    lines = [
        f"plan of {cfg.name}: {len(grid_jobs)} jobs, {sum(j.finished for j in grid_jobs)} finished",
        f"measured: {step_s * 1e3:.1f} ms per step of the wide model (d_model {wide.d_model}, batch"
        f" {cfg.runner.batch_size} x {cfg.model.context}) on {jax.devices()[0].device_kind}:"
        f" {flops_per_s / 1e9:.2f} GFLOP/s; times below = FLOPs / that rate (evaluation not counted)",
        f"{'kind':<9}{'job':<52}{'steps':>8}  {'status':<10}{'est.':>8}",
    ]
    left = 0.0
    for j in grid_jobs:
        seconds = (j.steps - j.done) * j.flops_per_step / flops_per_s
        left += 0.0 if j.finished else seconds
        status = "finished" if j.finished else ("partial" if j.done else "to run")
        lines.append(f"{j.kind:<9}{j.name:<52}{j.steps:>8}  {status:<10}{duration(0 if j.finished else seconds):>8}")
    lines.append(f"estimated time left: {duration(left)} ({sum(not j.finished for j in grid_jobs)} jobs to run)")
    return "\n".join(lines)
