"""bert2bert_aki: advanced knowledge init (SPEC section 3b; the idea of bert2BERT's AKI, Chen et al.
2022, our construction for a pre-norm GPT).

exact_copy, except that in block l the added copies (copy index >= 1) of every head and MLP hidden
unit take their incoming weights and biases (q, k, v, fc columns) from block l + 1 (the last block
from itself); the outgoing weights (o, proj rows) are block l's, split as exact_copy. The added
copies therefore compute the next block's features, and the function is not preserved (the gap is
measured). Moments are mapped from the same source tensors as the weights (exact_copy's rule on the
source block's mu and nu); counters carried.
"""

from __future__ import annotations

import jax

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.training import train
from growth.widen import assemble, core
from growth.widen.core import Grown

INCOMING = ("attn/q", "attn/k", "attn/v", "mlp/fc")  # modules whose output columns are a unit's incoming weights


def source_block(layer: int, n_layers: int) -> int:
    """The block whose incoming weights block `layer`'s added copies take."""
    return min(layer + 1, n_layers - 1)


def take_from_next(tensors: dict, n_layers: int, k: int) -> dict:
    """Added copies' columns (the output axis's copies 1..k-1) of every incoming tensor from the next block."""
    out = dict(tensors)
    for layer in range(n_layers):
        src = source_block(layer, n_layers)
        for module in INCOMING:
            for leaf in ("kernel", "bias"):
                path, src_path = f"blocks/{layer}/{module}/{leaf}", f"blocks/{src}/{module}/{leaf}"
                x, y = tensors[path].copy(), tensors[src_path]
                n = x.shape[-1] // k
                x[..., n:] = y[..., n:]
                out[path] = x
    return out


def bert2bert_aki(
    small: train.TrainState, small_cfg: ModelConfig, spec: GrowthConfig, optim_cfg: OptimConfig, key: jax.Array
) -> Grown:
    """exact_copy with the added copies' incoming weights (and their moments) from the next block."""
    del key
    assemble.require_family("bert2bert_aki", small_cfg)
    k = core.check_k(spec.k)
    params, mu, nu, maps = assemble.clone_state(small, small_cfg, k)
    n = small_cfg.n_layers
    w_params, w_mu, w_nu = (take_from_next(t, n, k) for t in (params, mu, nu))
    cfg = core.wide_config(small_cfg, spec)
    return assemble.build_state(
        small, small_cfg, cfg, spec, optim_cfg, w_params, w_mu, w_nu, core.dense(maps[core.RESID])
    )
