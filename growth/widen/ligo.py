"""ligo: a learned linear growth operator (SPEC section 3b; the idea of LiGO, Wang et al. 2023, our
construction for width only).

One expansion matrix M_s (d_s, k d_s) per widened space s (the residual stream, each block's q/k and
v spaces, each block's MLP hidden units), initialised at exact_copy's map [I ... I] plus Gaussian
noise of std `init_noise`. The wide weights are the small ones mapped by the expansions on every
widened axis, W' = W x_axis M_s, divided by k on each input axis: exactly core.map_param with dense
maps, so at init (noise 0) ligo is exact_copy. The matrices are trained by Adam for `steps` steps on
the wide model's training loss with the small weights frozen, on pretraining batches from before
the growth step (the small model has seen them; the continuation's batches are never touched). Then
W' is materialised and continues as an ordinary wide model. Moments: core.map_moments with the
learned maps (mu mapped linearly, nu by the elementwise-square approximation), counters carried.
The tokens of the operator's batches are reported as growth_tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.models import gpt as model_lib
from growth.training import optimizer, train
from growth.widen import assemble, core, trees
from growth.widen.core import RESID, Grown, GrowthError, Term


def check(spec: GrowthConfig) -> None:
    """ligo's options (its registry entry's check)."""
    opts = spec.ligo
    if isinstance(opts.steps, bool) or int(opts.steps) != opts.steps or int(opts.steps) < 1:
        raise GrowthError(f"growth.ligo.steps={opts.steps!r} must be an integer >= 1 (e.g. growth.ligo.steps=16)")
    if not opts.lr > 0 or not opts.init_noise >= 0:
        raise GrowthError(
            f"growth.ligo.lr={opts.lr} must be > 0 and growth.ligo.init_noise={opts.init_noise} >= 0 (e.g. 1e-3, 0.01)"
        )


def check_batches(batches: np.ndarray | None) -> None:
    if batches is None or len(batches) < 1:
        raise GrowthError(
            "ligo trains its growth operator on pretraining batches before the growth step and got none;"
            " grow it through growth.experiment.pool.build_pool (which draws them) or pass batches="
        )


def tied(space: str) -> str:
    """The space whose map `space` shares: a block's k space reads q's map, its o space v's (one q/k
    map and one v map per block, as before the spaces were named per projection)."""
    return {"k": "q", "o": "v"}.get(space[0], space[0]) + space[1:] if space[1:].isdigit() else space


def init_maps(cfg: ModelConfig, k: int, noise: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """exact_copy's map of every untied space plus N(0, noise^2) entries."""
    dims = {s: d for s, d in core.space_dims(cfg).items() if tied(s) == s}
    return {s: core.clone_matrix(d, k) + noise * rng.standard_normal((d, k * d)) for s, d in dims.items()}


def materialize(small: dict[str, jax.Array], maps: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
    """W' of every tensor (jnp, differentiable in the maps): core.map_param with dense maps."""
    out = {}
    for path, w in small.items():
        for axis, space in enumerate(core.layout(path).spaces):
            if space is not None:
                w = jnp.moveaxis(jnp.tensordot(w, maps[tied(space)], axes=([axis], [0])), -1, axis)
        out[path] = w / core.c_in(path, k)
    return out


def train_operator(
    small_cfg: ModelConfig, wide_cfg: ModelConfig, small_params, maps: dict, batches: np.ndarray, lr: float, k: int
) -> tuple[dict[str, np.ndarray], list[float]]:
    """(trained maps, loss at each step before its update): Adam on the maps, small weights frozen."""
    graphdef, template = model_lib.abstract(wide_cfg)
    flat_small = {p: jnp.asarray(w, jnp.float32) for p, w in trees.flatten(small_params).items()}
    tx = optax.adam(lr)

    def loss(m, batch):
        wide = materialize(flat_small, m, k)
        params = jax.tree_util.tree_map_with_path(lambda p, _: wide[trees.path_str(p)], template)
        return train.loss_fn(graphdef, params, batch, None)

    @jax.jit
    def step(m, opt, batch):
        value, grads = jax.value_and_grad(loss)(m, batch)
        updates, opt = tx.update(grads, opt, m)
        return optax.apply_updates(m, updates), opt, value

    m = {s: jnp.asarray(x, jnp.float32) for s, x in maps.items()}
    opt = tx.init(m)
    losses = []
    for batch in batches:
        m, opt, value = step(m, opt, jnp.asarray(batch))
        losses.append(float(value))
    return {s: np.asarray(x, np.float64) for s, x in m.items()}, losses


def ligo(
    small: train.TrainState,
    small_cfg: ModelConfig,
    spec: GrowthConfig,
    optim_cfg: OptimConfig,
    key: jax.Array,
    batches: np.ndarray | None = None,
) -> Grown:
    """Expansion matrices trained on pre-growth batches, then materialised; moments by the learned maps."""
    assemble.require_family("ligo", small_cfg)
    check(spec)
    check_batches(batches)
    assert batches is not None
    k = core.check_k(spec.k)
    wide_cfg = core.wide_config(small_cfg, spec)
    maps0 = init_maps(small_cfg, k, spec.ligo.init_noise, trees.numpy_rng(key))
    trained, losses = train_operator(small_cfg, wide_cfg, small.params, maps0, batches, spec.ligo.lr, k)
    maps: dict[str, core.AxisMap] = {s: trained[tied(s)] for s in core.space_dims(small_cfg)}
    adam = small.opt_state[optimizer.ADAM]
    params, mu, nu = trees.to_numpy(small.params), trees.to_numpy(adam.mu), trees.to_numpy(adam.nu)
    w_params = {p: core.map_param(p, w, maps, k) for p, w in params.items()}
    moments = {p: core.map_moments(p, [Term(mu[p], nu[p])], maps, k) for p in params}
    tokens = int(np.prod(np.shape(batches)[:2])) * (np.shape(batches)[2] - 1)
    return assemble.build_state(
        small,
        small_cfg,
        wide_cfg,
        spec,
        optim_cfg,
        w_params,
        {p: m for p, (m, _) in moments.items()},
        {p: v for p, (_, v) in moments.items()},
        trained[RESID],
        growth_tokens=tokens,
        growth_losses=tuple(losses),
    )
