"""Checksum manifest of a saved state: per array, a sha256 of its bytes, its shape, dtype and finiteness.

Orbax checks that a checkpoint's files exist and decode, not that their bytes are the ones written:
16 bytes overwritten inside a data file can restore as NaN without an error. The manifest is saved as
one more item of the same orbax checkpoint (so it is committed with the arrays, atomically), and a
restored state is compared with it before anyone uses it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np

VERSION = 1  # of the manifest's own format


def _leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in flat]


def _finite(x: np.ndarray) -> bool:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating)):
        return True
    return bool(np.isfinite(x).all())


def _digest(x: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def build(tree: Any) -> dict:
    """The manifest of a host-side pytree of arrays (the state dict orbax is about to save)."""
    arrays = {
        name: {"sha256": _digest(x), "shape": list(x.shape), "dtype": x.dtype.str, "finite": _finite(x)}
        for name, x in _leaves(tree)
    }
    return {"version": VERSION, "arrays": arrays}


def problems(manifest: dict, tree: Any) -> str | None:
    """None if `tree` is what `manifest` describes, else the first difference, in words."""
    expected = manifest.get("arrays", {})
    got = dict(_leaves(tree))
    if set(expected) != set(got):
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        return f"its arrays do not match its manifest (missing {missing}, unexpected {extra})"
    for name, entry in expected.items():  # finiteness first: the most telling symptom
        if entry["finite"] and not _finite(got[name]):
            return f"array {name} restores with NaN or inf but was finite when saved"
    for name, entry in expected.items():
        if _digest(got[name]) != entry["sha256"]:
            return f"array {name} does not match the checksum saved with it"
    return None
