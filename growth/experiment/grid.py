"""A whole experiment grid: every cell of `grid` through the runner (the report is the entry point's)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from growth.config import Config
from growth.distributed import hosts
from growth.experiment import pool, results, runner, scratch
from growth.experiment import progress as progress_lib
from growth.experiment.plan import display
from growth.store import files, lease

log = logging.getLogger(__name__)


def cells(cfg: Config) -> list[Config]:
    """One config per grid cell; a cell's unset fields take the top-level value (no grid: the top level)."""
    cfg = pool.with_default_pool(cfg)
    if not cfg.grid:
        return [cfg]
    out = []
    for cell in cfg.grid:
        growth = (
            cfg.growth
            if cell.lr_correction is None
            else dataclasses.replace(cfg.growth, lr_correction=cell.lr_correction)
        )
        growth = growth if cell.k is None else dataclasses.replace(growth, k=cell.k)
        optim = cfg.optim if cell.clip_mode is None else dataclasses.replace(cfg.optim, clip_mode=cell.clip_mode)
        out.append(
            dataclasses.replace(
                cfg,
                seed=cfg.seed if cell.seed is None else cell.seed,
                growth_step=cfg.growth_step if cell.growth_step is None else cell.growth_step,
                pool=list(cfg.filled_pool() if cell.pool is None else cell.pool),
                replicates=cfg.replicates if cell.replicates is None else cell.replicates,
                growth=growth,
                optim=optim,
            )
        )
    return out


PLAN = "grid_plan.json"  # beside results.jsonl: the cells a grid means to run, so a report can say what is missing


def plan(cfg: Config) -> list[dict]:
    """One record per (grid cell, regime): what the analysis expects to find once the grid has finished."""
    return [
        {
            "seed": c.seed,
            "k": c.growth.k,
            "lr_policy": f"{c.growth.lr_correction}/{c.optim.clip_mode}",
            "growth_step": c.growth_step,
            "regime": str(regime),
            "replicates": c.replicates,
            "scratch_steps": c.budget.scratch_steps,  # 0: no shared scratch run is expected (scratch_wide in the pool)
        }
        for c in cells(cfg)
        for regime in c.regimes
    ]


def reproduce(cfg: Config) -> Path:
    """Run every cell (finished ones are skipped; with other workers on the same out_dir, each cell is
    computed by one of them and every worker returns once all are finished); return the results directory."""
    t0 = time.perf_counter()
    prepared = [runner.prepare(cell) for cell in cells(cfg)]  # every cell validated before any compute
    out = results.results_path(cfg).parent
    if hosts.is_writer():  # a multi-process job: process 0 writes the plan
        out.mkdir(parents=True, exist_ok=True)
        files.atomic_write_text(out / PLAN, json.dumps(plan(cfg), indent=1) + "\n")

    def one_pass() -> int:
        held = 0
        for cell in prepared:
            log.info(
                "cell seed=%d growth_step=%d pool=%s replicates=%d lr_correction=%s clip_mode=%s",
                cell.seed, cell.growth_step, cell.pool, cell.replicates, cell.growth.lr_correction,
                cell.optim.clip_mode,
            )  # fmt: skip
            held += runner.run_pass(cell)
            held += scratch.run_pass(
                cell
            )  # the shared scratch_wide budget (once per seed, k, regime, replicate, policy)
        return held

    def left() -> list[str]:
        return [name for cell in prepared for name in runner.left(cell) + scratch.left(cell)]

    with progress_lib.showing(display(cfg, prepared)):  # live progress and ETA (growth/experiment/progress.py)
        lease.drain(one_pass, left, cfg.workers.poll_s)
    log.info("grid finished in %.1f s", time.perf_counter() - t0)
    return out
