"""What an imported Hugging Face architecture is: one `HFFamily` record, its per-tensor rules and helpers.

A record (growth/interop/hf_gpt2.py, hf_neo.py, hf_llama.py; the registry is hf_families.py) gives the
config mapping (config.json -> ModelConfig, refusing what the project cannot represent), its inverse
(ModelConfig -> config.json, for export) and one rule per project parameter: (project path, HF key,
transform of the HF tensor). A torch Linear weight (out, in) becomes a kernel (in, out). Every
transform is one of the invertible ones below, so export (growth/interop/hf_export.py) runs the same
rules backwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from growth.config import ModelConfig
from growth.interop.hf_files import HFImportError

# One rule per project parameter: (project path, HF key, transform of the HF tensor).
Rule = tuple[tuple, str, Callable[[np.ndarray], np.ndarray]]
NOTHING = re.compile(r"(?!x)x")  # matches no key


@dataclass(frozen=True)
class HFFamily:
    model_type: str  # config.json's model_type
    head_class: str  # the transformers class whose save_pretrained writes this layout (named in errors)
    # transformers' config defaults for fields a config.json may omit (a test checks them against the
    # installed transformers)
    defaults: dict
    prefix: str  # prefix of the body's tensor names, dropped before the rules apply ("transformer.", "model.")
    model_config: Callable[[dict], ModelConfig]  # the project config of a defaults-filled config.json
    rules: Callable[[ModelConfig], list[Rule]]  # one rule per project parameter
    # the config.json fields (before defaults) that describe a ModelConfig: the inverse of model_config
    hf_config: Callable[[ModelConfig], dict]
    # tensors that carry no weights and are skipped (old checkpoints' mask buffers, rotary tables)
    buffers: re.Pattern = field(default=NOTHING)


def same(x: np.ndarray) -> np.ndarray:
    return x


def transpose(x: np.ndarray) -> np.ndarray:
    return x.T


@dataclass(frozen=True)
class Part:
    """Part `index` of `of` equal slices of the last axis (GPT-2's fused c_attn holds q, k and v)."""

    index: int
    of: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.split(x, self.of, axis=-1)[self.index]


def zeros_of_rows(x: np.ndarray) -> np.ndarray:
    """A zero bias for a bias-free torch Linear, sized by its weight (out, in)."""
    return np.zeros(x.shape[0], np.float32)


def torch_linear(weight: np.ndarray, bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A torch Linear (weight (out, in), bias (out,)) as a kernel (in, out) and bias."""
    weight = np.asarray(weight)
    out = {"kernel": weight.T}
    if bias is not None:
        out["bias"] = np.asarray(bias)
    return out


def refuse(model_type: str, name: str, value, supported: str) -> HFImportError:
    """The one-line refusal of a config field: its name, its value and what the project supports."""
    return HFImportError(f"{model_type} config.json: {name}={value!r} is not supported; {supported}")
