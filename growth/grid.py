"""A whole experiment grid: every (seed, growth step) cell through the runner, then the report."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from growth import runner
from growth.config import Config

log = logging.getLogger(__name__)


def cells(cfg: Config) -> list[Config]:
    """One config per grid cell (the top-level seed/growth_step/pool when the grid is empty)."""
    if not cfg.grid:
        return [cfg]
    out = []
    for cell in cfg.grid:
        cell = dict(cell)
        unknown = set(cell) - {"seed", "growth_step", "pool"}
        if unknown:
            raise runner.RunnerError(
                f"grid cell {cell} has unknown keys {sorted(unknown)}; use seed, growth_step, pool"
            )
        out.append(
            dataclasses.replace(
                cfg,
                seed=int(cell.get("seed", cfg.seed)),
                growth_step=int(cell.get("growth_step", cfg.growth_step)),
                pool=list(cell.get("pool", cfg.pool)),
            )
        )
    return out


def reproduce(cfg: Config) -> Path:
    """Run every cell (finished ones are skipped), then write the report; return its directory."""
    t0 = time.perf_counter()
    for cell in cells(cfg):
        log.info("cell seed=%d growth_step=%d pool=%s", cell.seed, cell.growth_step, cell.pool)
        runner.run(cell)
    results_dir = runner.results_path(cfg).parent
    log.info("grid finished in %.1f s", time.perf_counter() - t0)
    from analysis.report import write_report

    return write_report(results_dir)
