"""zero_pad: place, do not copy (SPEC section 3b; the idea of muNet's width expansion and of the "zeros"
warm start of Mallik et al. 2026, our construction).

Each small tensor goes in the leading block of its wide tensor, undivided and not duplicated; every new
entry is 0, or `init_scale` times a fresh wide init. Adam's moments are placed the same way (new
entries 0); every counter is carried. Not preserving under LayerNorm / RMSNorm: the normaliser's
statistics see the new (zero) dims. The gap is measured at lag 0, never assumed.
"""

from __future__ import annotations

import jax
import numpy as np

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.training import train
from growth.widen import assemble
from growth.widen.core import Grown, GrowthError


def check(spec: GrowthConfig) -> None:
    if not spec.zero_pad.init_scale >= 0:
        raise GrowthError(f"growth.zero_pad.init_scale={spec.zero_pad.init_scale} must be >= 0 (0 = exact zeros)")


def zero_pad(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """W' = [[W, 0], [0, 0]] (or new entries init_scale * fresh init); moments placed, new entries 0."""
    start = assemble.start_placing("zero_pad", small, small_cfg, spec, check)
    scale = spec.zero_pad.init_scale
    cfg = start.cfg
    base = assemble.fresh(cfg, key) if scale > 0 else {p: np.zeros(s) for p, s in assemble.wide_shapes(cfg).items()}
    zeros = {p: np.zeros(np.shape(w)) for p, w in base.items()}
    w_params = assemble.place_all(start.params, {p: scale * w for p, w in base.items()})
    w_mu, w_nu = assemble.place_all(start.mu, zeros), assemble.place_all(start.nu, zeros)
    return assemble.finish_placing(small, small_cfg, start, spec, optim_cfg, w_params, w_mu, w_nu)
