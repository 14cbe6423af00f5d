"""The GPT-Neo import record (GPTNeoForCausalLM -> the gpt family with GPT-Neo's options).

torch Linear weights (out, in) are transposed; GPT-Neo's bias-free q/k/v get zero biases; attention
is unscaled and `attention_types` expands to one global/local kind per block.
"""

from __future__ import annotations

from growth.config import ModelConfig
from growth.interop.hf_gpt2 import BUFFERS, gpt_config, gpt_hf_config, shared_rules
from growth.interop.hf_rules import HFFamily, Rule, same, transpose, zeros_of_rows

DEFAULTS = {
    "intermediate_size": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "attention_types": [[["global", "local"], 12]],
    "window_size": 256,
    "tie_word_embeddings": True,
}


def _model_config(hf: dict) -> ModelConfig:
    layers = [t for kinds, n in hf["attention_types"] for _ in range(n) for t in kinds]
    return gpt_config(
        hf, hf["hidden_size"], "intermediate_size", vocab_size=hf["vocab_size"], n_heads=hf["num_heads"],
        n_layers=hf["num_layers"], context=hf["max_position_embeddings"], attn_scale=False,
        attention_layers=layers, window_size=hf["window_size"] if "local" in layers else 0,
    )  # fmt: skip


def _hf_config(cfg: ModelConfig) -> dict:
    layers = [str(k) for k in cfg.attention_layers] or ["global"] * cfg.n_layers
    return gpt_hf_config(cfg) | {
        "model_type": "gpt_neo", "architectures": ["GPTNeoForCausalLM"], "hidden_size": cfg.d_model,
        "num_layers": cfg.n_layers, "num_heads": cfg.n_heads, "max_position_embeddings": cfg.context,
        "intermediate_size": cfg.mlp_ratio * cfg.d_model, "attention_types": [[[str(k)], 1] for k in layers],
        "window_size": cfg.window_size or DEFAULTS["window_size"], "resid_dropout": 0.0, "embed_dropout": 0.0,
        "attention_dropout": 0.0,
    }  # fmt: skip


def _rules(cfg: ModelConfig) -> list[Rule]:
    rules = shared_rules(cfg)
    for i in range(cfg.n_layers):
        b, h = ("blocks", i), f"h.{i}."
        a = h + "attn.attention."
        for name in "qkv":
            rules.append(((*b, "attn", name, "kernel"), a + f"{name}_proj.weight", transpose))
            rules.append(((*b, "attn", name, "bias"), a + f"{name}_proj.weight", zeros_of_rows))
        rules += [
            ((*b, "attn", "o", "kernel"), a + "out_proj.weight", transpose),
            ((*b, "attn", "o", "bias"), a + "out_proj.bias", same),
        ]
        for name, theirs in (("fc", "c_fc"), ("proj", "c_proj")):
            rules.append(((*b, "mlp", name, "kernel"), f"{h}mlp.{theirs}.weight", transpose))
            rules.append(((*b, "mlp", name, "bias"), f"{h}mlp.{theirs}.bias", same))
    return rules


GPT_NEO = HFFamily(
    model_type="gpt_neo",
    head_class="GPTNeoForCausalLM",
    defaults=DEFAULTS,
    prefix="transformer.",
    model_config=_model_config,
    hf_config=_hf_config,
    rules=_rules,
    buffers=BUFFERS,
)
