import jax
import jax.numpy as jnp
import numpy as np
import pytest

from growth.config import ModelConfig
from growth.models import gpt as model_lib


def _cfg(**kw):
    base = dict(vocab_size=64, d_model=16, n_heads=2, n_layers=2, context=12)
    return ModelConfig(**(base | kw))


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("tied", [False, True])
def test_shapes_finite_and_param_count(norm, tied):
    cfg = _cfg(norm=norm, tie_embeddings=tied)
    graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 12), 0, 64)
    logits = model_lib.apply(graphdef, params, tokens)
    assert logits.shape == (3, 12, 64)
    assert bool(jnp.isfinite(logits).all())
    jitted = jax.jit(lambda p, t: model_lib.apply(graphdef, p, t))(params, tokens)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(logits), atol=1e-5)
    assert model_lib.param_count(params) == model_lib.count_params(cfg)
    assert ("lm_head" in params) == (not tied)


def test_causality_later_token_does_not_change_earlier_logits():
    cfg = _cfg()
    graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 0, 64)
    changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % 64)
    a = model_lib.apply(graphdef, params, tokens)
    b = model_lib.apply(graphdef, params, changed)
    np.testing.assert_array_equal(np.asarray(a[:, :7]), np.asarray(b[:, :7]))
    assert float(jnp.abs(a[:, 7:] - b[:, 7:]).max()) > 1e-6


def test_causality_through_gradients():
    cfg = _cfg()
    graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (1, 12), 0, 64)

    def out_at(emb, pos):
        p = jax.tree.map(lambda x: x, params)
        p["tok_embed"]["embedding"] = emb
        return model_lib.apply(graphdef, p, tokens)[0, pos].sum()

    emb = params["tok_embed"]["embedding"]
    grad = jax.grad(out_at)(emb, 5)
    # Tokens after position 5 must receive no gradient from position 5's output.
    later = set(np.asarray(tokens[0, 6:]).tolist()) - set(np.asarray(tokens[0, :6]).tolist())
    for tok in later:
        assert float(jnp.abs(grad[tok]).max()) == 0.0


def test_dropout_only_with_key():
    cfg = _cfg(dropout=0.5)
    graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    tokens = jnp.zeros((2, 12), jnp.int32)
    a = model_lib.apply(graphdef, params, tokens)
    b = model_lib.apply(graphdef, params, tokens)
    c = model_lib.apply(graphdef, params, tokens, dropout_key=jax.random.PRNGKey(3))
    d = model_lib.apply(graphdef, params, tokens, dropout_key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(d))
    assert float(jnp.abs(a - c).max()) > 1e-4


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_drops_at_its_rate_and_keeps_the_mean(rate):
    """Drop fraction within 4 standard errors of the rate; kept units rescaled so the mean stays 1."""
    x = jnp.ones((7, 8, 33, 33))  # odd element count: the last random word is half used
    y = model_lib.Dropout(rate)(x, deterministic=False, rngs=jax.random.PRNGKey(1))
    dropped = float((y == 0).mean())
    assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / x.size)
    assert float(y.mean()) == pytest.approx(1.0, abs=4 * np.sqrt(rate / (1 - rate) / x.size))
    np.testing.assert_allclose(np.asarray(y[y != 0]), 1 / (1 - round(rate * 2**16) / 2**16), rtol=1e-6)
    other = model_lib.Dropout(rate)(x, deterministic=False, rngs=jax.random.PRNGKey(2))
    assert bool((other != y).any())  # the mask comes from the key
    np.testing.assert_array_equal(np.asarray(model_lib.Dropout(rate)(x, deterministic=True, rngs=None)), np.asarray(x))


def test_bad_head_count_is_a_clear_error():
    with pytest.raises(model_lib.ConfigError, match="n_heads=3 does not divide model.d_model=16"):
        model_lib.build(_cfg(n_heads=3), jax.random.PRNGKey(0))


def test_unknown_norm_is_a_clear_error():
    with pytest.raises(model_lib.ConfigError, match="model.norm='batchnorm'"):
        model_lib.build(_cfg(norm="batchnorm"), jax.random.PRNGKey(0))


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_both_families_check_the_context_and_split_dropout_keys_in_one_place(family):
    """layers.CausalLM.dropout_keys: one sequence-length check and one key per block, for every family."""
    from flax import nnx

    from growth.models.layers import ConfigError

    extra = dict(family="llama", norm="rmsnorm", n_kv_heads=1) if family == "llama" else {}
    m = model_lib.module(_cfg(dropout=0.1, **extra), nnx.Rngs(0))
    tokens = jnp.zeros((2, 13), jnp.int32)  # context is 12
    with pytest.raises(ConfigError, match="sequence length 13 exceeds model.context=12"):
        m(tokens)
    deterministic, keys = m.dropout_keys(tokens[:, :12], False, jax.random.PRNGKey(3))
    assert not deterministic and len(keys) == 3  # the embeddings' key and one per block
    assert len({tuple(np.asarray(k).ravel()) for k in keys}) == 3  # distinct
    assert m.dropout_keys(tokens[:, :12], True, jax.random.PRNGKey(3)) == (True, [None, None, None])
