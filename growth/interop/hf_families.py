"""The registry of importable Hugging Face architectures: one `HFFamily` record per config.json model_type.

To import another architecture, write its record (config mapping and per-tensor rules, as
growth/interop/hf_llama.py does) and add it here.
"""

from __future__ import annotations

from growth.interop.hf_gpt2 import GPT2
from growth.interop.hf_llama import LLAMA, QWEN2
from growth.interop.hf_neo import GPT_NEO
from growth.interop.hf_rules import HFFamily

FAMILIES: dict[str, HFFamily] = {f.model_type: f for f in (GPT2, GPT_NEO, LLAMA, QWEN2)}
ARCHITECTURES = tuple(FAMILIES)


def family_of(model_type: str | None) -> HFFamily | None:
    """The record of a config.json model_type, or None when it cannot be imported."""
    return FAMILIES.get(model_type or "")
