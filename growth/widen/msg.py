"""msg: masked structural growth (SPEC section 3b; the idea of Yao et al. 2024, our construction).

The small tensors are placed in the leading block of a fresh wide init (as zero_pad, but the new
entries keep their fresh values). New units (residual dims, heads, MLP hidden units) enter through
masks (growth/models/masks.py) that start at 0 and rise linearly to 1 over `ramp_steps` train steps. Every
writer's output and every norm's output is multiplied by the residual mask, and the norms take their
statistics over the mask-weighted dims, so at mask 0 the new residual dims are exactly 0, the norms
see the small model's dims only, new heads and hidden units add nothing, and the wide function is the
small model's whatever the new parameters hold. It is preserving and not a clone.

The llama family (SPEC 2b) grows the same way: the wide config multiplies the kv heads by k (MQA
keeps its one), the small query and kv heads are the leading ones, so query head h < H still reads
kv head h // (H / K) and the new query heads (masked) read the new kv heads (or MQA's one); the new
SwiGLU units are masked after silu(gate) * up, and the RMSNorms take their mean square over the
mask-weighted dims divided by the mask sum.

Moments: old entries keep theirs, new entries 0. Counters carried. The masks are parameters that no
gradient moves, ramped by the train step, so checkpoints hold them and a resumed run resumes the ramp.
"""

from __future__ import annotations

import jax
import numpy as np

from growth.config import Family, GrowthConfig, ModelConfig, OptimConfig
from growth.models import masks
from growth.models.checks import hidden
from growth.training import train
from growth.widen import assemble
from growth.widen.core import Grown, GrowthError

FAMILIES = ("gpt", "llama")  # the model families msg grows


def check(spec: GrowthConfig) -> None:
    steps = spec.msg.ramp_steps
    if isinstance(steps, bool) or int(steps) != steps or int(steps) < 1:
        raise GrowthError(f"growth.msg.ramp_steps={steps!r} must be an integer >= 1 (e.g. growth.msg.ramp_steps=8)")


def _hidden(cfg: ModelConfig) -> int:
    """The MLP hidden width: mlp_ratio * d_model (gpt), the SwiGLU width (llama)."""
    return hidden(cfg) if cfg.family == Family.llama else cfg.mlp_ratio * cfg.d_model


def initial_masks(small_cfg: ModelConfig, wide_shapes: dict[str, tuple[int, ...]], ramp_steps: int) -> dict:
    """Mask parameters at growth: 1 on the small model's units, 0 on the new ones; the ramp length."""
    n_small = {masks.RESID: small_cfg.d_model, masks.HEADS: small_cfg.n_heads, masks.HIDDEN: _hidden(small_cfg)}
    out = {}
    for path, shape in wide_shapes.items():
        name = path.rsplit("/", 1)[-1]
        if name == masks.RAMP:
            out[path] = np.asarray(float(ramp_steps))
        elif masks.is_mask(path):
            out[path] = (np.arange(shape[0]) < n_small[name]).astype(np.float64)
    return out


def msg(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Small tensors placed in a fresh wide init; new units masked (mask 0 -> 1 over ramp_steps)."""
    start = assemble.start_placing("msg", small, small_cfg, spec, check, growth_masks=True, families=FAMILIES)
    init = assemble.fresh(start.cfg, key)
    mask_params = initial_masks(small_cfg, assemble.wide_shapes(start.cfg), int(spec.msg.ramp_steps))
    w_params, w_mu, w_nu = dict(mask_params), {}, {}
    for path, w in init.items():
        zeros = np.zeros(w.shape)
        if path not in mask_params:
            w_params[path] = assemble.place(start.params[path], w)
        w_mu[path] = zeros if path in mask_params else assemble.place(start.mu[path], zeros)
        w_nu[path] = zeros if path in mask_params else assemble.place(start.nu[path], zeros)
    return assemble.finish_placing(small, small_cfg, start, spec, optim_cfg, w_params, w_mu, w_nu)
