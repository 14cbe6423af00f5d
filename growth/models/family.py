"""The model-family record: what width growth needs to know about each block family.

One entry per `model.family` (growth.config.Family). Each gives the small dimension of every widened
space, the factor by which growth multiplies it, the wide config, and which kernels read each norm
(structured_non_clone folds the norm gains into them). The Hugging Face import's per-family rules
(config mapping and per-tensor rules) sit downstream, in growth/interop/hf_families.py; the model
classes are chosen in growth/models/gpt.py:module.

Spaces of block i: q{i} (query heads), k{i} / v{i} (key / value heads), o{i} (the attention output,
one slot per query head: what the output projection reads), mlp{i} (MLP hidden units); RESID the
residual stream. In the GPT family q, k, v and o all have d_model dims.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from growth.config import Family, ModelConfig
from growth.models import llama

RESID = "resid"


@dataclass(frozen=True)
class FamilyRecord:
    family: Family
    space_dims: Callable[[ModelConfig], dict[str, int]]  # small dimension of every widened space
    factors: Callable[[ModelConfig, int], dict[str, int]]  # growth factor of every space at width factor k
    wide_config: Callable[[ModelConfig, int], ModelConfig]  # the wide config (logit_scale handled by the caller)
    norm_readers: dict[str, tuple[str, ...]]  # norm (ln1, ln2, ln_f) -> module names of the kernels that read it


def _gpt_dims(cfg: ModelConfig) -> dict[str, int]:
    dims = {RESID: cfg.d_model}
    for i in range(cfg.n_layers):
        dims |= {f"{s}{i}": cfg.d_model for s in "qkvo"} | {f"mlp{i}": cfg.mlp_ratio * cfg.d_model}
    return dims


def _llama_dims(cfg: ModelConfig) -> dict[str, int]:
    hd, kv = cfg.d_model // cfg.n_heads, llama.kv_heads(cfg)
    dims = {RESID: cfg.d_model}
    for i in range(cfg.n_layers):
        dims |= {f"q{i}": cfg.n_heads * hd, f"o{i}": cfg.n_heads * hd, f"k{i}": kv * hd, f"v{i}": kv * hd}
        dims[f"mlp{i}"] = llama.hidden(cfg)
    return dims


def _all_k(dims: Callable[[ModelConfig], dict[str, int]]) -> Callable[[ModelConfig, int], dict[str, int]]:
    return lambda cfg, k: dict.fromkeys(dims(cfg), k)


def _llama_factors(cfg: ModelConfig, k: int) -> dict[str, int]:
    """k everywhere, except a multi-query model's one kv head, which stays one (SPEC 2b)."""
    out = dict.fromkeys(_llama_dims(cfg), k)
    if llama.kv_heads(cfg) == 1:
        out |= {f"{s}{i}": 1 for i in range(cfg.n_layers) for s in "kv"}
    return out


def _gpt_wide(cfg: ModelConfig, k: int) -> ModelConfig:
    return dataclasses.replace(cfg, d_model=k * cfg.d_model, n_heads=k * cfg.n_heads)


def _llama_wide(cfg: ModelConfig, k: int) -> ModelConfig:
    kv = cfg.n_kv_heads
    return dataclasses.replace(
        cfg,
        d_model=k * cfg.d_model,
        n_heads=k * cfg.n_heads,
        n_kv_heads=kv if kv in (None, 1) else k * kv,
        mlp_hidden=None if cfg.mlp_hidden is None else k * cfg.mlp_hidden,
    )


FAMILIES: dict[Family, FamilyRecord] = {
    Family.gpt: FamilyRecord(
        Family.gpt, _gpt_dims, _all_k(_gpt_dims), _gpt_wide, {"ln1": ("q", "k", "v"), "ln2": ("fc",), "ln_f": ()}
    ),
    Family.llama: FamilyRecord(
        Family.llama,
        _llama_dims,
        _llama_factors,
        _llama_wide,
        {"ln1": ("q", "k", "v"), "ln2": ("gate", "up"), "ln_f": ()},
    ),
}


def record(cfg: ModelConfig) -> FamilyRecord:
    """The family record of a model config."""
    return FAMILIES[Family(cfg.family)]
