"""Data parallelism over a device mesh (jax.sharding): one `data` axis, the batch split along it.

Parameters and optimizer state are replicated on every device, or with `mesh.fsdp` split along
the same axis (FSDP-style: each leaf's first axis that the device count divides; the rest stay
replicated). The compiled steps need no change: `jax.jit` follows the shardings of its inputs and
inserts the gradient all-reduce (or the all-gathers under FSDP) itself. With one device (the
default `mesh.devices: 1`) every hook returns its input: the code path is the single-device one.

Multi-host (growth.distributed.hosts): `initialize()` calls `jax.distributed.initialize()` when the job runs
several processes (SLURM tasks, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID);
then the mesh spans every process's devices, a process's own copy of a state reaches it through the
host, and only process 0 writes files (`is_writer`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from growth.config import MeshConfig
from growth.distributed import hosts

AXIS = "data"


class MeshError(ValueError):
    """A mesh setting that cannot work; the message names it and the fix."""


def initialize(cfg: MeshConfig) -> None:
    """jax.distributed.initialize() once, when the job has several processes (growth.distributed.hosts)."""
    hosts.initialize(cfg.distributed)


is_writer = hosts.is_writer  # process 0 writes results and checkpoint metadata


def make(cfg: MeshConfig) -> Mesh | None:
    """The mesh over `mesh.devices` devices (0: all of them), or None for one device."""
    initialize(cfg)
    devices = jax.devices()
    n = len(devices) if cfg.devices == 0 else cfg.devices
    if n > len(devices) or n < 0:
        raise MeshError(
            f"mesh.devices={cfg.devices} but this job sees {len(devices)} devices; set mesh.devices<={len(devices)} (0: all)"
        )
    if hosts.several() and n != len(devices):
        raise MeshError(
            f"mesh.devices={cfg.devices} but this job's {jax.process_count()} processes hold {len(devices)}"
            " devices, and a multi-process mesh spans them all; set mesh.devices=0"
        )
    if n == 1:
        return None
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def check_batch(mesh: Mesh | None, batch_size: int, what: str) -> None:
    """The batch must split evenly over the data axis."""
    if mesh is not None and batch_size % mesh.size:
        raise MeshError(
            f"{what}={batch_size} does not divide over the {mesh.size} devices of mesh.devices;"
            f" use a multiple of {mesh.size} (e.g. {what}={mesh.size * max(1, batch_size // mesh.size)})"
        )


def put_batch(mesh: Mesh | None, batch: np.ndarray) -> jax.Array:
    """The batch as a device array, its first axis split over the data axis."""
    if mesh is None:
        return jax.numpy.asarray(batch)
    check_batch(mesh, batch.shape[0], "the batch size")
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(AXIS)))


def put_eval_chunk(mesh: Mesh | None, chunk: np.ndarray) -> jax.Array:
    """An evaluation chunk: split over the data axis when it divides, else replicated."""
    if mesh is None:
        return jax.numpy.asarray(chunk)
    spec = PartitionSpec(AXIS) if chunk.shape[0] % mesh.size == 0 else PartitionSpec()
    return jax.device_put(chunk, NamedSharding(mesh, spec))


def leaf_spec(shape: tuple[int, ...], n: int, fsdp: bool) -> PartitionSpec:
    """Replicated, or (fsdp) split along the first axis that `n` divides."""
    if fsdp:
        for i, size in enumerate(shape):
            if size % n == 0 and size >= n:
                return PartitionSpec(*([None] * i), AXIS)
    return PartitionSpec()


def put_state(mesh: Mesh | None, tree: Any, fsdp: bool = False) -> Any:
    """Every array leaf of `tree` (params, optimizer state, a TrainState) replicated or FSDP-split."""
    if mesh is None:
        return tree

    def put(x):
        if not hasattr(x, "shape"):
            return x
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
        if hosts.several() and getattr(x, "is_fully_addressable", False):
            x = np.asarray(x)  # a process's own copy onto the global mesh goes through the host
        return jax.device_put(x, NamedSharding(mesh, leaf_spec(tuple(x.shape), mesh.size, fsdp)))

    return jax.tree.map(put, tree)
