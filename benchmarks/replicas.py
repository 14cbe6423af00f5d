"""The replicates of a cell, two ways: stacked in one pool step, or split over processes pinned one per core.

With `replicates: R`, the C wide candidates of a cell continue R times from the same pretrained state:
R x C independent continuations. They can be stacked into one `growth.training.train.jit_pool_step` (the runner's
way for one replicate's candidates), or the replicates split over P processes, each pinned to one core
with XLA single-threaded, each running its share stacked. Repetitions alternate: the stacked step in
this process, then all children at once (started together by a file barrier); the children compile and
warm up before the first repetition, so neither way's figure includes compilation.

    python -m benchmarks.replicas [--tiny] [--replicates R] [--reps N] [--steps S]   (or benchmarks.run --parts replicas)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import PRESETS, REPO, TINY, Preset, compose, spread, warm_step_runner

SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _stacked_runner(cfg, p: Preset, n_candidates: int, steps: int):
    """(run, states) for `n_candidates` wide candidates stacked in the runner's pool step."""
    import jax
    import jax.numpy as jnp

    from benchmarks.jax_parts import fresh, random_batch, wide_model
    from growth.models import gpt as model_lib
    from growth.training import optimizer, train

    wide = wide_model(cfg)
    tx = optimizer.make_optimizer(cfg.optim)
    states = [fresh(cfg, wide, seed=10 * i)[2] for i in range(n_candidates)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    step = train.jit_pool_step(model_lib.abstract(wide)[0], tx, cfg.optim, cfg.runner.pool_step)
    return warm_step_runner(step, stacked, random_batch(wide, cfg.runner.batch_size), steps)


def child(args) -> None:
    """One pinned process: wait for go.<i>, run its share, write done.<i>.<rank>; repeat."""
    os.sched_setaffinity(0, {args.core})
    cfg = compose(PRESETS["cpu"].overrides if not args.tiny else TINY.overrides)
    run = _stacked_runner(cfg, TINY if args.tiny else PRESETS["cpu"], args.candidates, args.steps)
    d = Path(args.barrier)
    (d / f"ready.{args.rank}").touch()
    for i in range(args.reps):
        while not (d / f"go.{i}").exists():
            time.sleep(0.002)
        t0 = time.perf_counter()
        run()
        (d / f"done.{i}.{args.rank}").write_text(str(time.perf_counter() - t0))


def compare(cfg, p: Preset, replicates: int, steps: int, reps: int, tiny: bool) -> dict:
    """Seconds per repetition of R x C continuations `steps` steps: stacked here, and over one process per core."""
    cores = sorted(os.sched_getaffinity(0))
    n_cand = p.pool_k
    total = replicates * n_cand
    procs = min(len(cores), replicates)
    share = [replicates // procs + (r < replicates % procs) for r in range(procs)]  # replicates per process
    stacked = _stacked_runner(cfg, p, total, steps)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as d:
        env = os.environ | {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA).strip()}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.replicas", "--child", "--rank", str(r), "--core", str(cores[r])]
                + ["--candidates", str(share[r] * n_cand), "--steps", str(steps), "--reps", str(reps)]
                + ["--barrier", d]
                + (["--tiny"] if tiny else []),
                env=env,
                cwd=REPO,
            )
            for r in range(procs)
        ]
        try:
            while not all((Path(d) / f"ready.{r}").exists() for r in range(procs)):
                if any(c.poll() not in (None, 0) for c in children):
                    raise RuntimeError("a replicas child process failed")
                time.sleep(0.05)
            t_stacked, t_procs = [], []
            for i in range(reps):
                t0 = time.perf_counter()
                stacked()
                t_stacked.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                (Path(d) / f"go.{i}").touch()
                while not all((Path(d) / f"done.{i}.{r}").exists() for r in range(procs)):
                    time.sleep(0.002)
                t_procs.append(time.perf_counter() - t0)
        finally:
            for c in children:
                c.wait(timeout=120)
    return {
        "replicates": replicates,
        "candidates_per_replicate": n_cand,
        "steps": steps,
        "processes": procs,
        "replicates_per_process": share,
        "child_xla_flags": SINGLE_THREAD_XLA,
        "stacked_s": spread(t_stacked),
        "processes_s": spread(t_procs),
        "processes_speedup": spread([a / b for a, b in zip(t_stacked, t_procs, strict=True)]),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--candidates", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--barrier", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.chdir(REPO)
    if args.child:
        child(args)
        return
    p = TINY if args.tiny else PRESETS["cpu"]
    cfg = compose(p.overrides)
    out = compare(cfg, dataclasses.replace(p), args.replicates, args.steps, args.reps, args.tiny)
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
