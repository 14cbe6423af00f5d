"""The wide train state of a candidate from its float64 tensors, and the shared pieces of the SPEC
section 3b candidates: families they grow, placement of a small tensor in its wide block, fresh inits.

The learning-rate policy is a property of the optimizer, not of a candidate (`width_policy`): under
`lr_correction=fan_in` every wide model scales the Adam direction of each tensor that reads a widened
space by 1 / its input-width ratio, and `clip_mode=clone_consistent` weights each tensor's squared
gradient norm by (output-width ratio) / (input-width ratio).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from growth.config import ClipMode, GrowthConfig, LrCorrection, ModelConfig, OptimConfig
from growth.models import gpt as model_lib
from growth.models import masks
from growth.training import optimizer, train
from growth.widen import core, trees, wide_state
from growth.widen.core import Grown, GrowthError

FAMILIES = ("gpt",)  # model families the SPEC 3b candidates grow, unless a candidate names its own


def require_family(name: str, cfg: ModelConfig, families: tuple[str, ...] = FAMILIES) -> None:
    """One clear line for a model family a candidate cannot grow (`families`: the ones it grows)."""
    family = str(getattr(cfg, "family", "gpt"))
    if family not in families:
        raise GrowthError(
            f"candidate {name!r} grows the {', '.join(families)} family only, not model.family={family!r};"
            " use exact_copy, perturbative or asymmetric_reset for this model"
        )


def clone_state(small: train.TrainState, small_cfg: ModelConfig, k: int):
    """exact_copy's params and moments (float64 by path) and its space maps."""
    adam = small.opt_state[optimizer.ADAM]
    params, mu, nu = trees.to_numpy(small.params), trees.to_numpy(adam.mu), trees.to_numpy(adam.nu)
    maps, fac = core.clone_maps(small_cfg, k), core.factors(small_cfg, k)
    w_params = {p: core.map_param(p, w, maps, fac) for p, w in params.items()}
    w_moments = {p: core.map_moments(p, [core.Term(mu[p], nu[p])], maps, fac) for p in params}
    return w_params, {p: m for p, (m, _) in w_moments.items()}, {p: v for p, (_, v) in w_moments.items()}, maps


def placed_config(small_cfg: ModelConfig, spec: GrowthConfig, growth_masks: bool = False) -> ModelConfig:
    """The wide config of a candidate that places (does not copy) the small tensors: a tied model keeps
    its logit_scale, since the placed embedding reads the small dims undivided."""
    cfg = core.wide_config(small_cfg, spec)
    return dataclasses.replace(cfg, logit_scale=small_cfg.logit_scale, growth_masks=growth_masks)


def wide_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    return {p: tuple(s.shape) for p, s in trees.flatten(model_lib.abstract(cfg)[1]).items()}


def fresh(cfg: ModelConfig, key: jax.Array) -> dict[str, np.ndarray]:
    """A fresh init of the model, float64 by path."""
    return trees.to_numpy(model_lib.build(cfg, key)[1])


