"""Mixed precision: model.compute_dtype=bfloat16 keeps float32 master weights and Adam state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.models import gpt as model_lib
from growth.training import optimizer, train
from growth.widen import grow

OPTIM = OptimConfig(lr=1e-2, warmup_steps=2, decay_steps=20, clip_norm=0.0)
F32 = ModelConfig(vocab_size=64, d_model=16, n_heads=2, n_layers=2, context=8, init_std=0.2)
BF16 = dataclasses.replace(F32, compute_dtype="bfloat16")
# Preservation under bf16 (docs/scaling.md): the exact copy's logits equal the small model's to
# within this absolute error on O(1) logits (measured: 0.0 here at k = 2: each
# duplicated unit's products round alike); float32 gives ~1e-6.
BF16_PRESERVATION_TOL = 6e-2


def _logits(graphdef, params, tokens):
    return jax.jit(lambda p, t: model_lib.apply(graphdef, p, t).astype(jnp.float32))(params, tokens)


def _trained(cfg: ModelConfig):
    graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    tx = optimizer.make_optimizer(OPTIM)
    state = train.init_state(params, tx, jax.random.PRNGKey(1))
    step = jax.jit(train.make_train_step(graphdef, tx, OPTIM))
    for t in range(2):
        state, metrics = step(state, jax.random.randint(jax.random.PRNGKey(t), (4, 9), 0, 64))
    return graphdef, state, float(metrics["loss"])


def test_bf16_computes_in_bf16_and_keeps_float32_master_weights():
    graphdef, state, loss = _trained(BF16)
    assert np.isfinite(loss)
    adam = state.opt_state[optimizer.ADAM]
    for x in jax.tree.leaves(state.params) + jax.tree.leaves(adam.mu) + jax.tree.leaves(adam.nu):
        assert x.dtype == jnp.float32
    tokens = jnp.zeros((2, 8), jnp.int32)
    h, w = jax.jit(lambda p, t: model_lib.apply_features(graphdef, p, t))(state.params, tokens)
    assert h.dtype == jnp.bfloat16 and w.dtype == jnp.bfloat16
    f32_graphdef, _ = model_lib.abstract(F32)
    h32, _ = jax.jit(lambda p, t: model_lib.apply_features(f32_graphdef, p, t))(state.params, tokens)
    assert h32.dtype == jnp.float32
    # The same weights give nearly the same logits in either dtype.
    a = _logits(graphdef, state.params, tokens)
    b = _logits(f32_graphdef, state.params, tokens)
    assert float(jnp.abs(b).max()) > 0.5 and float(jnp.abs(a - b).max()) < 0.1


def test_growth_preserves_within_the_bf16_tolerance():
    graphdef, state, _ = _trained(BF16)
    tokens = jax.random.randint(jax.random.PRNGKey(5), (4, 8), 0, 64)
    ref = _logits(graphdef, state.params, tokens)
    grown = grow("exact_copy", state, BF16, GrowthConfig(k=2), OPTIM, jax.random.PRNGKey(3))
    assert grown.model_cfg.compute_dtype == "bfloat16"
    wide_graphdef, _ = model_lib.abstract(grown.model_cfg)
    diff = float(jnp.abs(_logits(wide_graphdef, grown.state.params, tokens) - ref).max())
    print(f"bf16 exact_copy k=2: max logit diff {diff:.2e} (logits up to {float(jnp.abs(ref).max()):.2f})")
    assert diff < BF16_PRESERVATION_TOL
    f32_graphdef, _ = model_lib.abstract(F32)
    wide32, _ = model_lib.abstract(dataclasses.replace(grown.model_cfg, compute_dtype="float32"))
    ref32 = _logits(f32_graphdef, state.params, tokens)
    assert float(jnp.abs(_logits(wide32, grown.state.params, tokens) - ref32).max()) < 1e-4


def test_float32_identity_is_unchanged_by_the_field():
    assert "compute_dtype" not in model_lib.identity(F32)
    assert model_lib.identity(BF16)["compute_dtype"] == "bfloat16"
