"""Cell leases: many workers drain one grid on a shared results directory, and no cell is computed twice.

A worker claims a cell by writing `leases/<cell>.json` (its host, pid, a random token and a heartbeat
time) under one lock file for the whole directory. While it computes, a thread refreshes the heartbeat.
Its rows are written only while it still holds the lease, under the same lock, and the lease is then
removed. A lease whose heartbeat is older than `workers.stale_s`, or whose pid is gone on this host,
belongs to a dead worker and is taken over. Our construction; docs/scaling.md describes it.

A multi-process job (growth.hosts) is one worker: process 0 claims and writes, and the others follow
its decision (their lease is a follower's, which writes nothing).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from growth import files, hosts
from growth.config import WorkersConfig

log = logging.getLogger(__name__)

LOCK_NAME = ".leases.lock"


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

    def commit(self, write: Callable[[], None]) -> bool:
        """Run `write` (the cell's rows) if the lease is still ours, then drop it; False if it was lost."""
        if self.follower:
            return True
        self._stop_beating()
        with files.locked(self.lock):
            if not self._ours():
                log.warning("lease %s was taken over by another worker; dropping this worker's copy", self.name)
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


def drain(run_pass: Callable[[], int], poll_s: float) -> None:
    """Call `run_pass` (returns how many cells other workers still hold) until none is left."""
    while True:
        held = hosts.agree_one(run_pass())  # a multi-process job goes on as process 0 does
        if not held:
            return
        log.info("%d cell(s) held by other workers; checking again in %.0f s", held, poll_s)
        time.sleep(poll_s)
