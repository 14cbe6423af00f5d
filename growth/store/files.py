"""Durable file writes: atomic replacement, locked JSONL appends, compressed arrays.

Every result the harness writes goes through here, so a crash leaves either the old file or the
new one, never half of it, and parallel jobs (Hydra multirun) can append to one results file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class StorageError(RuntimeError):
    """A write the file system refused (full, read-only, no permission); the message names the path and the fix."""


# errno -> (what happened, the fix). Orbax's tensorstore raises its own error types, so the text is matched too.
_STORAGE = {
    errno.ENOSPC: ("no space left on the device", "free space there or set out_dir to a disk with room"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space there or set out_dir to a disk with room"),
    errno.EROFS: ("the file system is read-only", "set out_dir to a writable directory"),
    errno.EACCES: ("permission denied", "make it writable (chmod/chown) or set out_dir to a directory you own"),
    errno.EPERM: ("operation not permitted", "make it writable (chmod/chown) or set out_dir to a directory you own"),
}
_STORAGE_TEXT = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
}


def storage_errno(error: BaseException) -> int | None:
    """The storage errno behind `error` (following its causes), or None if it is not a storage failure."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _STORAGE:
            return e.errno
        text = str(e).lower()
        for needle, code in _STORAGE_TEXT.items():
            if needle in text:
                return code
        e = e.__cause__ or e.__context__
    return None


def storage_error(path: str | Path, error: BaseException) -> StorageError | None:
    """A one-line StorageError naming `path` (or the file the OS named) if `error` is a storage failure."""
    code = storage_errno(error)
    if code is None:
        return None
    what, fix = _STORAGE[code]
    named = getattr(error, "filename", None) or path
    return StorageError(f"cannot write {str(named)!r}: {what}; {fix}")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a storage failure while writing under `path` into one StorageError line."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:
        clean = storage_error(path, e)
        if clean is None:
            raise
        raise clean from None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows as whole lines in one locked, fsynced write: no interleaved rows, and never glued to a
    torn last line (a crash mid-append): that fragment is closed with a newline and stays one unparseable
    line, which the readers count."""
    path = Path(path)
    text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        text = "\n" + text
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class JsonlScan:
    rows: list[dict]
    unparseable: int  # non-empty lines that are not a JSON object (torn by a crash, or edited by hand)


def scan_jsonl(path: str | Path) -> JsonlScan:
    """Rows of a JSONL file, and how many lines could not be parsed (they are skipped)."""
    if not Path(path).exists():
        return JsonlScan([], 0)
    rows, bad = [], 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return JsonlScan(rows, bad)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; unparseable lines (a torn line from a crash mid-write) are skipped."""
    return scan_jsonl(path).rows


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a temporary sibling of `path`, then rename it onto `path`."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory as the target: os.replace is only atomic within one file system.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def atomic_write_dir(final: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a temporary sibling directory, then rename it onto `final` (first writer wins)."""
    final = Path(final)
    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        try:
            write(tmp)
            try:
                os.replace(tmp, final)
            except OSError as e:  # a concurrent writer finished first (between any check and the rename)
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.exists():
                    raise
                shutil.rmtree(tmp)  # its content is identical
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def atomic_save_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Atomically write a compressed .npz of `arrays`."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def truncate_jsonl(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Keep only the rows for which `keep(row)` is true (used when a run resumes)."""
    rows = [r for r in read_jsonl(path) if keep(r)]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


@contextlib.contextmanager
def locked(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file `path` (created if missing) for the block, waiting for
    it if another process holds it (`on_wait` is called once, then). The OS drops the lock of a process
    that dies, so a killed holder never blocks the others."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
