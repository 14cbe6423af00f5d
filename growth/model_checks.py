"""Checks of a model config that run before anything is built (growth.model re-exports them)."""

from __future__ import annotations

from growth.config import Activation, AttentionKind, ModelConfig, Norm, check_choice


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
    if "local" in layers and cfg.window_size <= 0:
        raise ConfigError(f"model.window_size={cfg.window_size}: local blocks need a positive window")


def block_windows(cfg: ModelConfig) -> list[int]:
    """Attention window of each block: 0 for global (causal) attention."""
    return [cfg.window_size if t == "local" else 0 for t in cfg.attention_layers] or [0] * cfg.n_layers


def _divisor_near(n: int, target: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - target))
