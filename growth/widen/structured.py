"""structured_non_clone: a function-preserving widening that is not a clone (SPEC section 3).

Three steps, each exact on the function (docs/strategies.md derives them):
1. fold every norm's gain and bias into the layers that read it (small model, unit gains);
2. widen every space with a map M, M M^T = k I: the residual stream with Q = [I ... I] P (P random
   orthogonal fixing the all-ones direction), each wide head's q/k and v spaces with [I ... I] times
   a block-diagonal of per-head rotations, the MLP hidden units by cloning;
3. split the MLP output rows asymmetrically, W / k + R_a with sum_a R_a = 0.
The moments follow the gradient's linear maps through `core.map_moments`.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy.linalg import block_diag

from growth.config import Family, GrowthConfig, ModelConfig
from growth.models import family as family_lib
from growth.models import llama
from growth.widen import core
from growth.widen.core import RESID, GrowthError, Term

GAIN_FLOOR = 1e-12  # |gain| below this has no inverse: the moments of its rows are reset


def random_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Haar-random orthogonal (n, n) in float64."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))[None, :]


def orthogonal_fixing_ones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random orthogonal P with 1 P = 1 (so P^T 1 = 1 too): a rotation of the mean-free subspace."""
    basis, _ = np.linalg.qr(np.concatenate([np.ones((n, 1)), np.eye(n)[:, : n - 1]], axis=1))
    basis[:, 0] = np.abs(basis[:, 0])  # the all-ones direction, positive
    inner = np.eye(n)
    inner[1:, 1:] = random_orthogonal(rng, n - 1)
    return basis @ inner @ basis.T


def rope_rotation(rng: np.random.Generator, hd: int) -> np.ndarray:
    """Independent 2-D rotations (no reflections) of each RoPE frequency pair (j, j + hd/2): the
    orthogonal maps of a head's q/k space that commute with every rotary rotation."""
    half = hd // 2
    angle = rng.uniform(0.0, 2 * np.pi, half)
    r = np.zeros((hd, hd))
    j = np.arange(half)
    r[j, j] = r[j + half, j + half] = np.cos(angle)
    r[j, j + half], r[j + half, j] = np.sin(angle), -np.sin(angle)
    return r


def structured_maps(cfg: ModelConfig, k: int, rng: np.random.Generator) -> dict[str, core.AxisMap]:
    """The embedding matrix of every space (each M M^T = c I, c its growth factor)."""
    d, hd = cfg.d_model, cfg.d_model // cfg.n_heads
    maps: dict[str, core.AxisMap] = {RESID: core.clone_matrix(d, k) @ orthogonal_fixing_ones(rng, k * d)}
    if cfg.family == Family.llama:
        return maps | _llama_head_maps(cfg, k, rng)
    for i in range(cfg.n_layers):
        qk, v = (  # wide head c*H + h gets its own rotation of its q/k space and of its v space
            core.clone_matrix(d, k) @ block_diag(*[random_orthogonal(rng, hd) for _ in range(k * cfg.n_heads)])
            for _ in range(2)
        )
        maps |= {f"q{i}": qk, f"k{i}": qk, f"v{i}": v, f"o{i}": v, f"mlp{i}": core.Tile(cfg.mlp_ratio * d, k)}
    return maps


