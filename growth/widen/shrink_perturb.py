"""shrink_perturb: shrink, zero-pad, perturb (SPEC section 3b; the idea of Ash and Adams 2020 and of
Mallik et al. 2024, our construction).

W' = shrink * zero_pad(W) + perturb * W_init, W_init a fresh init of the wide model (the same formula
on every tensor, norm gains included). The optimizer starts afresh: mu = nu = 0 and Adam's count 0
(its bias correction restarts with the moments); the schedule's count and the step are carried, so
the learning rate goes on where the small run was. The defaults come from a sweep on the smoke
preset (docs/decisions.md).
"""

from __future__ import annotations

import jax
import numpy as np

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.training import train
from growth.widen import assemble
from growth.widen.core import Grown, GrowthError


def check(spec: GrowthConfig) -> None:
    opts = spec.shrink_perturb
    if not opts.shrink >= 0 or not opts.perturb >= 0 or opts.shrink == opts.perturb == 0:
        raise GrowthError(
            f"growth.shrink_perturb.shrink={opts.shrink}, perturb={opts.perturb}: both must be >= 0 and not"
            " both 0 (e.g. shrink=0.8 perturb=0.2)"
        )


def shrink_perturb(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """W' = shrink * zero_pad(W) + perturb * W_init; moments 0, Adam count 0, schedule carried."""
    start = assemble.start_placing("shrink_perturb", small, small_cfg, spec, check)
    init = assemble.fresh(start.cfg, key)
    opts = spec.shrink_perturb
    zeros = {p: np.zeros(w.shape) for p, w in init.items()}
    placed = assemble.place_all(start.params, zeros)
    w_params = {p: opts.shrink * placed[p] + opts.perturb * w for p, w in init.items()}
    return assemble.finish_placing(
        small, small_cfg, start, spec, optim_cfg, w_params, zeros, dict(zeros), reset_adam_count=True
    )
