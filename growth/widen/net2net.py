"""net2net: random replication (SPEC section 3b; the idea of Net2WiderNet, Chen et al. 2016, our
construction for a pre-norm transformer).

Every space but the residual stream is widened by a seeded random map g: wide unit j < n is small
unit j (every small unit kept once), each added unit copies a uniformly drawn small unit. A unit is
a hidden unit in the MLP (llama: its gate and up columns alike) and, in attention, a kv group: a kv
head with the query heads that read it (HF's rule, query head h reads kv head h // (H / K)), whose
q, k, v columns (and q/k/v biases) move together, so the grouping and each head's attention pattern
are its source's (RoPE acts within a head). In the GPT family and under MHA a group is one head.
A multi-query llama keeps its one kv head (SPEC 2b): its query heads are replicated by g and every
one reads it. The residual stream stays uniformly cloned (g(i) = i mod d, k copies each): LayerNorm
and RMSNorm statistics are preserved only with equal counts.

With c(a) the number of wide copies of small unit a, and c_j = c(g(j)) for wide unit j:
  W'[i, j] = W[g(i), g(j)] / c_i on every input axis i (the readers of a unit share its output),
  mu'[i, j] = mu[g(i), g(j)] / c_j and nu' = nu[g, g] / c_j^2 on every output axis j,
which is exact_copy's rule with c -> c(g): the gradient of a copy is its source's divided by c_j.
Optional noise on the added units' incoming weights (default 0, preserving).
"""

from __future__ import annotations

import jax
import numpy as np

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.training import optimizer, train
from growth.widen import assemble, core, trees
from growth.widen.core import RESID, Grown, GrowthError

FAMILIES = ("gpt", "llama")  # the model families net2net grows


def check(spec: GrowthConfig) -> None:
    if not spec.net2net.noise >= 0:
        raise GrowthError(f"growth.net2net.noise={spec.net2net.noise} must be >= 0 (0 = function preserving)")


def replication(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """g (k n,): g[j] = j for j < n, the rest drawn uniformly from 0..n-1."""
    return np.concatenate([np.arange(n), rng.integers(0, n, size=(k - 1) * n)])


def unit_maps(cfg: ModelConfig, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The map g of every space, per wide coordinate (a head's columns follow its head)."""
    dims, fac, hd = core.space_dims(cfg), core.factors(cfg, k), cfg.d_model // cfg.n_heads
    cols = lambda heads: (heads[:, None] * hd + np.arange(hd)[None, :]).reshape(-1)
    maps = {RESID: np.arange(k * cfg.d_model) % cfg.d_model}
    for i in range(cfg.n_layers):
        n_q, n_kv = dims[f"q{i}"] // hd, dims[f"k{i}"] // hd
        if fac[f"k{i}"] == 1:  # multi-query: the one kv head stays, its readers are replicated
            kv, q = np.arange(n_kv), replication(n_q, k, rng)
        else:  # kv groups replicated whole: wide query head j reads wide kv head j // (n_q / n_kv)
            kv = replication(n_kv, k, rng)
            q = (kv[:, None] * (n_q // n_kv) + np.arange(n_q // n_kv)[None, :]).reshape(-1)
        maps[f"q{i}"] = maps[f"o{i}"] = cols(q)
        maps[f"k{i}"] = maps[f"v{i}"] = cols(kv)
        maps[f"mlp{i}"] = replication(dims[f"mlp{i}"], k, rng)
    return maps


def widen_tensor(path: str, x: np.ndarray, g: dict[str, np.ndarray], power: int, side: str) -> np.ndarray:
    """x[g, g] divided by c_j^power along each `side` ("input" or "output") axis."""
    lay = core.layout(path)
    for axis, space in enumerate(lay.spaces):
        if space is None:
            continue
        gs = g[space]
        counts = np.bincount(gs, minlength=gs.max() + 1)[gs].astype(np.float64)
        x = np.take(x, gs, axis=axis)
        if (axis in lay.input_axes) == (side == "input"):
            shape = [1] * x.ndim
            shape[axis] = -1
            x = x / counts.reshape(shape) ** power
    return x


def net2net(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """Random replication of heads (kv groups) and MLP units, uniform residual clone; clone-consistent moments."""
    assemble.require_family("net2net", small_cfg, FAMILIES)
    check(spec)
    k = core.check_k(spec.k)
    rng = trees.numpy_rng(key)
    g = unit_maps(small_cfg, k, rng)
    adam = small.opt_state[optimizer.ADAM]
    params, mu, nu = trees.to_numpy(small.params), trees.to_numpy(adam.mu), trees.to_numpy(adam.nu)
    w_params = {p: widen_tensor(p, w, g, 1, "input") for p, w in params.items()}
    w_mu = {p: widen_tensor(p, m, g, 1, "output") for p, m in mu.items()}
    w_nu = {p: widen_tensor(p, v, g, 2, "output") for p, v in nu.items()}
    if spec.net2net.noise > 0:
        for path in sorted(w_params):
            lay = core.layout(path)
            space = lay.spaces[-1]
            if path.endswith("/kernel") and space is not None and space != RESID:  # q, k, v, fc, gate, up
                w = w_params[path]
                added = np.arange(w.shape[-1]) >= params[path].shape[-1]  # an MQA model's k / v: none
                noise = rng.standard_normal(w.shape) * added * np.sqrt(np.mean(w * w)) * spec.net2net.noise
                w_params[path] = w + noise
    cfg = core.wide_config(small_cfg, spec)
    return assemble.build_state(
        small, small_cfg, cfg, spec, optim_cfg, w_params, w_mu, w_nu, core.clone_matrix(small_cfg.d_model, k)
    )
