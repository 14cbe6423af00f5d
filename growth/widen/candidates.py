"""The width-growth candidates: pure functions (small state, configs, spec, key) -> Grown.

Each has the signature `(small, small_cfg, spec, optim_cfg, key) -> Grown` and one entry in the
candidate registry (growth/widen/registry.py), at the bottom of this file; `grow` checks the spec and
the state once, then dispatches by name through the registry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from growth.config import (
    AsymmetricResetConfig,
    DepthConfig,
    GrowthConfig,
    ModelConfig,
    Noise,
    OptimConfig,
    PerturbativeConfig,
    StructuredConfig,
    check_choice,
)
from growth.models import gpt as model_lib
from growth.training import optimizer, train
from growth.widen import (
    assemble,
    core,
    depth,
    registry,
    structured,
    trees,
    wide_state,
)
from growth.widen.core import RESID, Grown, GrowthError, UnknownCandidate
from growth.widen.registry import Candidate, register


def _small_numpy(small: train.TrainState):
    adam = small.opt_state[optimizer.ADAM]
    return trees.to_numpy(small.params), trees.to_numpy(adam.mu), trees.to_numpy(adam.nu)


_clone = assemble.clone_state  # exact_copy's params, moments and space maps


def _assemble(small, small_cfg, spec, optim_cfg, k, params, mu, nu, embed, reset_mask=None, rewarm=0) -> Grown:
    cfg = core.wide_config(small_cfg, spec)
    template = small.params
    # The small tree has the wide tree's keys; unflatten_like only borrows its structure.
    p = trees.unflatten_like(template, params)
    state = wide_state.carried(
        small,
        p,
        wide_state.wide_opt_state(
            small,
            p,
            trees.unflatten_like(template, mu),
            trees.unflatten_like(template, nu),
            optimizer.make_optimizer(optim_cfg),
            spec,
            wide_state.direction_scale(small, spec, core.factors(small_cfg, k), optim_cfg),
            wide_state.clip_weight(small, optim_cfg, core.factors(small_cfg, k)),
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
    rng = trees.numpy_rng(key)
    fac = core.factors(small_cfg, k)
    for path in sorted(p for p in params if core.c_in(p, fac) > 1):
        w = params[path]  # axis 0 is the input axis of every kernel, widened by k
        noise = rng.standard_normal((k, w.shape[0] // k) + w.shape[1:])
        if spec.perturbative.noise == Noise.antithetic:
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
    fac = core.factors(small_cfg, k)
    mask = {p: (core.unit_copy(p, w.shape, fac) > 0).astype(np.float64) for p, w in params.items()}
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
    scale, weight = assemble.width_policy(
        {p: tuple(x.shape) for p, x in trees.flatten(params).items()}, spec, optim_cfg, core.factors(small_cfg, k), None
    )
    per_tensor = lambda values: jax.tree_util.tree_map_with_path(
        lambda p, _: jnp.asarray(values[trees.path_str(p)], jnp.float32), params
    )
    opt[optimizer.DIRECTION] = opt[optimizer.DIRECTION]._replace(scale=per_tensor(scale))
    opt[optimizer.CLIP] = optimizer.ClipState(weight=per_tensor(weight))
    state = wide_state.carried(small, params, opt)
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
    state, cfg = depth.deepen_identity(small, small_cfg, spec, optim_cfg, key)
    return Grown(state=state, model_cfg=cfg, embed_map=None)


def deepen_copy(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Depth growth (docs/surgery.md): each new block copies its neighbour, width unchanged."""
    state, cfg = depth.deepen_copy(small, small_cfg, spec, optim_cfg, key)
    return Grown(state=state, model_cfg=cfg, embed_map=None)


def _check_perturbative(spec: GrowthConfig) -> None:
    try:
        check_choice("growth.perturbative.noise", spec.perturbative.noise, Noise)
    except ValueError as e:
        raise GrowthError(str(e)) from None
    if not spec.perturbative.snr > 0:
        raise GrowthError(f"growth.perturbative.snr={spec.perturbative.snr} must be > 0 (e.g. 10.0)")


def _check_asymmetric_reset(spec: GrowthConfig) -> None:
    if int(spec.asymmetric_reset.rewarm_steps) < 0:
        raise GrowthError(f"growth.asymmetric_reset.rewarm_steps={spec.asymmetric_reset.rewarm_steps} must be >= 0")