def place(small: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """`wide` with `small` written into its leading block (small units are the first ones of each axis)."""
    out = np.array(wide, np.float64)
    out[tuple(slice(0, n) for n in small.shape)] = small
    return out


def new_entries(small_shape: tuple[int, ...], wide_shape: tuple[int, ...]) -> np.ndarray:
    """1.0 on every entry of the wide tensor outside the placed small block."""
    return 1.0 - place(np.ones(small_shape), np.zeros(wide_shape))


def placed_map(d: int, k: int) -> np.ndarray:
    """[I 0] (d, k d): small residual dim a is wide dim a."""
    return np.eye(d, k * d)


@dataclasses.dataclass(frozen=True)
class Placing:
    """What a placing candidate (zero_pad, shrink_perturb, msg) starts from."""

    cfg: ModelConfig  # the wide config (placed_config)
    k: int  # the width factor
    params: dict[str, np.ndarray]  # the small parameters, float64 by path
    mu: dict[str, np.ndarray]  # the small Adam first moments, float64 by path
    nu: dict[str, np.ndarray]  # the small Adam second moments, float64 by path


def start_placing(
    name: str,
    small: train.TrainState,
    small_cfg: ModelConfig,
    spec: GrowthConfig,
    check: Callable[[GrowthConfig], None],
    growth_masks: bool = False,
    families: tuple[str, ...] = FAMILIES,
) -> Placing:
    """The family (one of `families`), the candidate's own options (`check`) and k checked, then the wide
    config and small state."""
    require_family(name, small_cfg, families)
    check(spec)
    k = core.check_k(spec.k)
    adam = small.opt_state[optimizer.ADAM]
    params, mu, nu = trees.to_numpy(small.params), trees.to_numpy(adam.mu), trees.to_numpy(adam.nu)
    return Placing(placed_config(small_cfg, spec, growth_masks), k, params, mu, nu)


def place_all(small: dict[str, np.ndarray], templates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each small tensor written into the leading block of its wide template (the template's paths)."""
    return {p: place(small[p], t) for p, t in templates.items()}


def finish_placing(
    small: train.TrainState,
    small_cfg: ModelConfig,
    placing: Placing,
    spec: GrowthConfig,
    optim_cfg: OptimConfig,
    params: dict[str, np.ndarray],
    mu: dict[str, np.ndarray],
    nu: dict[str, np.ndarray],
    reset_adam_count: bool = False,
) -> Grown:
    """The wide state of a placing candidate: its embedding map is [I 0] (small dim a is wide dim a)."""
    embed = placed_map(small_cfg.d_model, placing.k)
    return build_state(small, small_cfg, placing.cfg, spec, optim_cfg, params, mu, nu, embed, reset_adam_count)


def width_policy(
    shapes: Mapping[str, tuple[int, ...]],
    spec: GrowthConfig,
    optim_cfg: OptimConfig,
    fac: core.Factors,
    base: train.TrainState | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(direction scale, clip weight) of every wide tensor (by its wide shape): `base`'s (1 for a fresh
    run) times the width ratios.

    `fac` is the growth factor of every space (`core.factors` of the small config): a multi-query
    model's kv spaces keep factor 1, so its k / v kernels read a k-times wider input but write an
    unwidened output. The rule is exact_copy's (`wide_state.direction_scale`, `wide_state.clip_weight`)."""
    base_scale = trees.flatten(base.opt_state[optimizer.DIRECTION].scale) if base is not None else {}
    base_weight = trees.flatten(base.opt_state[optimizer.CLIP].weight) if base is not None else {}
    fan_in = spec.lr_correction == LrCorrection.fan_in
    consistent = optim_cfg.clip_mode == ClipMode["clone_consistent"]
    scale, weight = {}, {}
    for path in sorted(shapes):
        s, w = float(base_scale.get(path, 1.0)), float(base_weight.get(path, 1.0))
        if not masks.is_mask(path):  # masks get no gradient: their entries do not matter
            small_shape = _small_shape(path, shapes[path], fac)
            s *= wide_state.fan_in_factor(path, small_shape, fac, optim_cfg) if fan_in else 1
            w *= core.c_out(path, fac) / core.c_in(path, fac) if consistent else 1
        scale[path], weight[path] = s, w
    return scale, weight


def _small_shape(path: str, wide_shape: tuple[int, ...], fac: core.Factors) -> tuple[int, ...]:
    """The small shape of a wide tensor: each axis divided by its space's growth factor."""
    return tuple(n // core.factor(space, fac) for n, space in zip(wide_shape, core.layout(path).spaces, strict=True))


def build_state(
    small: train.TrainState,
    small_cfg: ModelConfig,
    wide_cfg: ModelConfig,
    spec: GrowthConfig,
    optim_cfg: OptimConfig,
    params: dict[str, np.ndarray],
    mu: dict[str, np.ndarray],
    nu: dict[str, np.ndarray],
    embed: np.ndarray | None,
    reset_adam_count: bool = False,
    growth_tokens: int = 0,
    growth_losses: tuple[float, ...] = (),
) -> Grown:
    """The full wide train state: params and moments as given, counters carried (Adam's reset if asked),
    direction scale and clip weights from `width_policy` with the small config's per-space factors."""
    k = core.check_k(spec.k)
    template = model_lib.abstract(wide_cfg)[1]
    shapes = wide_shapes(wide_cfg)
    for path, shape in shapes.items():
        for what, tree in (("parameter", params), ("mu", mu), ("nu", nu)):
            if tuple(np.shape(tree[path])) != shape:
                raise AssertionError(f"wide {what} {path}: shape {np.shape(tree[path])}, expected {shape}")
    p = trees.unflatten_like(template, params)
    scale, weight = width_policy(shapes, spec, optim_cfg, core.factors(small_cfg, k), small)
    opt = wide_state.wide_opt_state(
        small,
        p,
        trees.unflatten_like(template, mu),
        trees.unflatten_like(template, nu),
        optimizer.make_optimizer(optim_cfg),
        spec,
        scale,
        weight,
    )
    if reset_adam_count:
        opt[optimizer.ADAM] = opt[optimizer.ADAM]._replace(count=jnp.zeros((), jnp.int32))
    return Grown(
        state=wide_state.carried(small, p, opt),
        model_cfg=wide_cfg,
        embed_map=None if embed is None else jnp.asarray(embed, jnp.float32),
        growth_tokens=growth_tokens,
        growth_losses=growth_losses,
    )
