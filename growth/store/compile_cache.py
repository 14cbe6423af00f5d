"""JAX's persistent compilation cache: repeated runs and tests skip XLA compilation of known programs."""

from __future__ import annotations

import os
from pathlib import Path

import jax


def enable(directory: str | os.PathLike | None = None) -> None:
    """Cache compiled programs under `directory` (default `$GROWTH_JAX_CACHE` or `.cache/jax`)."""
    path = Path(directory or os.environ.get("GROWTH_JAX_CACHE", ".cache/jax")).absolute()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