def _check_structured(spec: GrowthConfig) -> None:
    if not spec.structured.mlp_split_scale >= 0:
        raise GrowthError(f"growth.structured.mlp_split_scale={spec.structured.mlp_split_scale} must be >= 0")


# ---------------------------------------------------------------- the built-in entries (SPEC section 3)

# fmt: off
# One `register` per candidate; its fields are documented in growth/widen/registry.py (Candidate).
register(Candidate(
    name="exact_copy", build=exact_copy, order=10, color="C0", preserving=True,
    description="symmetric clone of weights and Adam moments, counters carried",
))
register(Candidate(
    name="perturbative", build=perturbative, order=20, color="C1", preserving=True,
    description="exact_copy plus noise on every kernel (antithetic by default: still preserving)",
    options=PerturbativeConfig, options_field="perturbative", check=_check_perturbative,
))
register(Candidate(
    name="asymmetric_reset", build=asymmetric_reset, order=30, color="C2", preserving=True,
    description="exact_copy weights; the added copies of every unit start with zero Adam moments",
    options=AsymmetricResetConfig, options_field="asymmetric_reset", check=_check_asymmetric_reset,
))
register(Candidate(
    name="structured_non_clone", build=structured_non_clone, order=40, color="C3", preserving=True,
    description="function-preserving but not a clone: rotated residual stream and heads, split MLP rows",
    options=StructuredConfig, options_field="structured", check=_check_structured,
))
register(Candidate(
    name="scratch_wide", build=scratch_wide, order=50, color="C4", preserving=False,
    description="baseline: a fresh wide model, zero moments, fresh schedule",
))
register(Candidate(
    name="continue_small", build=continue_small, order=60, color="C5", preserving=True,
    description="baseline: the small model continued unchanged (the reference of every comparison)",
    reference=True, widens=False,
))
register(Candidate(
    name="deepen_identity", build=deepen_identity, order=100, color="C6", preserving=True,
    description="depth growth: new blocks with zero output projections, width unchanged (docs/surgery.md)",
    options=DepthConfig, options_field="depth", in_default_pool=False, widens=False,
))
register(Candidate(
    name="deepen_copy", build=deepen_copy, order=110, color="C7", preserving=False,
    description="depth growth: each new block copies its neighbour, width unchanged (docs/surgery.md)",
    options=DepthConfig, options_field="depth", in_default_pool=False, widens=False,
))
# fmt: on


def check_options(name: str, spec: GrowthConfig) -> None:
    """The growth options every candidate reads, and `name`'s own (its registry entry's check)."""
    core.check_spec(spec)
    entry = registry.get(name)
    if entry is not None and entry.check is not None:
        entry.check(spec)


def _check_optimizer(small: train.TrainState, optim_cfg: OptimConfig) -> None:
    """The small state's optimizer state must be the one optim_cfg builds: Adam's moments are not Muon's."""
    want = type(jax.eval_shape(optimizer.make_optimizer(optim_cfg).init, small.params)[optimizer.ADAM])
    got = type(small.opt_state[optimizer.ADAM])
    if got is not want:
        trained = "muon" if got.__name__ == "MuonAdamState" else "adamw"
        raise GrowthError(
            f"optim.name={optim_cfg.name} but the small state was trained with {trained}; grow it under"
            f" optim.name={trained}, or pretrain a base run with optim.name={optim_cfg.name}"
        )


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

    `batches` (n, B, T + 1): pretraining batches from before the growth step, for the entries with
    `pregrowth_batches` (ligo); the others never read them.
    """
    entry = registry.get(name)
    if entry is None:
        raise UnknownCandidate(f"unknown growth candidate {name!r}; valid names: {', '.join(registry.names())}")
    check_options(name, spec)
    core.check_state(small, small_cfg)
    _check_optimizer(small, optim_cfg)
    extra = {"batches": batches} if entry.pregrowth_batches else {}
    out = entry.build(small, small_cfg, spec, optim_cfg, key, **extra)
    if not isinstance(out, Grown):
        raise GrowthError(f"candidate {name!r} returned {type(out).__name__}, not a Grown")
    return out
