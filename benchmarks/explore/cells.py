"""The cell and eval subcommands: the runner's own regime cell and evaluation, split into their parts."""

from __future__ import annotations

import collections
import os
import time

import jax
import jax.numpy as jnp

from benchmarks.common import PRESETS, compose, spread
from benchmarks.explore.setup import machine_info_brief


def _grown_pool(args):
    """(cfg, data, small state, grown pool) of the runner for the preset and --override (pretraining
    resumed, or run first, in the config's out_dir), with wandb and progress bars off."""
    from growth.data import pipeline as data_lib
    from growth.experiment import pool, runner

    quiet = ["logger.wandb.mode=disabled", "logger.progress=false"]
    cfg = compose(PRESETS[args.preset].overrides + quiet + args.override)  # typed once, by compose
    data = data_lib.load(cfg.data)
    small = runner.base_state(cfg, data)
    return cfg, data, small, pool.build_pool(cfg, small)


def cell_split(args) -> dict:
    """One regime cell of the runner (seed and growth step from --override), timed whole, and its evaluations alone.

    The cell is `growth.experiment.runner.run_cell` as a grid runs it (pretraining resumed or run in the config's
    out_dir first); the evaluation share is the runner's `evaluate` at every lag of the cell on the
    grown pool, timed on its own; training is the rest. The first repetition includes compilation.
    """
    from growth.config import Regime
    from growth.experiment import evaluation, pool, runner
    from growth.experiment.results import CellKey

    cfg, data, small, grown = _grown_pool(args)
    groups = pool.group_pool(grown)
    params0 = [jax.tree.map(jnp.copy, g.state.params) for g in groups]
    out: dict = {"seed": cfg.seed, "growth_step": cfg.growth_step, "pool": cfg.pool, "cells": []}
    for rep in range(args.reps):
        key = CellKey(cfg.seed, cfg.growth_step, Regime(args.regime), rep)
        t0 = time.perf_counter()
        runner.run_cell(cfg, key, data, small, grown)
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        for lag in runner.eval_lags(cfg):
            evaluation.evaluate(cfg, lag, data.eval_BxT1, groups, params0, small.params)
        evaluate = time.perf_counter() - t0
        out["cells"].append({"regime": args.regime, "replicate": rep, "total_s": total, "evaluate_s": evaluate})
        out["cells"][-1]["train_s"] = total - evaluate
    return out | {"machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()}}


def eval_split(args) -> dict:
    """The runner's evaluation of one grown pool on the held-out set: the small model, then each stacked
    group without and with the lag-0 / probe comparisons (runner.eval_chunk and runner.pool_step from
    the config, so --override runner.eval_chunk=32 or runner.pool_step=vmap times the alternatives)."""
    from growth.experiment import pool

    cfg, data, small, grown = _grown_pool(args)
    groups = pool.group_pool(grown)
    eval_set, chunk, how = data.eval_BxT1, cfg.runner.eval_chunk, cfg.runner.pool_step
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.reps + 1):  # the first round compiles and is dropped
        t0 = time.perf_counter()
        pool.measure_small(cfg.model, small.params, eval_set, chunk)
        times["small"].append(time.perf_counter() - t0)
        for g in groups:
            for full in (False, True):
                t0 = time.perf_counter()
                pool.measure(g, g.state.params, small.params, cfg.model, eval_set, chunk, full, how)
                times[f"{len(g.names)} wide{' + comparisons' if full else ''}"].append(time.perf_counter() - t0)
    return {
        "eval_sequences": len(eval_set),
        "eval_chunk": chunk,
        "pool_step": str(how),
        "seconds": {k: spread(v[1:]) for k, v in times.items()},
        "machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()},
    }
