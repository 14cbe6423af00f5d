"""The width-growth candidates: pure functions (small state, configs, spec, key) -> Grown.

Each has the signature `(small, small_cfg, spec, optim_cfg, key) -> Grown`; `grow` checks the spec
and the state once, then dispatches by name through CANDIDATES.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from growth import model as model_lib
from growth import optimizer, train
from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.interop import surgery
from growth.widen import assemble, core, structured
from growth.widen.bert2bert_aki import bert2bert_aki
from growth.widen.core import RESID, Grown, GrowthError, UnknownCandidate
from growth.widen.ligo import ligo
from growth.widen.msg import msg
from growth.widen.net2net import net2net
from growth.widen.shrink_perturb import shrink_perturb
from growth.widen.zero_pad import zero_pad

Candidate = Callable[[train.TrainState, ModelConfig, GrowthConfig, OptimConfig, jax.Array], Grown]


def _small_numpy(small: train.TrainState):
    adam = small.opt_state[optimizer.ADAM]
    return core.to_numpy(small.params), core.to_numpy(adam.mu), core.to_numpy(adam.nu)


_clone = assemble.clone_state  # exact_copy's params, moments and space maps


def _assemble(small, small_cfg, spec, optim_cfg, k, params, mu, nu, embed, reset_mask=None, rewarm=0) -> Grown:
    cfg = core.wide_config(small_cfg, spec)
    template = small.params
    # The small tree has the wide tree's keys; unflatten_like only borrows its structure.
    p = core.unflatten_like(template, params)
    state = core.carried(
        small,
        p,
        core.wide_opt_state(
            small,
            p,
            core.unflatten_like(template, mu),
            core.unflatten_like(template, nu),
            optimizer.make_optimizer(optim_cfg),
            spec,
            core.direction_scale(small, spec, k),
            core.clip_weight(small, optim_cfg, k),
            reset_mask,
            rewarm,
        ),
    )
    return Grown(state=state, model_cfg=cfg, embed_map=jnp.asarray(core.dense(embed), jnp.float32))


def exact_copy(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Symmetric clone: W' = W[g, g] / c_in, mu' = mu[g, g] / c_out, nu' = nu[g, g] / c_out^2."""
    del key
    k = core.check_k(spec.k)
    params, mu, nu, maps = _clone(small, small_cfg, k)
    return _assemble(small, small_cfg, spec, optim_cfg, k, params, mu, nu, maps[RESID])