def _llama_head_maps(cfg: ModelConfig, k: int, rng: np.random.Generator) -> dict[str, core.AxisMap]:
    """Per wide kv head a RoPE-commuting rotation of its k space and any rotation of its v space; each
    wide query head takes its kv head's rotations (q.k and the attention output pair them)."""
    hd, heads, kv = cfg.d_model // cfg.n_heads, cfg.n_heads, llama.kv_heads(cfg)
    fac = core.factors(cfg, k)
    maps: dict[str, core.AxisMap] = {}
    for i in range(cfg.n_layers):
        c_kv = fac[f"k{i}"]  # 1 for a multi-query model: its one kv head stays one
        group = (k * heads) // (c_kv * kv)  # wide query heads per wide kv head
        rot_k = [rope_rotation(rng, hd) for _ in range(c_kv * kv)]
        rot_v = [random_orthogonal(rng, hd) for _ in range(c_kv * kv)]
        maps[f"k{i}"] = core.clone_matrix(kv * hd, c_kv) @ block_diag(*rot_k)
        maps[f"v{i}"] = core.clone_matrix(kv * hd, c_kv) @ block_diag(*rot_v)
        maps[f"q{i}"] = core.clone_matrix(heads * hd, k) @ block_diag(*[rot_k[h // group] for h in range(k * heads)])
        maps[f"o{i}"] = core.clone_matrix(heads * hd, k) @ block_diag(*[rot_v[h // group] for h in range(k * heads)])
        maps[f"mlp{i}"] = core.Tile(llama.hidden(cfg), k)
    return maps


def _readers(cfg: ModelConfig) -> dict[str, list[str]]:
    """Norm prefix -> the kernels that read it (growth.models.family names them per family)."""
    names = family_lib.record(cfg).norm_readers
    out = {}
    for i in range(cfg.n_layers):
        b = f"blocks/{i}"
        out[f"{b}/ln1"] = [f"{b}/attn/{m}" for m in names["ln1"]]
        out[f"{b}/ln2"] = [f"{b}/mlp/{m}" for m in names["ln2"]]
    out["ln_f"] = ["lm_head"]
    return out


def fold(cfg: ModelConfig, params: dict, mu: dict, nu: dict) -> tuple[dict, dict[str, list[Term]], set[str]]:
    """Fold norm gains/biases into their readers: (folded params, gradient terms, reset paths).

    Reader W -> diag(gamma) W, bias -> beta W + b; gain -> 1, bias -> 0. ln_f under LayerNorm keeps
    its bias as beta / gamma (lm_head has no bias to take beta W). The folded model's gradients are
    exact linear maps of the small ones: G_W_new = diag(1/gamma) (G_W - beta^T G_b), G_b_new = G_b,
    G_beta_new = G_beta * gamma. The gain's new gradient has no map once rotated: reset.
    """
    new = dict(params)
    terms = {p: [Term(mu[p], nu[p])] for p in params}
    reset = set()
    for norm, readers in _readers(cfg).items():
        gamma = params[f"{norm}/scale"]
        beta = params.get(f"{norm}/bias")
        live = np.abs(gamma) > GAIN_FLOOR
        inv = np.where(live, 1.0 / np.where(live, gamma, 1.0), 0.0)
        for r in readers:
            w = params[f"{r}/kernel"]
            new[f"{r}/kernel"] = gamma[:, None] * w
            terms[f"{r}/kernel"] = [Term(mu[f"{r}/kernel"], nu[f"{r}/kernel"], (np.diag(inv), None))]
            if beta is not None and f"{r}/bias" in params:
                new[f"{r}/bias"] = beta @ w + params[f"{r}/bias"]
                b_mu, b_nu = mu[f"{r}/bias"][None], nu[f"{r}/bias"][None]
                terms[f"{r}/kernel"].append(Term(b_mu, b_nu, ((-beta * inv)[None, :], None)))
        new[f"{norm}/scale"] = np.ones_like(gamma)
        reset.add(f"{norm}/scale")
        if beta is not None:
            if norm == "ln_f":
                if not live.all() and np.any(beta[~live] != 0):
                    raise GrowthError(
                        "structured_non_clone: ln_f has a zero gain with a nonzero bias, which cannot be folded"
                        " into lm_head (it has no bias); use another candidate for this state"
                    )
                new[f"{norm}/bias"] = beta * inv
            else:
                new[f"{norm}/bias"] = np.zeros_like(beta)
            terms[f"{norm}/bias"] = [Term(mu[f"{norm}/bias"], nu[f"{norm}/bias"], (np.diag(gamma),))]
    return new, terms, reset


def mlp_split(cfg: ModelConfig, params: dict, k: int, scale: float, rng: np.random.Generator) -> dict:
    """Per layer, the (k F, D) rows R_a (copy-major) added to the cloned proj rows W / k; sum_a R_a = 0.

    R_a = scale * sqrt(k / (k - 1)) * (W / k) (O_a - mean_b O_b) with O_a random orthogonal (D, D): each
    copy's row is the cloned row turned by its own structured perturbation, of expected norm
    scale * |W / k|; the copies of a hidden unit see equal inputs, so the sum is lossless.
    """
    out = {}
    for i in range(cfg.n_layers):
        w = params[f"blocks/{i}/mlp/proj/kernel"] / k
        rots = np.stack([random_orthogonal(rng, cfg.d_model) for _ in range(k)])
        rots = (rots - rots.mean(0)) * np.sqrt(k / (k - 1)) * scale
        out[f"blocks/{i}/mlp/proj/kernel"] = np.concatenate([w @ r for r in rots], axis=0)
    return out


def widen(
    cfg: ModelConfig, params: dict, mu: dict, nu: dict, spec: GrowthConfig, k: int, key: jax.Array
) -> tuple[dict, dict, dict, dict[str, core.AxisMap]]:
    """(wide params, mu, nu, space maps) of structured_non_clone, all float64 numpy by path."""
    if cfg.tie_embeddings:
        raise GrowthError(
            "structured_non_clone does not support tied embeddings: ln_f's gain cannot be folded into an"
            " embedding that is also the token writer; set model.tie_embeddings=false or use exact_copy,"
            " perturbative or asymmetric_reset"
        )
    rng = core.numpy_rng(key)
    maps = structured_maps(cfg, k, rng)
    folded, terms, reset = fold(cfg, params, mu, nu)
    split = mlp_split(cfg, params, k, spec.structured.mlp_split_scale, rng)
    w_params, w_mu, w_nu = {}, {}, {}
    fac = core.factors(cfg, k)
    for path, w in folded.items():
        w_params[path] = core.map_param(path, w, maps, fac)
        if path in split:  # rows already widened: only the output (residual) axis is mapped
            w_params[path] = w_params[path] + core.map_axes(split[path], [None, maps[RESID]])
        w_mu[path], w_nu[path] = core.map_moments(path, terms[path], maps, fac)
        if path in reset:  # wide norm gains: exactly 1 (1 Q = 1), moments reset
            w_params[path] = np.ones_like(w_params[path])
            w_mu[path], w_nu[path] = np.zeros_like(w_mu[path]), np.zeros_like(w_nu[path])
    return w_params, w_mu, w_nu, maps
