"""What every subcommand starts from: the composed config, the model timed and a compiled step."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.common import PRESETS, compose
from benchmarks.jax_parts import fresh, wide_model
from growth.training import train


def setup(args):
    """(config, the model timed: small or --wide, batch size) of the preset and --override."""
    cfg = compose(PRESETS[args.preset].overrides + args.override)
    model_cfg = wide_model(cfg) if args.wide else cfg.model
    batch_size = args.batch or cfg.runner.batch_size
    return cfg, model_cfg, batch_size


def compiled_step(cfg, model_cfg, pool: int, loss: train.LossFn | None = None):
    """(step, state): growth's train step with `loss`, vmapped over `pool` stacked copies when pool > 0."""
    graphdef, tx, state = fresh(cfg, model_cfg)
    if pool:
        step = train.jit_pool_step(graphdef, tx, cfg.optim, "vmap", loss=loss)
        state = jax.tree.map(lambda x: jnp.stack([x] * pool), state)
    else:
        step = train.jit_train_step(graphdef, tx, cfg.optim, loss=loss)
    return step, state


def machine_info_brief() -> str:
    """One line: the CPU, its cores and the instruction-set flags it has."""
    from benchmarks.common import cpu_flags, machine_info

    m = machine_info()
    return f"{m['cpu']}, {m['cores']} cores, " + ",".join(f for f, on in cpu_flags().items() if on)