def perturbative(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """exact_copy plus noise on every kernel, std rms(W') / snr; antithetic noise sums to 0 over copies.

    Only kernels (tensors that read a widened input axis) are perturbed: there the copies of an input
    unit see equal activations, so noise that sums to zero over them leaves the function unchanged.
    """
    k = core.check_k(spec.k)
    params, mu, nu, maps = _clone(small, small_cfg, k)
    rng = core.numpy_rng(key)
    for path in sorted(p for p in params if core.c_in(p, k) > 1):
        w = params[path]
        noise = rng.standard_normal((k, w.shape[0] // k) + w.shape[1:])
        if spec.perturbative.noise == "antithetic":
            noise = (noise - noise.mean(0)) * np.sqrt(k / (k - 1))  # zero-sum over copies, unit variance
        rms = np.sqrt(np.mean(w * w))
        params[path] = w + noise.reshape(w.shape) * rms / spec.perturbative.snr
    return _assemble(small, small_cfg, spec, optim_cfg, k, params, mu, nu, maps[RESID])


def asymmetric_reset(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """exact_copy weights; the first copy of every unit keeps its moments, the added copies start at 0."""
    del key
    k = core.check_k(spec.k)
    params, mu, nu, maps = _clone(small, small_cfg, k)
    mask = {p: (core.unit_copy(p, w.shape, k) > 0).astype(np.float64) for p, w in params.items()}
    mu = {p: m * (1 - mask[p]) for p, m in mu.items()}
    nu = {p: v * (1 - mask[p]) for p, v in nu.items()}
    return _assemble(
        small, small_cfg, spec, optim_cfg, k, params, mu, nu, maps[RESID], mask, spec.asymmetric_reset.rewarm_steps
    )


def structured_non_clone(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Folded norms, rotated residual stream and heads, asymmetric MLP split (growth/widen/structured.py)."""
    k = core.check_k(spec.k)
    params, mu, nu = _small_numpy(small)
    params, mu, nu, maps = structured.widen(small_cfg, params, mu, nu, spec, k, key)
    return _assemble(small, small_cfg, spec, optim_cfg, k, params, mu, nu, maps[RESID])


def scratch_wide(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Fresh init of the wide model, zero moments, every counter 0; step and dropout key carried.

    The learning-rate policy applies to it as to every wide model (assemble.width_policy): under
    lr_correction=fan_in each tensor reading a widened space has its Adam direction scaled by 1 / k.
    """
    cfg = core.wide_config(small_cfg, spec)
    _, params = model_lib.build(cfg, key)
    tx = optimizer.make_optimizer(optim_cfg)
    opt = tx.init(params)
    k = core.check_k(spec.k)
    scale, weight = assemble.width_policy(sorted(core.flatten(params)), spec, optim_cfg, k, None)
    per_tensor = lambda values: jax.tree_util.tree_map_with_path(
        lambda p, _: jnp.asarray(values[core.path_str(p)], jnp.float32), params
    )
    opt[optimizer.DIRECTION] = opt[optimizer.DIRECTION]._replace(scale=per_tensor(scale))
    opt[optimizer.CLIP] = optimizer.ClipState(weight=per_tensor(weight))
    state = core.carried(small, params, opt)
    return Grown(state=state, model_cfg=cfg, embed_map=None)


def continue_small(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """The small state unchanged (new buffers, so it may be donated)."""
    del spec, optim_cfg, key
    state = jax.tree.map(jnp.array, small)
    return Grown(state=state, model_cfg=small_cfg, embed_map=jnp.eye(small_cfg.d_model, dtype=jnp.float32))


def deepen_identity(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Depth growth (docs/surgery.md): new identity blocks, width unchanged, no inherited-subspace map."""
    state, cfg = surgery.deepen_identity(small, small_cfg, spec, optim_cfg, key)
    return Grown(state=state, model_cfg=cfg, embed_map=None)


def deepen_copy(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Depth growth (docs/surgery.md): each new block copies its neighbour, width unchanged."""
    state, cfg = surgery.deepen_copy(small, small_cfg, spec, optim_cfg, key)
    return Grown(state=state, model_cfg=cfg, embed_map=None)


CANDIDATES: dict[str, Candidate] = {
    "exact_copy": exact_copy,
    "perturbative": perturbative,
    "asymmetric_reset": asymmetric_reset,
    "structured_non_clone": structured_non_clone,
    "scratch_wide": scratch_wide,
    "continue_small": continue_small,
    "deepen_identity": deepen_identity,
    "deepen_copy": deepen_copy,
    "net2net": net2net,
    "zero_pad": zero_pad,
    "shrink_perturb": shrink_perturb,
    "msg": msg,
    "bert2bert_aki": bert2bert_aki,
    "ligo": ligo,
}
NEEDS_BATCHES = {"ligo"}  # candidates that train before their continuation: grow(batches=...) feeds them


def grow(
    name: str,
    small: train.TrainState,
    small_cfg: ModelConfig,
    spec: GrowthConfig,
    optim_cfg: OptimConfig,
    key: jax.Array,
    batches: np.ndarray | None = None,
) -> Grown:
    """The full wide train state of candidate `name` grown from `small`.

    `batches` (n, B, T + 1): pretraining batches from before the growth step, for the candidates in
    NEEDS_BATCHES (ligo); the others never read them.
    """
    if name not in CANDIDATES:
        raise UnknownCandidate(f"unknown growth candidate {name!r}; valid names: {', '.join(CANDIDATES)}")
    core.check_spec(spec)
    core.check_state(small, small_cfg)
    extra = {"batches": batches} if name in NEEDS_BATCHES else {}
    out = CANDIDATES[name](small, small_cfg, spec, optim_cfg, key, **extra)
    if not isinstance(out, Grown):
        raise GrowthError(f"candidate {name!r} returned {type(out).__name__}, not a Grown")
    return out
