"""What a step costs, in tokens and model FLOPs: the units of the speedup (SPEC section 5b).

Training FLOPs per token = 6 x (parameters of every matrix the forward pass multiplies by, the
unembedding included, embedding lookups excluded) + 6 x n_layers x context x d_model for the attention
scores and their weighting (the usual 2N + 2 n_layer n_ctx d forward count, times 3 for the backward).
Counted from the model's own parameter shapes, so any family and growth factor is covered.
"""

from __future__ import annotations

import dataclasses
import math

import jax

from growth.config import Config, ModelConfig
from growth.models import gpt as model_lib
from growth.widen import wide_config

LOOKUP = "embedding"  # nnx.Embed tables (token, position): read by index, no multiply per token


def _is_lookup(path: tuple) -> bool:
    return str(getattr(path[-1], "key", path[-1])) == LOOKUP


def matmul_params(model_cfg: ModelConfig) -> int:
    """Parameters in the matrices the forward pass multiplies by (2-D and larger, lookups excluded)."""
    _, params = model_lib.abstract(dataclasses.replace(model_cfg, dropout=0.0))
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if len(leaf.shape) >= 2 and not _is_lookup(path):
            total += math.prod(leaf.shape)
    if model_cfg.tie_embeddings:  # the tied table is also the unembedding matrix
        total += model_cfg.vocab_size * model_cfg.d_model
    return total


def train_flops_per_token(model_cfg: ModelConfig) -> float:
    """Forward + backward FLOPs of one training token."""
    attention = model_cfg.n_layers * model_cfg.context * model_cfg.d_model
    return 6.0 * (matmul_params(model_cfg) + attention)


def cost_fields(cfg: Config) -> dict:
    """The cost record of a grow cell (written on its `_pool` wall_time row, docs/results_schema.md)."""
    tokens_per_step = cfg.runner.batch_size * cfg.model.context
    return {
        "k": cfg.growth.k,
        "tokens_per_step": tokens_per_step,
        "pretrain_tokens": cfg.growth_step * cfg.pretrain.batch_size * cfg.model.context,
        "flops_per_token_small": train_flops_per_token(cfg.model),
        "flops_per_token_wide": train_flops_per_token(wide_config(cfg.model, cfg.growth)),
    }
