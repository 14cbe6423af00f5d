"""Reading a `save_pretrained` directory: config.json and the weights, whatever the architecture.

Weights: `model.safetensors`, `pytorch_model.bin`, or their sharded `*.index.json`, every tensor as a
float32 numpy array. Safetensors files need only the `safetensors` package (bfloat16 ones go through
torch); `.bin` files need torch (the `torch` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class HFImportError(ValueError):
    """A checkpoint that cannot be imported; the message names the file, key or field and the fix."""


def directory(path: str | Path) -> Path:
    """The directory of `path` (itself, or the parent of a weights file); refuses a missing path."""
    path = Path(path)
    if not path.exists():
        raise HFImportError(f"{str(path)!r} does not exist; give a directory written by save_pretrained")
    return path if path.is_dir() else path.parent


def read_config_json(path: str | Path) -> tuple[Path, dict]:
    """(the config.json file, its contents) next to the weights."""
    file = directory(path) / "config.json"
    if not file.is_file():
        raise HFImportError(
            f"no config.json in {str(file.parent)!r}; save the model with model.save_pretrained(DIR) so"
            " that DIR holds config.json and the weights"
        )
    return file, json.loads(file.read_text())


def weights_file(path: str | Path) -> Path:
    """The weights file of `path` (a weights file itself, or a directory holding one)."""
    path = Path(path)
    if path.is_file():
        return path
    folder = directory(path)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise HFImportError(
        f"no weights in {str(folder)!r}: looked for {', '.join(WEIGHT_FILES)}; save the model with"
        " model.save_pretrained(DIR) or pass the weights file itself"
    )


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors / .bin file (or sharded index) as a float32 numpy array."""
    file = weights_file(path)
    if file.name.endswith(".index.json"):
        shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        out: dict[str, np.ndarray] = {}
        for shard in shards:
            out |= read_state_dict(file.parent / shard)
        return out
    if file.suffix == ".safetensors":
        return _read_safetensors(file)
    if file.suffix in (".bin", ".pt", ".pth"):
        torch = _torch(file)
        tensors = torch.load(file, map_location="cpu", weights_only=True)
        return {k: v.detach().float().numpy() for k, v in tensors.items() if hasattr(v, "detach")}
    raise HFImportError(f"{str(file)!r}: unknown weights format; use .safetensors or .bin")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as f:
            return {k: np.asarray(f.get_tensor(k), dtype=np.float32) for k in f.keys()}  # noqa: SIM118 (safetensors handles have no __iter__)
    except (TypeError, ValueError):  # bfloat16 has no numpy dtype: read through torch
        _torch(file)
        with safe_open(str(file), framework="pt") as f:
            return {k: f.get_tensor(k).float().numpy() for k in f.keys()}  # noqa: SIM118 (safetensors handles have no __iter__)


def _torch(file: Path):
    try:
        import torch
    except ModuleNotFoundError as e:
        raise HFImportError(f"reading {str(file)!r} needs torch; install the extra: pip install -e '.[torch]'") from e
    return torch
