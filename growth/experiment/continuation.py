"""The continuation's training between two evaluation lags: every candidate group and the small
reference on the same batches, several steps per compiled program.

A stretch of steps is cut into blocks whose lengths are powers of two up to
`runner.steps_per_dispatch`, so at most log2(steps_per_dispatch) + 1 scanned programs compile for
any set of lags; each block's batches are staged on the device at once. On a mesh, or with
`steps_per_dispatch: 1`, each step is its own program call.

Each group is trained in pieces of at most `runner.stack_at_most` candidates (each piece its own call of
the group's program; the state is cut before a stretch and joined after it, so evaluation still sees
the whole group). With `runner.concurrent_programs`, each block's programs (one per piece, one for the
small reference) run at once, each called and awaited from its own host thread: the small ops of one XLA
CPU program split poorly over two threads (it shows 1.7-1.8 cores in use, much of it waiting between ops),
and programs side by side finish sooner than one after another (1.2-1.35x on a study cell;
docs/performance.md, issue 29). The programs and their inputs are the same, so the numbers are too.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from growth.config import Config
from growth.data import pipeline as data_lib
from growth.distributed import mesh as mesh_lib
from growth.experiment import pool


def blocks(start: int, stop: int, most: int) -> Iterator[tuple[int, int]]:
    """(first step, length) of consecutive blocks covering [start, stop), each a power of two <= most."""
    size = 1 << (max(most, 1).bit_length() - 1)  # the largest power of two <= most
    while start < stop:
        while size > stop - start:
            size //= 2
        yield start, size
        start += size


class Stepper:
    """The compiled steps of one cell: `advance(small, groups, start, stop)` trains from step `start` to
    `stop` (steps after growth) and returns the small state and each group's losses, (steps, candidates).
    The small reference is left out when `small` is None (a scratch run)."""

    def __init__(
        self,
        cfg: Config,
        data: data_lib.TokenData,
        groups: list[pool.Group],
        dropout: float,
        batch_seed: int,
        mesh: Mesh | None,
        first_batch: int | None = None,
    ):
        """`first_batch`: the batch stream's step at step 0 (default: the growth step, where the small run left off)."""
        self.cfg, self.data, self.batch_seed, self.mesh = cfg, data, batch_seed, mesh
        self.first_batch = cfg.growth_step if first_batch is None else first_batch
        self.most = 1 if mesh is not None else cfg.runner.steps_per_dispatch
        self.scanned = self.most > 1
        self.small_step = pool.small_step(cfg, dropout, self.scanned)
        self.pool_steps = [pool.pool_step(cfg, g, dropout, self.scanned) for g in groups]
        self.concurrent = cfg.runner.concurrent_programs and mesh is None
        self.stack = 0 if mesh is not None else cfg.runner.stack_at_most

    def _batches(self, first: int, n: int):
        at = [
            data_lib.batch_at(self.data, self.batch_seed, self.first_batch + j, self.cfg.runner.batch_size)
            for j in range(first, first + n)
        ]
        if not self.scanned:
            return mesh_lib.put_batch(self.mesh, at[0])
        return mesh_lib.put_batch(None, np.stack(at))

    def advance(
        self, small: Any, groups: list[pool.Group], start: int, stop: int, on_steps: Callable[[int], None]
    ) -> tuple[Any, list[np.ndarray | None]]:
        pieces = [(gi, cut) for gi, g in enumerate(groups) for cut in _cuts(len(g.names), self.stack)]
        states = [_piece(groups[gi].state, cut, len(groups[gi].names)) for gi, cut in pieces]
        steps = [self.pool_steps[gi] for gi, _ in pieces] + ([self.small_step] if small is not None else [])
        losses: list[list[Any]] = [[] for _ in pieces]
        workers = len(steps) if self.concurrent else 0
        with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as threads:
            for first, n in blocks(start, stop, self.most):
                batch = self._batches(first, n)
                inputs = states + ([small] if small is not None else [])
                if threads is None:  # JAX's asynchronous dispatch queues the programs one after another
                    done = [step(state, batch) for step, state in zip(steps, inputs, strict=True)]
                else:
                    done = list(threads.map(_awaited, steps, inputs, itertools.repeat(batch)))
                if small is not None:
                    small = done.pop()[0]
                for pi, (state, metrics) in enumerate(done):
                    states[pi] = state
                    losses[pi].append(metrics["loss"] if self.scanned else metrics["loss"][None])
                on_steps(n)
        out: list[np.ndarray | None] = []
        for gi, g in enumerate(groups):
            mine = [pi for pi, (owner, _) in enumerate(pieces) if owner == gi]
            g.state = _joined([states[pi] for pi in mine])
            per_piece = [np.concatenate([np.asarray(x) for x in losses[pi]]) for pi in mine if losses[pi]]
            out.append(np.concatenate(per_piece, axis=1) if per_piece else None)
        return small, out


def _cuts(n: int, most: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of at most `most` (0: all) of a group's `n` candidates."""
    size = most or n
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _piece(state: Any, cut: tuple[int, int], n: int) -> Any:
    return state if cut == (0, n) else jax.tree.map(lambda x: x[cut[0] : cut[1]], state)


def _joined(states: list[Any]) -> Any:
    return states[0] if len(states) == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs), *states)


def _awaited(step: Callable, state: Any, batch: Any) -> tuple[Any, Any]:
    """One program call, waited for in the calling thread (so a concurrent caller's wait overlaps it)."""
    return jax.block_until_ready(step(state, batch))
