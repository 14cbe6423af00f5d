"""One process of a two-process jax.distributed job on localhost, started by tests/test_hosts.py.

Each process holds 2 fake CPU devices (XLA_FLAGS), so the FSDP mesh spans 4 devices over two processes.
It pretrains, saves (gathered to process 0), restores on both processes, grows and runs one regime
cell, and prints what it computed and every file it tried to write under the run's out_dir.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

from growth.config import Config, MeshConfig
from tests.conftest import tiny_config

STEPS = 6


def config(tmp: Path, out: str, mesh: MeshConfig) -> Config:
    """The run both the two-process job and its single-process reference make."""
    base = tiny_config(tmp)
    return dataclasses.replace(
        base,
        out_dir=str(tmp / out),
        pretrain=dataclasses.replace(
            base.pretrain, steps=STEPS, checkpoint_steps=[STEPS], save_every=STEPS, eval_every=3, log_every=3
        ),
        pool=["exact_copy", "perturbative"],
        regimes=["deterministic"],
        growth_step=STEPS,
        probe_lag=2,
        continuation_lag=4,
        runner=dataclasses.replace(base.runner, batch_size=8, eval_every=2),
        mesh=mesh,
    )


def _watch_writes(root: Path) -> list[str]:
    """Every attempt of this process to create, write, move or remove a path under `root`."""
    seen: list[str] = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    path_events = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"}

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & write_flags
            )
        elif event in path_events:
            path, writes = args[0], True
        else:
            return
        if writes and isinstance(path, (str, bytes, os.PathLike)) and str(os.fsdecode(path)).startswith(str(root)):
            seen.append(f"{event} {os.fsdecode(path)}")

    sys.addaudithook(hook)
    return seen


def _digest(tree) -> str:
    import jax
    import numpy as np

    return hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(tree))).hexdigest()


def light(tmp: Path) -> dict:
    """The init path, writer selection, a decision agreed, and a split state saved and restored."""
    writes = _watch_writes(tmp / "two")
    from growth.distributed import hosts

    hosts.initialize()  # from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID
    import jax
    import numpy as np

    from growth.distributed import mesh
    from growth.store import checkpoint
    from growth.training.tracking import Tracker
    from tests.conftest import tiny_config

    m = mesh.make(MeshConfig(devices=0, fsdp=True))
    assert m is not None
    try:
        mesh.make(MeshConfig(devices=2))
        part_mesh = "accepted"
    except mesh.MeshError as e:
        part_mesh = str(e)
    tree = {"w": np.arange(32, dtype=np.float32).reshape(8, 4), "b": np.ones(3, np.float32)}
    split = mesh.put_state(m, tree, fsdp=True)
    ckpt = tmp / "two" / "ckpt"
    checkpoint.save(checkpoint.manager(ckpt), 1, split, {"note": "two processes"})
    restored = checkpoint.restore(ckpt, 1, tree)  # every process reads the file process 0 wrote
    tracker = Tracker(tmp / "two" / "log", tiny_config(tmp).logger.wandb, {}, name="t", group="g", run_id="r")
    tracker.log({"step": 1, "loss": 1.0}, step=1)
    tracker.finish()
    return {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": [len(jax.devices()), len(jax.local_devices())],
        "writer": hosts.is_writer(),
        "agreed": hosts.agree([jax.process_index() + 10, 7]),
        "split_across_processes": not split["w"].is_fully_addressable,
        "part_mesh": part_mesh,
        "restored": _digest(restored),
        "expected": _digest(tree),
        "writes": sorted(set(writes)),
    }


def full(tmp: Path) -> dict:
    """Pretraining, a checkpoint gathered to process 0, restores on both, growth and one regime cell."""
    writes = _watch_writes(tmp / "two")
    from growth.distributed import hosts

    hosts.initialize()
    import jax

    from growth.experiment import pretrain, runner
    from growth.store import checkpoint
    from growth.training import train

    saved: dict[int, str] = {}
    save = checkpoint.save

    def recording_save(mgr, step, state, cfg):  # what each process holds when it saves
        saved[step] = _digest(hosts.fetch(state.params))
        save(mgr, step, state, cfg)

    checkpoint.save = recording_save
    cells: list[list] = []
    run_cell = runner.run_cell

    def recording_run_cell(*args, **kwargs):  # the rows each process computed (only process 0 writes them)
        rows, seq = run_cell(*args, **kwargs)
        cells.append([[r.candidate, r.lag, r.metric, float(r.value)] for r in rows])
        return rows, seq

    runner.run_cell = recording_run_cell
    cfg = config(tmp, "two", MeshConfig(devices=0, fsdp=True))
    run_dir = pretrain.run(cfg)
    runner.run(cfg)
    restored = train.load_state(run_dir, STEPS, cfg)[2]  # every process restores from the shared files
    return {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": [len(jax.devices()), len(jax.local_devices())],
        "writer": hosts.is_writer(),
        "saved": saved,
        "restored": _digest(restored.params),
        "cells": cells,
        "writes": sorted(set(writes)),
        "run_dir": str(run_dir),
    }


if __name__ == "__main__":
    mode = {"light": light, "full": full}[sys.argv[2]]
    print("RESULT " + json.dumps(mode(Path(sys.argv[1]))), flush=True)
