"""Parameter-tree surgery: partial init, layer zeroing and depth growth of a full train state.

Every operation is a pure function that returns a new tree. Trees are nested mappings: the project's
plain-dict GPT params, Flax Linen variables (`{"params": {"Dense_0": ...}}`) and NNX states
(`nnx.State` or the pure dicts of `nnx.to_pure_dict(state)`). A path names a node by its keys joined
with "/" ("blocks/1/mlp/proj", "params/Dense_2"); integer keys are written as digits.

Depth growth (`deepen`, the candidates `deepen_identity` / `deepen_copy`) is part of the pipeline and
lives in growth/widen/depth.py; docs/surgery.md gives the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from growth.training import train


class SurgeryError(ValueError):
    """Two trees that do not fit together; the message names the path, both shapes and the fix."""


# ---------------------------------------------------------------- partial init


def partial_init(fresh: Any, trained: Any, *, strict: bool = False) -> Any:
    """Overlay `trained` onto `fresh`: keys in both come from `trained`, the rest keep their init.

    Works on nested dicts, Linen variable dicts and `nnx.State`; the result has `fresh`'s type,
    structure and dtypes. A shared key whose shapes differ raises SurgeryError. With `strict`, keys of
    `trained` that `fresh` lacks raise too (by default they are dropped).
    """
    if isinstance(fresh, nnx.State):
        merged = _overlay(nnx.to_pure_dict(fresh), _pure(trained), "", strict)
        out = jax.tree.map(lambda x: x, fresh)  # new Variables: `fresh` is left untouched
        nnx.replace_by_pure_dict(out, merged)
        return out
    return _overlay(fresh, _pure(trained), "", strict)


def _pure(tree: Any) -> Any:
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def _overlay(fresh: Any, trained: Any, path: str, strict: bool) -> Any:
    fresh_map, trained_map = isinstance(fresh, Mapping), isinstance(trained, Mapping)
    if fresh_map != trained_map:
        kinds = ["a subtree" if m else "an array" for m in (fresh_map, trained_map)]
        raise SurgeryError(
            f"{path or '<root>'}: the new tree holds {kinds[0]} where the trained tree holds {kinds[1]};"
            " the two models name their layers differently"
        )
    if not fresh_map:
        if np.shape(fresh) != np.shape(trained):
            raise SurgeryError(
                f"{path}: shape {tuple(np.shape(trained))} in the trained tree but"
                f" {tuple(np.shape(fresh))} in the new one; make the shared layers the same size,"
                " or widen/rename this layer before overlaying"
            )
        return jnp.array(trained, dtype=fresh.dtype)  # a copy: the result may be donated
    extra = [k for k in trained if k not in fresh]
    if strict and extra:
        names = ", ".join(_join(path, k) for k in extra)
        raise SurgeryError(f"keys of the trained tree absent from the new one: {names}")
    out = {k: _overlay(v, trained[k], _join(path, k), strict) if k in trained else v for k, v in fresh.items()}
    return type(fresh)(out) if not isinstance(fresh, dict) else out


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


# ---------------------------------------------------------------- layer zeroing


def get_path(tree: Mapping, path: str) -> Any:
    """The node at `path` ("blocks/1/mlp/proj"); digits also match integer keys."""
    node = tree
    for key in _key_path(tree, path):
        node = node[key]
    return node


def _key_path(tree: Mapping, path: str) -> tuple:
    """The keys that `path` names, checked to exist."""
    keys: list = []
    node = tree
    for part in path.strip("/").split("/"):
        key = _find_key(node, part)
        if key is None:
            have = sorted(map(str, node)) if isinstance(node, Mapping) else "an array"
            where = "/".join(map(str, keys)) or "<root>"
            raise SurgeryError(f"path {path!r}: no key {part!r} under {where} (it holds {have})")
        keys.append(key)
        node = node[key]
    return tuple(keys)


def _find_key(node: Any, part: str) -> Any:
    if not isinstance(node, Mapping):
        return None
    if part in node:
        return part
    if part.lstrip("-").isdigit() and int(part) in node:
        return int(part)
    return None


def zero_kernel(tree: Any, path: str) -> Any:
    """A copy of `tree` with the kernel of layer `path` zeroed and its bias (and all else) kept."""
    if isinstance(tree, nnx.State):
        out = jax.tree.map(lambda x: x, tree)
        nnx.replace_by_pure_dict(out, zero_kernel(nnx.to_pure_dict(tree), path))
        return out
    layer = get_path(tree, path)
    if not isinstance(layer, Mapping) or "kernel" not in layer:
        raise SurgeryError(f"path {path!r} is not a layer with a 'kernel'; name the layer (e.g. blocks/1/mlp/proj)")

    def zero(lay):
        return {**lay, "kernel": jnp.zeros_like(lay["kernel"])}

    return _replace_at(tree, [_key_path(tree, path)], zero)


def _replace_at(tree: Mapping, key_paths: list[tuple], fn) -> Mapping:
    """Copy the dicts along each key path and replace its end node with fn(node)."""
    out = dict(tree)
    for keys in key_paths:
        node = out
        for k in keys[:-1]:
            node[k] = dict(node[k])
            node = node[k]
        node[keys[-1]] = fn(node[keys[-1]])
    return out


def block_writers(block: int) -> list[str]:
    """The layers through which block `block` writes to the residual stream."""
    return [f"blocks/{block}/attn/o", f"blocks/{block}/mlp/proj"]


def zero_block(params: Any, block: int) -> Any:
    """Zero the kernels of a block's residual writers (attention out, MLP proj); biases are kept."""
    for path in block_writers(block):
        params = zero_kernel(params, path)
    return params


def ablation_losses(graphdef: nnx.GraphDef, params: Any, eval_BxT1: np.ndarray, batch_size: int = 32) -> dict:
    """Held-out loss of the model as is ("none") and with each block zeroed in turn (0, 1, ...)."""
    evaluate = train.make_eval_fn(graphdef, batch_size)  # one compile: zeroing keeps every shape
    out: dict = {"none": evaluate(params, eval_BxT1)}
    for i in sorted(params["blocks"]):
        out[int(i)] = evaluate(zero_block(params, int(i)), eval_BxT1)
    return out


def loss_with_zeroed(
    graphdef: nnx.GraphDef, params: Any, eval_BxT1: np.ndarray, target: int | str, batch_size: int = 32
) -> float:
    """Held-out loss with block `target` (an int) or the layer at path `target` (a str) zeroed."""
    zeroed = zero_block(params, target) if isinstance(target, int) else zero_kernel(params, target)
    return train.make_eval_fn(graphdef, batch_size)(zeroed, eval_BxT1)
