"""Orbax checkpoints of the full train state plus the run's config.

The state is saved as a plain nested dict (`flax.serialization.to_state_dict`) so optax's named
tuples and integer block keys survive, and restored into an abstract target of the same structure.
Orbax writes each step to a temporary directory and renames it when complete, so a crash mid-save
leaves the previous checkpoints intact. Each step also holds a checksum manifest of its arrays
(growth.store.manifest), saved as one more item of the same commit and checked on every restore: a
checkpoint whose bytes changed is refused in one line, never restored.

In a multi-process job (growth.distributed.hosts) every process gathers the state to the host (a shard held by
another process comes over the network), process 0 alone writes it with orbax, and the others wait
at a barrier; each process then restores from the shared files by itself. So each process runs its
own single-process orbax (`active_processes` = itself), and a checkpoint is the same file whatever
the mesh or the process count.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization

from growth.distributed import hosts
from growth.store import files, manifest, quiet

logging.getLogger("absl").setLevel(logging.ERROR)  # orbax logs bookkeeping at INFO and WARNING
# A failed save (e.g. a full disk) leaves orbax's background event loops logging hundreds of
# "Event loop is closed" tracebacks; the failure itself is raised as one StorageError line.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)


# Version of the saved state's layout; bump it when the train state's structure changes. 2: the named
# optimizer chain (growth.training.optimizer) with per-tensor clip weights; 1 (unmarked): the positional chain.
LAYOUT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the path and the fix."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint whose files do not decode or do not match their checksum manifest."""


def manager(directory: str | Path, read_only: bool = False) -> ocp.CheckpointManager:
    """A synchronous CheckpointManager that keeps every step it saves."""
    directory = Path(directory).absolute()
    multi: dict[str, Any] = {}
    if hosts.several():
        # Each process is its own orbax job: process 0 writes (`save`), every process reads.
        me = jax.process_index()
        multi = {"multiprocessing_options": ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})}
        if not read_only:  # a manager to save with: every process makes it, process 0 writes
            if hosts.is_writer():
                with files.writing(directory):
                    directory.mkdir(parents=True, exist_ok=True)  # orbax cannot create it with active_processes
            hosts.sync(f"manager {directory}")
            read_only = not hosts.is_writer()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,
        create=not read_only and not multi,
        read_only=read_only,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=not read_only,
        **multi,
    )
    with files.writing(directory):
        return ocp.CheckpointManager(directory, options=options)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, config: dict) -> None:
    """Save `state` (any pytree of arrays), its checksum manifest and the JSON-able `config` at `step`.

    In a multi-process job every process calls it (the gather is a collective); process 0 writes."""
    if hosts.agree_one(step in mgr.all_steps()):
        return
    tree = serialization.to_state_dict(hosts.fetch(state))
    if not hosts.is_writer():
        hosts.sync(f"saved {mgr.directory}/{step}")  # wait until process 0 has written it
        return
    config = config | {"layout_version": LAYOUT_VERSION}
    items = {
        "state": ocp.args.StandardSave(tree),
        "config": ocp.args.JsonSave(config),
        "manifest": ocp.args.JsonSave(manifest.build(tree)),
    }
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)  # a failed save logs each thread's traceback; the error is raised below
    quiet.install()
    with files.writing(Path(mgr.directory) / str(step)):
        mgr.save(step, args=ocp.args.Composite(**items))
        mgr.wait_until_finished()
    absl.setLevel(level)
    hosts.sync(f"saved {mgr.directory}/{step}")


def steps(directory: str | Path) -> list[int]:
    """Steps saved under `directory` (empty if there is none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(manager(directory, read_only=True).all_steps())


def read_config(directory: str | Path, step: int) -> dict:
    """The run config saved with `step`."""
    config = _read_saved_config(directory, step)
    config.pop("layout_version", None)
    return config


def _read_saved_config(directory: str | Path, step: int) -> dict:
    directory = Path(directory)
    _require_step(directory, step)
    try:
        out = manager(directory, read_only=True).restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for unreadable files
        raise CorruptCheckpoint(_corrupt_message(directory, step, e)) from e
    return dict(out["config"])


def restore(directory: str | Path, step: int, target: Any) -> Any:
    """Restore the state saved at `step` into the structure (and shapes) of `target`."""
    directory = Path(directory)
    layout = _read_saved_config(directory, step).get("layout_version", 1)
    if layout != LAYOUT_VERSION:
        raise CheckpointError(
            f"checkpoint step {step} under {str(directory)!r} has state layout {layout}, but this version of"
            f" the harness reads layout {LAYOUT_VERSION}. Re-run pretraining into a new out_dir (or delete"
            f" {str(directory.parent)!r}); older run directories cannot be restored."
        )
    if not (directory / str(step) / "manifest").is_dir():
        raise CorruptCheckpoint(
            f"checkpoint step {step} under {str(directory)!r} has no checksum manifest (written by an older"
            f" harness, or by a crash mid-save), so it cannot be verified. Delete {str(directory / str(step))!r}"
            " to have it rebuilt."
        )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, serialization.to_state_dict(target))
    try:
        out = manager(directory, read_only=True).restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), manifest=ocp.args.JsonRestore()),
        )
        tree = jax.device_get(out["state"])
        problem = manifest.problems(dict(out["manifest"]), tree)
    except Exception as e:
        raise CorruptCheckpoint(_corrupt_message(directory, step, e)) from e
    if problem is not None:
        raise CorruptCheckpoint(
            f"checkpoint step {step} under {str(directory)!r} is corrupt: {problem}. Delete"
            f" {str(directory / str(step))!r} to have it rebuilt (pretraining redoes it from the newest sound"
            " checkpoint), or restore it from a backup."
        )
    return serialization.from_state_dict(target, tree)


def _require_step(directory: Path, step: int) -> None:
    available = steps(directory)
    if step not in available:
        raise CheckpointError(
            f"no checkpoint for step {step} under {str(directory)!r} (available: {available or 'none'})."
            " Run pretraining with pretrain.checkpoint_steps including this step, or pick an"
            " available step."
        )


def _corrupt_message(directory: Path, step: int, error: Exception) -> str:
    return (
        f"checkpoint step {step} under {str(directory)!r} is corrupt or does not match the model"
        f" config ({type(error).__name__}: {str(error)[:300]}). Delete {str(directory / str(step))!r}"
        " to have it rebuilt, or check that model.* matches the run that wrote it."
    )
