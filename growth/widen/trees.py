"""Parameter trees by path: flatten to {"blocks/0/attn/q/kernel": leaf}, back, and float64 numpy copies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def path_str(path: Sequence[Any]) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def flatten(tree: Any) -> dict[str, Any]:
    """{"blocks/0/attn/q/kernel": leaf, ...}."""
    return {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten_like(template: Any, flat: dict[str, Any], dtype=jnp.float32) -> Any:
    """A tree shaped like `template` whose leaves come from `flat` (new device buffers)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(flat[path_str(p)], dtype), template)


def to_numpy(tree: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in flatten(tree).items()}


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A float64 numpy generator determined by a JAX key (raw uint32 or typed): construction draws
    many differently shaped arrays, which jax.random would compile one by one."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng([int(x) for x in np.asarray(key, np.uint32).ravel()])
