"""The GPT-2 import record (GPT2LMHeadModel -> the gpt family), and what GPT-Neo shares with it.

GPT-2's Conv1D weights are (in, out) already and its fused c_attn splits into q, k, v; the embeddings
and norms keep their layout; lm_head is tied to wte unless tie_word_embeddings is false.
"""

from __future__ import annotations

import re

from growth.config import Activation, ModelConfig, Norm
from growth.interop.hf_rules import HFFamily, Part, Rule, refuse, same, transpose

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
# Non-persistent attention-mask buffers that old checkpoints still hold; they carry no weights.
BUFFERS = re.compile(r"(^|\.)attn\.(attention\.)?(bias|masked_bias)$")
DEFAULTS = {
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "tie_word_embeddings": True,
}


def gpt_config(hf: dict, d: int, inner_field: str, **fields) -> ModelConfig:
    """The gpt-family ModelConfig both GPT-2 and GPT-Neo give: LayerNorm, an integer MLP ratio, GELU."""
    arch, act, inner = hf["model_type"], hf["activation_function"], hf[inner_field]
    if act not in ACTIVATIONS:
        raise refuse(arch, "activation_function", act, f"known: {sorted(ACTIVATIONS)}")
    inner = inner or 4 * d
    if inner % d:
        raise refuse(arch, inner_field, inner, f"the MLP width must be a multiple of the model width {d} (mlp_ratio)")
    return ModelConfig(
        **fields,
        d_model=d,
        mlp_ratio=inner // d,
        norm=Norm.layernorm,
        norm_eps=float(hf["layer_norm_epsilon"]),
        tie_embeddings=bool(hf["tie_word_embeddings"]),
        logit_scale=1.0,
        dropout=0.0,
        activation=Activation(ACTIVATIONS[act]),
    )


def shared_rules(cfg: ModelConfig) -> list[Rule]:
    """Embeddings, final norm, the untied head and the block norms: the same keys in GPT-2 and GPT-Neo."""
    rules: list[Rule] = [
        (("tok_embed", "embedding"), "wte.weight", same),
        (("pos_embed", "embedding"), "wpe.weight", same),
        (("ln_f", "scale"), "ln_f.weight", same),
        (("ln_f", "bias"), "ln_f.bias", same),
    ]
    if not cfg.tie_embeddings:
        rules.append((("lm_head", "kernel"), "lm_head.weight", transpose))
    for i in range(cfg.n_layers):
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            rules.append((("blocks", i, ours, "scale"), f"h.{i}.{theirs}.weight", same))
            rules.append((("blocks", i, ours, "bias"), f"h.{i}.{theirs}.bias", same))
    return rules


def gpt_hf_config(cfg: ModelConfig) -> dict:
    """The config.json fields GPT-2 and GPT-Neo share, from a gpt-family ModelConfig (dropout off)."""
    act = {ours: theirs for theirs, ours in reversed(ACTIVATIONS.items())}  # gelu_tanh -> gelu_new
    return {
        "vocab_size": cfg.vocab_size,
        "activation_function": act[cfg.activation],
        "layer_norm_epsilon": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
    }


def _hf_config(cfg: ModelConfig) -> dict:
    return gpt_hf_config(cfg) | {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": cfg.d_model, "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads, "n_positions": cfg.context, "n_inner": cfg.mlp_ratio * cfg.d_model,
        "scale_attn_weights": cfg.attn_scale, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
    }  # fmt: skip


def _model_config(hf: dict) -> ModelConfig:
    if hf["scale_attn_by_inverse_layer_idx"]:
        raise refuse("gpt2", "scale_attn_by_inverse_layer_idx", True, "the project model scales every layer alike")
    return gpt_config(
        hf, hf["n_embd"], "n_inner", vocab_size=hf["vocab_size"], n_heads=hf["n_head"], n_layers=hf["n_layer"],
        context=hf["n_positions"], attn_scale=bool(hf["scale_attn_weights"]),
    )  # fmt: skip


def _rules(cfg: ModelConfig) -> list[Rule]:
    rules = shared_rules(cfg)
    for i in range(cfg.n_layers):
        b, h = ("blocks", i), f"h.{i}."
        for part, name in enumerate("qkv"):  # Conv1D weights are (in, out) already
            rules.append(((*b, "attn", name, "kernel"), h + "attn.c_attn.weight", Part(part, 3)))
            rules.append(((*b, "attn", name, "bias"), h + "attn.c_attn.bias", Part(part, 3)))
        for ours, theirs in (("attn/o", "attn.c_proj"), ("mlp/fc", "mlp.c_fc"), ("mlp/proj", "mlp.c_proj")):
            rules.append(((*b, *ours.split("/"), "kernel"), f"{h}{theirs}.weight", same))
            rules.append(((*b, *ours.split("/"), "bias"), f"{h}{theirs}.bias", same))
    return rules


GPT2 = HFFamily(
    model_type="gpt2",
    head_class="GPT2LMHeadModel",
    defaults=DEFAULTS,
    prefix="transformer.",
    model_config=_model_config,
    hf_config=_hf_config,
    rules=_rules,
    buffers=BUFFERS,
)
