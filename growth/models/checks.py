"""Checks of a model config that run before anything is built (growth.models.gpt re-exports them)."""

from __future__ import annotations

from growth.config import Activation, AttentionKind, Family, ModelConfig, Norm, check_choice


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the value and the fix."""


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise ConfigError for shapes that cannot build a model."""
    if cfg.d_model <= 0 or cfg.n_heads <= 0 or cfg.n_layers <= 0:
        raise ConfigError(
            f"model.d_model={cfg.d_model}, model.n_heads={cfg.n_heads}, model.n_layers={cfg.n_layers}:"
            " all must be positive integers"
        )
    if cfg.d_model % cfg.n_heads != 0:
        raise ConfigError(
            f"model.n_heads={cfg.n_heads} does not divide model.d_model={cfg.d_model}; choose a head"
            f" count that divides it (e.g. model.n_heads={_divisor_near(cfg.d_model, cfg.n_heads)})"
        )
    try:
        check_choice("model.family", cfg.family, Family)
        check_choice("model.norm", cfg.norm, Norm)
        check_choice("model.activation", cfg.activation, Activation)
        for kind in cfg.attention_layers:
            check_choice("model.attention_layers[]", kind, AttentionKind)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.dropout} must lie in [0, 1)")
    layers = [str(x) for x in cfg.attention_layers]
    if layers and len(layers) != cfg.n_layers:
        raise ConfigError(
            f"model.attention_layers={layers} must be empty or name 'global' or 'local' for each of the"
            f" model.n_layers={cfg.n_layers} blocks"
        )
    if AttentionKind["local"] in layers and cfg.window_size <= 0:
        raise ConfigError(f"model.window_size={cfg.window_size}: local blocks need a positive window")
    if cfg.family == Family.llama:
        validate_llama(cfg)


def kv_heads(cfg: ModelConfig) -> int:
    """Key/value heads: model.n_kv_heads, or n_heads when unset."""
    return cfg.n_heads if cfg.n_kv_heads is None else cfg.n_kv_heads


def hidden(cfg: ModelConfig) -> int:
    """SwiGLU hidden width: model.mlp_hidden, or mlp_ratio * d_model when unset."""
    return cfg.mlp_ratio * cfg.d_model if cfg.mlp_hidden is None else cfg.mlp_hidden


def validate_llama(cfg: ModelConfig) -> None:
    """Raise ConfigError for llama fields that cannot build a model."""
    kv = kv_heads(cfg)
    if kv <= 0 or cfg.n_heads % kv:
        divisors = [d for d in range(1, cfg.n_heads + 1) if cfg.n_heads % d == 0]
        raise ConfigError(
            f"model.n_kv_heads={cfg.n_kv_heads} must divide model.n_heads={cfg.n_heads}; use one of {divisors}"
            " (1 = multi-query)"
        )
    if cfg.norm != Norm.rmsnorm:
        raise ConfigError(f"model.norm={cfg.norm}: the llama family uses RMSNorm; set model.norm=rmsnorm")
    if (cfg.d_model // cfg.n_heads) % 2:
        raise ConfigError(
            f"head_dim={cfg.d_model // cfg.n_heads} (model.d_model / model.n_heads) must be even for RoPE pairs"
        )
    if hidden(cfg) <= 0 or not cfg.rope_theta > 0:
        raise ConfigError(f"model.mlp_hidden={cfg.mlp_hidden} and model.rope_theta={cfg.rope_theta} must be positive")
    if cfg.attention_layers or cfg.window_size:
        raise ConfigError("model.attention_layers / model.window_size: the llama family has no sliding windows")


def block_windows(cfg: ModelConfig) -> list[int]:
    """Attention window of each block: 0 for global (causal) attention."""
    return [cfg.window_size if t == AttentionKind["local"] else 0 for t in cfg.attention_layers] or [0] * cfg.n_layers


def _divisor_near(n: int, target: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - target))
