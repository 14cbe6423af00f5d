"""net2net on the llama family (SPEC 3b, 2b): lag-0 preservation under GQA, MQA and Qwen2's q/k/v
biases, non-uniform replication that keeps the query-to-kv grouping, and moments equal to a real
optimizer step of the wide model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from growth.config import GrowthConfig
from growth.training import optimizer
from growth.widen import grow, net2net, trees
from growth.widen.trees import flatten
from tests.test_llama import small_state
from tests.test_widen import OPTIM, _close, _gradient, logits, run

HD = 4  # head_dim of tests.test_llama's models (d_model 16, 4 heads)


@pytest.mark.parametrize("name", ["gqa_bias", "mqa_bias"])  # gqa, mqa, mha_bias, tied: test_llama's PRESERVING
@pytest.mark.parametrize("k", [2, 3])
def test_net2net_preserves_llama_with_qkv_biases(name, k):
    cfg, small = small_state(name)
    ref = logits(cfg, small.params)
    assert float(jnp.abs(ref).max()) > 0.5  # O(1) logits: the tolerance means something
    g = grow("net2net", small, cfg, GrowthConfig(k=k), OPTIM, jax.random.PRNGKey(3))
    assert g.model_cfg.n_kv_heads == (1 if cfg.n_kv_heads == 1 else k * cfg.n_kv_heads)
    diff = float(jnp.abs(logits(g.model_cfg, g.state.params) - ref).max())
    print(f"{name} k={k} net2net: max logit diff {diff:.2e}")
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_net2net_llama_replicates_non_uniformly_and_keeps_the_grouping(name):
    cfg, small = small_state(name)
    n_kv, group = cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
    head_counts = set()  # the distinct replication counts of a small attention unit (kv group / query head)
    for k in (2, 3):
        key = jax.random.PRNGKey(3)
        maps = net2net.unit_maps(cfg, k, trees.numpy_rng(key))
        for i in range(cfg.n_layers):
            hidden = maps[f"mlp{i}"]
            counts = np.bincount(hidden, minlength=24)
            assert counts.min() >= 1 and counts.max() > counts.min(), counts  # not exact_copy's uniform k
            np.testing.assert_array_equal(hidden[:24], np.arange(24))
            q_heads, kv_heads = maps[f"q{i}"][::HD] // HD, maps[f"k{i}"][::HD] // HD
            if n_kv == 1:  # the one kv head stays one; the query heads are replicated
                np.testing.assert_array_equal(kv_heads, [0])
            else:  # wide query head j reads wide kv head j // group, the copy of its source's kv head
                assert kv_heads.size == k * n_kv
                np.testing.assert_array_equal(q_heads // group, kv_heads[np.arange(q_heads.size) // group])
            assert q_heads.size == k * cfg.n_heads
            unit = q_heads if n_kv == 1 else kv_heads
            head_counts.add(tuple(np.bincount(unit)))
        g = grow("net2net", small, cfg, GrowthConfig(k=k), OPTIM, key)
        params, small_params = flatten(g.state.params), flatten(small.params)
        hidden, heads = maps["mlp0"], maps["o0"]
        for module, used in (("mlp/proj", hidden), ("attn/o", heads)):
            # the outgoing rows of each small unit's copies add up to the small row (per residual copy)
            wide, ref = (np.asarray(p[f"blocks/0/{module}/kernel"]) for p in (params, small_params))
            summed = np.zeros_like(ref)
            np.add.at(summed, used, wide[:, : cfg.d_model])
            np.testing.assert_allclose(summed, ref, atol=1e-6, err_msg=module)
        gate, up = (np.asarray(params[f"blocks/0/mlp/{m}/kernel"]) for m in ("gate", "up"))
        for wide, m in ((gate, "gate"), (up, "up")):  # incoming side: both follow g, the residual rows / k
            small_w = np.asarray(small_params[f"blocks/0/mlp/{m}/kernel"])
            np.testing.assert_allclose(wide[: cfg.d_model] * k, small_w[:, hidden], rtol=1e-6, atol=1e-7)
    assert any(len(set(c)) > 1 for c in head_counts), head_counts  # some attention unit has more copies


def _moments(name, k):
    """(predicted wide mu, nu, real wide g, g^2): net2net applied to the small gradient vs a real step."""
    cfg, small = small_state(name)
    after, _ = run(cfg, small, 50, 1)
    g, g2 = _gradient(small.opt_state[optimizer.ADAM], after.opt_state[optimizer.ADAM])
    opt = type(small.opt_state)(small.opt_state)
    opt[optimizer.ADAM] = opt[optimizer.ADAM]._replace(mu=g, nu=g2)  # small moments := gradient, gradient^2
    spec = GrowthConfig(k=k)
    pred = grow("net2net", small.replace(opt_state=opt), cfg, spec, OPTIM, jax.random.PRNGKey(4))
    wide = grow("net2net", small, cfg, spec, OPTIM, jax.random.PRNGKey(4))
    wide_after, _ = run(wide.model_cfg, wide.state, 50, 1)  # the same batch
    real_g, real_g2 = _gradient(wide.state.opt_state[optimizer.ADAM], wide_after.opt_state[optimizer.ADAM])
    p = pred.state.opt_state[optimizer.ADAM]
    return [{k_: np.asarray(v, np.float64) for k_, v in flatten(t).items()} for t in (p.mu, p.nu, real_g, real_g2)]


@pytest.mark.parametrize("name,k", [("gqa", 2), ("mqa", 3), ("gqa_bias", 3), ("mqa_bias", 2)])
def test_net2net_llama_moments_equal_a_real_step_of_the_wide_model(name, k):
    mu, nu, g, g2 = _moments(name, k)
    floor_g, floor_g2 = (1e-3 * max(np.abs(x).max() for x in t.values()) for t in (g, g2))
    for path in mu:
        assert _close(mu[path], g[path], floor_g), f"mu {path}"
        assert _close(nu[path], g2[path], floor_g2, rtol=1e-3), f"nu {path}"
