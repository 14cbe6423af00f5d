"""msg on the llama family (SPEC 3b, 2b): lag 0 with fresh (42-filled) new parameters under GQA and
MQA, the masked RMSNorm at mask 1 is the plain one, the masks ramp linearly with no update, and the
ramp resumes exactly across a checkpoint."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from growth.config import GrowthConfig
from growth.models import gpt as model_lib
from growth.models import masks
from growth.widen import GrowthError, grow
from growth.widen.trees import flatten, unflatten_like
from tests.test_llama import small_state
from tests.test_widen import OPTIM, logits, run
from tests.test_widen_pool import _fill42, assert_ramp_resumes


def _msg(small, cfg, spec, key=3):
    return grow("msg", small, cfg, spec, OPTIM, jax.random.PRNGKey(key))


@pytest.mark.parametrize("name,k", [("gqa", 2), ("gqa", 3), ("mqa", 2), ("mqa", 3), ("mha_bias", 2), ("tied", 2)])
def test_msg_preserves_llama_with_new_parameters_at_42(name, k, monkeypatch):
    cfg, small = small_state(name)
    ref = logits(cfg, small.params)
    assert float(jnp.abs(ref).max()) > 0.5  # O(1) logits: the tolerance means something
    _fill42(monkeypatch)
    g = _msg(small, cfg, GrowthConfig(k=k))
    wide, p = g.model_cfg, flatten(g.state.params)
    n_kv = 1 if cfg.n_kv_heads == 1 else k * cfg.n_kv_heads
    assert (wide.d_model, wide.n_heads, wide.n_kv_heads, wide.mlp_hidden) == (16 * k, 4 * k, n_kv, 24 * k)
    d, hd, f = cfg.d_model, cfg.d_model // cfg.n_heads, cfg.mlp_hidden
    q, kk = np.asarray(p["blocks/0/attn/q/kernel"]), np.asarray(p["blocks/0/attn/k/kernel"])
    gate = np.asarray(p["blocks/1/mlp/gate/kernel"])
    small_k = np.asarray(flatten(small.params)["blocks/0/attn/k/kernel"])
    np.testing.assert_array_equal(kk[:d, : small_k.shape[1]], small_k)  # the small kv heads lead
    # the new parameters really are the fresh template's (42), not clones
    assert (q[d:] == 42).all() and (q[:, cfg.n_heads * hd :] == 42).all() and (kk[d:] == 42).all()
    assert (gate[:, f:] == 42).all() and (np.asarray(p["ln_f/scale"])[d:] == 42).all()
    if n_kv > 1:  # GQA: new kv heads, read only by the new (masked) query heads
        assert (kk[:, cfg.n_kv_heads * hd :] == 42).all()
    m = {path: np.asarray(x) for path, x in p.items() if masks.is_mask(path)}
    assert m["mask_resid"].tolist() == [1.0] * d + [0.0] * (k - 1) * d
    assert m["blocks/1/attn/mask_heads"].tolist() == [1.0] * cfg.n_heads + [0.0] * (k - 1) * cfg.n_heads
    assert m["blocks/1/mlp/mask_hidden"].tolist() == [1.0] * f + [0.0] * (k - 1) * f
    diff = float(jnp.abs(logits(wide, g.state.params) - ref).max())
    print(f"llama {name} k={k} msg: max logit diff {diff:.2e}")
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_masked_llama_at_mask_one_is_the_plain_model(name):
    """Masks all 1: the mask-weighted RMSNorm and the head / hidden masks change nothing."""
    cfg, small = small_state(name)
    masked = dataclasses.replace(cfg, growth_masks=True)
    template = model_lib.abstract(masked)[1]
    shapes = {path: s.shape for path, s in flatten(template).items()}
    ones = {path: np.ones(s, np.float32) for path, s in shapes.items() if masks.is_mask(path)}
    params = unflatten_like(template, {**flatten(small.params), **ones})
    diff = float(jnp.abs(logits(masked, params) - logits(cfg, small.params)).max())
    assert diff <= 1e-5, diff
    # a mask that is not 1 does change the function (the masks are read)
    half = {**ones, "mask_resid": np.r_[np.ones(8), np.zeros(8)].astype(np.float32)}
    other = unflatten_like(template, {**flatten(small.params), **half})
    assert float(jnp.abs(logits(masked, other) - logits(cfg, small.params)).max()) > 1e-2


@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_llama_msg_masks_ramp_linearly_and_get_no_update(name):
    cfg, small = small_state(name)
    spec = GrowthConfig(k=2)
    spec.msg.ramp_steps = 4
    g = _msg(small, cfg, spec)
    start = flatten(g.state.params)
    state = g.state
    for t in range(6):
        m = {p: np.asarray(x) for p, x in flatten(state.params).items() if masks.is_mask(p)}
        want = min(1.0, t / 4)
        assert (m["mask_resid"][:16] == 1).all() and np.allclose(m["mask_resid"][16:], want, atol=1e-7)
        for i in (0, 1):
            assert (m[f"blocks/{i}/attn/mask_heads"][:4] == 1).all()
            assert np.allclose(m[f"blocks/{i}/attn/mask_heads"][4:], want, atol=1e-7)
            assert np.allclose(m[f"blocks/{i}/mlp/mask_hidden"][24:], want, atol=1e-7)
        assert m["mask_ramp"] == 4
        state, losses = run(g.model_cfg, state, 20 + t, 1)
        assert np.isfinite(losses).all()
    moved = flatten(state.params)
    # the new units train once their masks open: their fresh parameters moved
    q0, q1 = np.asarray(start["blocks/0/attn/q/kernel"]), np.asarray(moved["blocks/0/attn/q/kernel"])
    assert np.abs(q1[:, 16:] - q0[:, 16:]).max() > 1e-4


def test_llama_msg_ramp_resumes_exactly_across_a_checkpoint(tmp_path):
    cfg, small = small_state("gqa")
    spec = GrowthConfig(k=2)
    spec.msg.ramp_steps = 6
    g = _msg(small, cfg, spec)
    mask = lambda st: float(np.asarray(flatten(st.params)["blocks/1/attn/mask_heads"])[-1])
    assert_ramp_resumes(g, mask, tmp_path)


def test_other_placing_candidates_still_refuse_llama():
    cfg, small = small_state("gqa")
    for name in ("zero_pad", "shrink_perturb"):
        with pytest.raises(GrowthError, match=f"candidate '{name}' grows the gpt family only"):
            grow(name, small, cfg, GrowthConfig(k=2), OPTIM, jax.random.PRNGKey(0))
