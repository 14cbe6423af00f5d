"""Part 5: wall time of a whole experiment grid (growth.grid.reproduce) and the share spent compiling."""

from __future__ import annotations

import os
import tempfile
import time

from benchmarks.common import REPO, CompileClock, Preset, compose
from growth import pool, results
from growth.files import read_jsonl


def experiment_overrides(name: str, p: Preset, out_dir: str, extra: list[str]) -> list[str]:
    """`experiment=name` with the preset's model overrides, a fresh out_dir and no wandb or progress bars."""
    model = [o for o in p.overrides if not o.startswith("experiment=")]
    # The repository's token cache, as a user's second run finds it; tiny runs keep theirs in out_dir.
    cache_dir = os.path.join(out_dir, "cache") if p.e2e_overrides else str(REPO / ".cache")
    cache = [f"data.cache_dir={cache_dir}"]
    return [
        f"experiment={name}",
        *model,
        *p.e2e_overrides,
        *cache,
        f"out_dir={out_dir}",
        "logger.wandb.mode=disabled",
        "logger.progress=false",
        *extra,
    ]


def end_to_end(name: str, p: Preset, extra: list[str], clock: CompileClock, keep_dir: str | None = None) -> dict:
    """One run of `python -m experiments.reproduce experiment=<name>` in this process, from scratch.

    The runner's in-process cache of compiled functions is emptied first, so nothing compiled by an
    earlier part or run is reused; the persistent compilation cache is whatever the caller set.
    """
    from growth import grid

    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-", dir=keep_dir) as out_dir:
        overrides = experiment_overrides(name, p, out_dir, extra)
        cfg = compose(overrides)
        pool.PROGRAMS.clear()
        with clock.measure():
            t0 = time.perf_counter()
            grid.reproduce(cfg)
            wall = time.perf_counter() - t0
        compile_s = clock.seconds()
        cells = [
            {k: r[k] for k in ("seed", "growth_step", "regime", "replicate")} | {"wall_s": r["value"]}
            for r in read_jsonl(results.results_path(cfg))
            if r["metric"] == "wall_time"
        ]
        grow_s = sum(c["wall_s"] for c in cells)
        return {
            "overrides": [o for o in overrides if not o.startswith(("out_dir=", "data.cache_dir="))],
            "cells": len(cfg.grid) or 1,
            "pretrain_steps": cfg.pretrain.steps,
            "continuation_lag": cfg.continuation_lag,
            "wall_s": wall,
            "compile_s": compile_s,
            "compile_share": compile_s / wall,
            "grow_s": grow_s,  # the regime cells (growth, continuation, evaluation)
            "pretrain_and_rest_s": wall - grow_s,  # pretraining, data, the report
            "regime_cells": cells,
            "persistent_cache_hits": clock.cache_hits,
        }
