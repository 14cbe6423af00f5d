"""The Llama and Qwen2 import records (LlamaForCausalLM, Qwen2ForCausalLM -> the llama family).

Both store torch Linear weights (out, in), transposed here into kernels (in, out). Query head h owns
rows h*hd .. (h+1)*hd of q_proj and reads kv head h // (H / K): the same head layout and grouping as
growth/models/llama.py. transformers' RoPE is rotate-half (pairs (j, j + hd/2), `rotate_half`) and so is the
project's, so q_proj and k_proj need no row permutation. Qwen2 differs from Llama only by its q/k/v
biases (always on) and its optional sliding window (refused).

What the llama family cannot represent is refused in one line naming the field: RoPE scaling or
partial rotary, a sliding window in use, Llama's attention_bias / mlp_bias, a head_dim other than
hidden_size / num_attention_heads, an activation other than SiLU.
"""

from __future__ import annotations

import re

from growth.config import Family, ModelConfig, Norm
from growth.interop.hf_rules import HFFamily, Rule, refuse, same, transpose

# transformers' config defaults for the fields read here (checked against the installed transformers).
LLAMA_DEFAULTS = {
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
}
QWEN2_DEFAULTS = {
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "num_key_value_heads": 32,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": 28,
}
DEFAULT_THETA = 10000.0  # transformers' RotaryEmbeddingConfigMixin.default_theta
# Old checkpoints hold the rotary inverse frequencies as a buffer; they are recomputed from rope_theta.
BUFFERS = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


def rope_theta(hf: dict) -> float:
    """The RoPE base of a config.json in transformers 4 (rope_theta, rope_scaling) or 5 (rope_parameters)
    layout; anything but plain full-width RoPE is refused."""
    arch = hf["model_type"]
    scaling = hf.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) != "default":
        raise refuse(arch, "rope_scaling", scaling, "only plain RoPE imports (rope_scaling null)")
    params = hf.get("rope_parameters") or {}
    if params.get("rope_type", "default") != "default":
        raise refuse(arch, "rope_parameters", params, "only plain RoPE imports (rope_type 'default')")
    partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise refuse(arch, "partial_rotary_factor", partial, "RoPE must rotate the whole head (1.0)")
    return float(params.get("rope_theta", hf.get("rope_theta", DEFAULT_THETA)))


def _common(hf: dict, qkv_bias: bool) -> ModelConfig:
    arch = hf["model_type"]
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf["hidden_act"] != "silu":
        raise refuse(arch, "hidden_act", hf["hidden_act"], "the llama family's SwiGLU uses 'silu'")
    head_dim = hf.get("head_dim")
    if head_dim is not None and heads and head_dim * heads != d:
        raise refuse(
            arch, "head_dim", head_dim, f"it must equal hidden_size / num_attention_heads = {d} / {heads}"
        )  # fmt: skip
    return ModelConfig(
        family=Family.llama,
        norm=Norm.rmsnorm,
        vocab_size=hf["vocab_size"],
        d_model=d,
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads,
        n_layers=hf["num_hidden_layers"],
        mlp_hidden=hf["intermediate_size"],
        context=hf["max_position_embeddings"],
        norm_eps=float(hf["rms_norm_eps"]),
        tie_embeddings=bool(hf["tie_word_embeddings"]),
        logit_scale=1.0,
        dropout=0.0,
        rope_theta=rope_theta(hf),
        qkv_bias=qkv_bias,
    )


def _llama_config(hf: dict) -> ModelConfig:
    for name in ("attention_bias", "mlp_bias"):
        if hf[name]:
            raise refuse(
                "llama", name, hf[name], "the llama family has no biases there (false); Qwen2's q/k/v biases import"
            )
    return _common(hf, qkv_bias=False)


def _qwen2_config(hf: dict) -> ModelConfig:
    n, window = hf["num_hidden_layers"], hf["sliding_window"]
    if hf["use_sliding_window"] and window is not None:
        kinds = hf.get("layer_types") or [
            "sliding_attention" if i >= hf["max_window_layers"] else "full_attention" for i in range(n)
        ]
        sliding = [i for i, kind in enumerate(kinds) if kind == "sliding_attention"]
        if sliding:
            raise refuse(
                "qwen2", "use_sliding_window", True,
                f"sliding_window={window} would apply to layers {sliding}; the llama family attends over the whole"
                " context (use_sliding_window false)",
            )  # fmt: skip
    return _common(hf, qkv_bias=True)


def _hf_config(cfg: ModelConfig, model_type: str, head_class: str) -> dict:
    out = {
        "model_type": model_type, "architectures": [head_class], "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "intermediate_size": cfg.mlp_hidden or cfg.mlp_ratio * cfg.d_model,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads or cfg.n_heads, "head_dim": cfg.d_model // cfg.n_heads,
        "max_position_embeddings": cfg.context, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
        "tie_word_embeddings": cfg.tie_embeddings, "attention_dropout": 0.0,
        # both layouts: transformers 4 reads rope_theta, transformers 5 rope_parameters
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
    }  # fmt: skip
    if model_type == "llama":
        return out | {"attention_bias": cfg.qkv_bias, "mlp_bias": False}
    return out | {"use_sliding_window": False, "sliding_window": None, "max_window_layers": cfg.n_layers}


def _rules(cfg: ModelConfig) -> list[Rule]:
    rules: list[Rule] = [
        (("tok_embed", "embedding"), "embed_tokens.weight", same),
        (("ln_f", "scale"), "norm.weight", same),
    ]
    if not cfg.tie_embeddings:
        rules.append((("lm_head", "kernel"), "lm_head.weight", transpose))
    for i in range(cfg.n_layers):
        b, h = ("blocks", i), f"layers.{i}."
        rules += [
            ((*b, "ln1", "scale"), h + "input_layernorm.weight", same),
            ((*b, "ln2", "scale"), h + "post_attention_layernorm.weight", same),
            ((*b, "attn", "o", "kernel"), h + "self_attn.o_proj.weight", transpose),
        ]
        for name in "qkv":
            rules.append(((*b, "attn", name, "kernel"), h + f"self_attn.{name}_proj.weight", transpose))
            if cfg.qkv_bias:
                rules.append(((*b, "attn", name, "bias"), h + f"self_attn.{name}_proj.bias", same))
        for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("proj", "down_proj")):
            rules.append(((*b, "mlp", ours, "kernel"), h + f"mlp.{theirs}.weight", transpose))
    return rules


LLAMA = HFFamily(
    model_type="llama",
    head_class="LlamaForCausalLM",
    defaults=LLAMA_DEFAULTS,
    prefix="model.",
    model_config=_llama_config,
    hf_config=lambda cfg: _hf_config(cfg, "llama", "LlamaForCausalLM"),
    rules=_rules,
    buffers=BUFFERS,
)
QWEN2 = HFFamily(
    model_type="qwen2",
    head_class="Qwen2ForCausalLM",
    defaults=QWEN2_DEFAULTS,
    prefix="model.",
    model_config=_qwen2_config,
    hf_config=lambda cfg: _hf_config(cfg, "qwen2", "Qwen2ForCausalLM"),
    rules=_rules,
    buffers=BUFFERS,
)
