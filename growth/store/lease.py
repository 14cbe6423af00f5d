"""Cell leases: many workers drain one grid on a shared results directory, and no cell is computed twice.

A worker claims a cell by writing `leases/<cell>.json` (its host, pid, a random token and a heartbeat
time) under one lock file for the whole directory. While it computes, a thread refreshes the heartbeat.
Every write of the cell's files (its training log, then its npz and rows) is fenced: made under the same
lock only while the lease file still holds this worker's token, and the lease is removed with the rows.
A worker that lost its lease writes nothing more for the cell (LeaseLost) and goes on to the next one. A lease whose heartbeat is older than `workers.stale_s`, or whose pid is gone on this host,
belongs to a dead worker and is taken over. Our construction; docs/scaling.md describes it.

A multi-process job (growth.distributed.hosts) is one worker: process 0 claims and writes, and the others follow
its decision (their lease is a follower's, which writes nothing).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from growth.config import WorkersConfig
from growth.distributed import hosts
from growth.store import files

log = logging.getLogger(__name__)

LOCK_NAME = ".leases.lock"


class LeaseLost(RuntimeError):
    """This worker's lease on a cell was taken over (it stalled past workers.stale_s): it stops that cell."""


class GridUnfinished(RuntimeError):
    """Cells a worker could not finish and no live worker holds; the message lists them."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def stale(owner: dict, stale_s: float, now: float | None = None) -> bool:
    """Whether a lease belongs to a dead worker: no heartbeat for `stale_s`, or its pid gone on this host."""
    now = time.time() if now is None else now
    if now - float(owner.get("heartbeat", 0.0)) > stale_s:
        return True
    return owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1)))


@dataclass
class Lease:
    """A held cell: commit its rows with `commit`, or give it up with `release`."""

    directory: Path
    name: str
    owner: dict
    heartbeat_s: float
    follower: bool = False  # a process of a multi-process job other than process 0: it writes nothing
    lost: bool = False  # another worker took the cell over: nothing more is written for it
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.directory / "leases" / f"{self.name}.json"

    @property
    def lock(self) -> Path:
        return self.directory / "leases" / LOCK_NAME

    def _ours(self) -> bool:
        held = _read(self.path)
        return held is not None and held.get("token") == self.owner["token"]

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with files.locked(self.lock):
                    if not self._ours():
                        log.warning("lease %s was taken over by another worker", self.name)
                        return
                    self.owner["heartbeat"] = time.time()
                    files.atomic_write_text(self.path, json.dumps(self.owner))
            except Exception as e:  # a missed heartbeat must not kill the computation
                log.warning("could not refresh lease %s: %s", self.name, e)

    def start(self) -> Lease:
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _lose(self) -> None:
        if not self.lost:
            log.warning(
                "lease %s was taken over by another worker (this one stalled past workers.stale_s): this worker"
                " writes nothing more for that cell", self.name,
            )  # fmt: skip
        self.lost = True
        self._stop.set()

    def fence(self, write: Callable[[], None]) -> None:
        """Run `write` (a write of the cell's files) under the lease lock while the lease is ours, else raise
        LeaseLost: the worker that took the cell over writes it, and no line of this worker's follows."""
        if self.follower:  # a follower process writes nothing itself (growth.distributed.hosts.is_writer)
            write()
            return
        with files.locked(self.lock):
            if self.lost or not self._ours():
                self._lose()
                raise LeaseLost(f"lease {self.name} was taken over by another worker")
            write()

    def commit(self, write: Callable[[], None]) -> bool:
        """Run `write` (the cell's rows) if the lease is still ours, then drop it; False if it was lost."""
        if self.follower:
            return True
        self._stop_beating()
        with files.locked(self.lock):
            if self.lost or not self._ours():
                self._lose()
                return False
            write()
            self.path.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        """Give the cell up unfinished (this worker failed): another worker may claim it at once."""
        if self.follower:
            return
        self._stop_beating()
        with files.locked(self.lock):
            if self._ours():
                self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """`files.locked` for a multi-process job: process 0 takes the lock, the others wait for it at a barrier."""
    if not hosts.several():
        with files.locked(path, on_wait=on_wait):
            yield
        return
    if hosts.is_writer():
        with files.locked(path, on_wait=on_wait):
            hosts.sync(f"locked {path}")
            yield
            hosts.sync(f"unlock {path}")  # the others are done with what the lock guards
    else:
        hosts.sync(f"locked {path}")
        yield
        hosts.sync(f"unlock {path}")


def claim(directory: Path, name: str, workers: WorkersConfig, finished: Callable[[], bool]) -> Lease | None:
    """Lease the cell `name` under `directory`, or None if it is finished or a live worker holds it.

    In a multi-process job every process calls it: process 0 claims, the others follow its answer."""
    if not hosts.several():
        return _claim(directory, name, workers, finished)
    held = _claim(directory, name, workers, finished) if hosts.is_writer() else None
    if not hosts.agree_one(held is not None):
        return None
    return held or Lease(directory, name, {}, workers.heartbeat_s, follower=True)


def _claim(directory: Path, name: str, workers: WorkersConfig, finished: Callable[[], bool]) -> Lease | None:
    path = directory / "leases" / f"{name}.json"
    with files.locked(directory / "leases" / LOCK_NAME):
        if finished():
            return None
        held = _read(path)
        if held is not None and held.get("token"):
            if not stale(held, workers.stale_s):
                return None
            age = time.time() - float(held.get("heartbeat", 0.0))
            log.warning(
                "taking over cell %s from a dead worker (host %s, pid %s, last heartbeat %.0f s ago)",
                name, held.get("host"), held.get("pid"), age,
            )  # fmt: skip
        now = time.time()
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        owner |= {"started": now, "heartbeat": now}
        files.atomic_write_text(path, json.dumps(owner))
    return Lease(directory, name, owner, workers.heartbeat_s).start()


def drain(run_pass: Callable[[], int], left: Callable[[], list[str]], poll_s: float) -> None:
    """Call `run_pass` (returns how many cells live workers still hold) until `left()` (the unfinished cells)
    is empty: cells held by live workers are waited for, dead or stale leases taken over on the next pass.
    Raise GridUnfinished when two passes in a row leave the same cells unfinished and no live worker holds any."""
    stuck: list[str] | None = None
    while True:
        held = hosts.agree_one(run_pass())  # a multi-process job goes on as process 0 does
        if held:
            log.info("%d cell(s) held by other workers; checking again in %.0f s", held, poll_s)
            stuck = None
            time.sleep(poll_s)
            continue
        unfinished = left()
        if not hosts.agree_one(len(unfinished)):
            return
        if hosts.agree_one(int(unfinished == stuck)):
            raise GridUnfinished(
                f"{len(unfinished)} cell(s) are unfinished and no live worker holds them after two passes:"
                f" {', '.join(unfinished)}; see the warnings above, then run the command again"
            )
        log.warning("%d cell(s) still unfinished (%s): another pass", len(unfinished), ", ".join(unfinished))
        stuck = unfinished
