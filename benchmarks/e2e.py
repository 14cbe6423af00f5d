"""Part 5: wall time of a whole experiment grid (growth.experiment.grid.reproduce) and the share spent compiling."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, CompileClock, Preset, compose
from growth.experiment import pool, results
from growth.store.files import read_jsonl


def experiment_overrides(name: str, p: Preset, out_dir: str, extra: list[str]) -> list[str]:
    """`experiment=name` (under the preset's e2e_under) with its model overrides, a fresh out_dir, no wandb or bars."""
    model = [o for o in p.overrides if not o.startswith("experiment=")]
    # A preset on top keeps the timed experiment's name, so the experiments of a group stay apart.
    chosen = [f"experiment=[{name},{p.e2e_under}]", f"name={name}"] if p.e2e_under else [f"experiment={name}"]
    # The repository's token cache, as a user's second run finds it; tiny runs keep theirs in out_dir.
    cache_dir = os.path.join(out_dir, "cache") if p.e2e_overrides else str(REPO / ".cache")
    cache = [f"data.cache_dir={cache_dir}"]
    return [
        *chosen,
        *model,
        *p.e2e_overrides,
        *cache,
        f"out_dir={out_dir}",
        "logger.wandb.mode=disabled",
        "logger.progress=false",
        *extra,
    ]


# Names the e2e part accepts besides one experiment: experiments run one after another into one
# out_dir, so those sharing a trajectory share its pretraining (growth.experiment.pretrain.run_dir).
GROUPS = {"paper_cpu_presets": ["paper_cpu", "paper_cpu_fanin"]}


def end_to_end(name: str, p: Preset, extra: list[str], clock: CompileClock, keep_in: str | None = None) -> dict:
    """One run of `python -m experiments.reproduce experiment=<name>` in this process, from scratch.

    `name` may also be a key of GROUPS or names joined by '+': those experiments run one after another
    into one fresh out_dir (pretraining shared), and the figures are of the whole, with each
    experiment's own wall time under `experiments`.

    The runner's in-process cache of compiled functions is emptied first, so nothing compiled by an
    earlier part or run is reused; the persistent compilation cache is whatever the caller set.
    `keep_in`: run in `keep_in/<name>` (which must not exist yet, so the run starts from scratch) and
    keep it, results and checkpoints, instead of a temporary directory.
    """
    from growth.experiment import grid

    names = GROUPS.get(name) or name.split("+")
    if len(set(names)) != len(names):
        raise SystemExit(f"--e2e {name}: an experiment named twice would find its own cells done")
    place: contextlib.AbstractContextManager[str]
    if keep_in:
        kept = Path(keep_in).absolute() / name
        if kept.exists():
            raise SystemExit(f"--e2e-out: {kept} exists; a timed run starts from scratch, so name a new directory")
        kept.mkdir(parents=True)
        place = contextlib.nullcontext(str(kept))
    else:
        place = tempfile.TemporaryDirectory(prefix=f"bench-{name}-")
    with place as out_dir:
        pool.PROGRAMS.clear()
        per_exp, cells, all_overrides, n_cells = {}, [], [], 0
        with clock.measure():
            t0 = time.perf_counter()
            for exp in names:
                overrides = experiment_overrides(exp, p, out_dir, extra)
                cfg = compose(overrides)
                t1 = time.perf_counter()
                grid.reproduce(cfg)
                per_exp[exp] = time.perf_counter() - t1
                all_overrides.append([o for o in overrides if not o.startswith(("out_dir=", "data.cache_dir="))])
                n_cells += len(cfg.grid) or 1
                cells += [
                    {"experiment": exp}
                    | {k: r[k] for k in ("seed", "growth_step", "regime", "replicate") if k in r}
                    | {"wall_s": r["value"]}
                    for r in read_jsonl(results.results_path(cfg))
                    if r["metric"] == "wall_time"
                ]
            wall = time.perf_counter() - t0
        compile_s = clock.seconds()
        grow_s = sum(c["wall_s"] for c in cells)
        return {
            "overrides": all_overrides[0] if len(names) == 1 else all_overrides,
            "experiments": per_exp,
            "cells": n_cells,
            "pretrain_steps": cfg.pretrain.steps,
            "continuation_lag": cfg.continuation_lag,
            "replicates": cfg.replicates,
            "wall_s": wall,
            "compile_s": compile_s,
            "compile_share": compile_s / wall,
            "grow_s": grow_s,  # the regime cells (growth, continuation, evaluation)
            "pretrain_and_rest_s": wall - grow_s,  # pretraining, data, the report
            "regime_cells": cells,
            "persistent_cache_hits": clock.cache_hits,
        }
