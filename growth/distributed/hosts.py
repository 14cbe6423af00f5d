"""Several processes of one job (jax.distributed): who writes, agreeing on decisions, host copies.

A multi-process job (one process per node or per GPU host) runs the same program in every process
(SPMD): the mesh spans every process's devices and each compiled step is one collective program.
So every process must take the same decisions, in the same order. Files are written by process 0
alone (`is_writer`); a decision read from the shared file system (which checkpoint to resume, which
cell to compute) is taken by process 0 and broadcast (`agree`), so a file that changed between two
processes' reads cannot split them. With one process every helper is the plain path. Our
construction; docs/scaling.md gives the launch commands.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

# Our launch variables (docs/scaling.md); under SLURM jax reads the job's own variables instead.
ADDRESS, COUNT, INDEX = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


class HostsError(ValueError):
    """A multi-process launch setting that cannot work; the message names it and the fix."""


def process_count_from_env() -> int:
    """How many processes the launch asks for (JAX_NUM_PROCESSES, else SLURM_NTASKS; 1 if neither)."""
    for name in (COUNT, "SLURM_NTASKS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


_initialized = False


def initialize(distributed: bool = True) -> None:
    """jax.distributed.initialize() once, when the launch has several processes (a no-op otherwise).

    Must run before any other JAX call of the process (the entry points call it first)."""
    global _initialized
    if _initialized or not distributed or process_count_from_env() <= 1:
        return
    if os.environ.get(COUNT):
        missing = [v for v in (ADDRESS, INDEX) if not os.environ.get(v, "").strip()]
        if missing or not os.environ[INDEX].isdigit():
            raise HostsError(
                f"{COUNT}={os.environ[COUNT]} but {', '.join(missing) or INDEX + '=' + os.environ[INDEX]} is"
                f" not set right; set {ADDRESS}=host:port (process 0's host) and {INDEX}=0..{int(os.environ[COUNT]) - 1}"
                " in each process"
            )
        jax.distributed.initialize(os.environ[ADDRESS], int(os.environ[COUNT]), int(os.environ[INDEX]))
    else:
        jax.distributed.initialize()  # SLURM: the coordinator, process count and id come from the job
    _initialized = True
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


def several() -> bool:
    """Whether this job runs several JAX processes."""
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes results, logs and checkpoints (process 0 only)."""
    return jax.process_index() == 0


def agree(values: list[int]) -> list[int]:
    """Process 0's `values` (a list of the same length in every process), on every process."""
    if not several():
        return list(values)
    out = multihost_utils.broadcast_one_to_all(np.asarray(values, np.int32).reshape(-1))
    return [int(v) for v in np.asarray(out)]


def agree_one(value: int) -> int:
    """Process 0's integer, on every process."""
    return agree([value])[0]


def agreed_subset(items: list, chosen: list) -> list:
    """The `items` that process 0 has in `chosen`, in order, on every process."""
    return [x for x, keep in zip(items, agree([x in chosen for x in items]), strict=True) if keep]


def sync(name: str) -> None:
    """A barrier of every process (a no-op with one)."""
    if several():
        multihost_utils.sync_global_devices(name)


def fetch(tree: Any) -> Any:
    """A host (numpy) copy of every array leaf, on every process; a leaf split over several processes
    is gathered (a collective: every process must call it)."""

    def gather(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.device_get(jax.tree.map(gather, tree))
