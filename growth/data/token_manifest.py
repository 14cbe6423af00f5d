"""The token cache's manifest: what each token file must hold, checked whenever the cache is opened.

`write(root, ...)` records, for `train.bin` and `valid.bin`, the byte length, dtype, token count,
vocabulary size and sha256; growth.data.token_cache writes it after the token files, inside the directory
that is renamed into place at once. `verify(root)` checks the length and the largest id on every open
(a pass over memory-mapped ids) and the sha256 once per process and file (the hash costs about what
reading the file once does: little next to training on it). A flipped bit gives the same length and
valid ids, so only the hash sees it; ids outside the vocabulary would otherwise surface as a
diverging loss. A mismatch raises CacheMismatch naming the file; growth.data.token_cache rebuilds the
cache from its source, or refuses in one line where the source is gone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
ROLES = ("train", "valid")
_HASH_BLOCK = 4 << 20
_hashed: set[tuple] = set()  # (path, inode, size, mtime) of files whose sha256 matched in this process


class CacheMismatch(ValueError):
    """A token cache file that is not what its manifest says; the message names it and what differs."""


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read 4 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def write(root: Path, dtype: np.dtype, vocab_size: int, tokens: dict[str, int]) -> None:
    """Record what the token files under `root` hold (called once they are written and closed)."""
    entries = {}
    for role in ROLES:
        path = root / f"{role}.bin"
        entries[role] = {
            "bytes": path.stat().st_size,
            "dtype": np.dtype(dtype).name,
            "tokens": int(tokens[role]),
            "vocab_size": int(vocab_size),
            "sha256": file_digest(path),
        }
    (root / MANIFEST).write_text(json.dumps(entries, indent=1) + "\n")


def verify(root: Path) -> None:
    """Raise CacheMismatch unless every token file under `root` matches the manifest (module docstring)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        raise CacheMismatch(
            f"token cache {root} has no readable {MANIFEST} (built before manifests, or torn)"
        ) from None
    for role in ROLES:
        _verify_file(root / f"{role}.bin", manifest.get(role) or {})


def _verify_file(path: Path, entry: dict) -> None:
    try:
        stat = path.stat()
        dtype = np.dtype(entry["dtype"])
        size, tokens, vocab = int(entry["bytes"]), int(entry["tokens"]), int(entry["vocab_size"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise CacheMismatch(f"token cache file {path} is missing or not in the manifest ({e})") from None
    if stat.st_size != size or size != tokens * dtype.itemsize:
        raise CacheMismatch(
            f"token cache file {path} holds {stat.st_size} bytes, but the manifest says {size}"
            f" ({tokens} {dtype.name} tokens)"
        )
    if tokens:
        top = int(np.memmap(path, dtype=dtype, mode="r", shape=(tokens,)).max())
        if top >= vocab:
            raise CacheMismatch(f"token cache file {path} holds id {top}, outside the vocabulary of {vocab} tokens")
    stamp = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if stamp in _hashed:
        return
    if file_digest(path) != entry.get("sha256"):
        raise CacheMismatch(f"token cache file {path} does not match the sha256 in its manifest (changed bytes)")
    _hashed.add(stamp)
