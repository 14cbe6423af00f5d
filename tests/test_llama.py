"""The llama family (growth/models/llama.py, SPEC 2b): model checks, growth of every candidate with MHA, GQA
and MQA, RoPE-commuting structured rotations, and the exact trajectory under fan_in."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from growth.config import GrowthConfig, ModelConfig
from growth.models import gpt as model_lib
from growth.models import llama
from growth.training import optimizer, train
from growth.widen import assemble, core, grow, wide_config
from growth.widen.core import flatten
from growth.widen.structured import rope_rotation
from tests.test_widen import OPTIM, TOKENS, VOCAB, logits, run

PRESERVING = ["exact_copy", "perturbative", "asymmetric_reset", "structured_non_clone", "net2net"]
DEPTH = ["deepen_identity"]  # deepen_copy grows depth too, but does not preserve (docs/surgery.md)
# name -> (n_kv_heads, qkv_bias, tied): GQA, MQA, MHA with Qwen2's biases, tied GQA, GQA / MQA with biases
SMALL = {
    "gqa": (2, False, False), "mqa": (1, False, False), "mha_bias": (4, True, False), "tied": (2, False, True),
    "gqa_bias": (2, True, False), "mqa_bias": (1, True, False),
}  # fmt: skip


def _cfg(n_kv_heads=2, qkv_bias=False, tied=False) -> ModelConfig:
    return ModelConfig(
        family="llama", norm="rmsnorm", vocab_size=VOCAB, d_model=16, n_heads=4, n_kv_heads=n_kv_heads,
        n_layers=2, mlp_hidden=24, context=8, qkv_bias=qkv_bias, tie_embeddings=tied, init_std=0.2,
        rope_theta=100.0,
    )  # fmt: skip


_SMALL: dict[str, tuple] = {}


def small_state(name: str):
    """(cfg, state) trained 5 steps, norm gains and biases moved off their init."""
    if name not in _SMALL:
        cfg = _cfg(*SMALL[name])
        _, params = model_lib.build(cfg, jax.random.PRNGKey(0))
        state, _ = run(cfg, train.init_state(params, optimizer.make_optimizer(OPTIM), jax.random.PRNGKey(1)), 0, 5)
        keys = iter(jax.random.split(jax.random.PRNGKey(7), 64))
        move = {"scale": 0.3, "bias": 0.2}
        params = jax.tree_util.tree_map_with_path(
            lambda p, x: x + move[p[-1].key] * jax.random.normal(next(keys), x.shape) if p[-1].key in move else x,
            state.params,
        )
        _SMALL[name] = cfg, state.replace(params=params)
    return _SMALL[name]


def test_llama_model_shapes_counts_and_causality():
    for name in SMALL:
        cfg = _cfg(*SMALL[name])
        graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
        assert model_lib.param_count(params) == model_lib.count_params(cfg)
        kv = flatten(params)["blocks/0/attn/k/kernel"].shape
        assert kv == (16, SMALL[name][0] * 4)
        assert ("blocks/0/attn/q/bias" in flatten(params)) == SMALL[name][1]
    out = model_lib.apply(graphdef, params, TOKENS)
    changed = TOKENS.at[:, 5].set((TOKENS[:, 5] + 1) % VOCAB)
    out2 = model_lib.apply(graphdef, params, changed)
    np.testing.assert_allclose(out[:, :5], out2[:, :5], atol=1e-6)  # causal: earlier positions unchanged
    assert float(jnp.abs(out[:, 5:] - out2[:, 5:]).max()) > 1e-3


@pytest.mark.parametrize("bad", [3, 0, 8])
def test_bad_kv_heads_is_one_clear_line(bad):
    with pytest.raises(model_lib.ConfigError) as e:
        model_lib.build(_cfg(n_kv_heads=bad), jax.random.PRNGKey(0))
    msg = str(e.value)
    assert f"model.n_kv_heads={bad}" in msg and "[1, 2, 4]" in msg and "\n" not in msg


def test_llama_needs_rmsnorm_and_no_window():
    for kw, field in (({"norm": "layernorm"}, "model.norm"), ({"window_size": 4}, "model.window_size")):
        with pytest.raises(model_lib.ConfigError, match=field):
            model_lib.build(dataclasses.replace(_cfg(), **kw), jax.random.PRNGKey(0))


@pytest.mark.parametrize("hd", [4, 8])
def test_rope_rotation_commutes_with_every_rotary_rotation(hd):
    r = rope_rotation(np.random.default_rng(0), hd)
    np.testing.assert_allclose(r @ r.T, np.eye(hd), atol=1e-12)
    assert np.linalg.det(r) > 0  # rotations, not reflections
    cos, sin = (np.asarray(t, np.float64) for t in llama.rope_tables(8, hd, 100.0))
    x = np.random.default_rng(1).standard_normal((1, 8, 1, hd))
    rope = lambda t: np.asarray(llama.rope(jnp.asarray(t), jnp.asarray(cos), jnp.asarray(sin)), np.float64)
    np.testing.assert_allclose(rope(x @ r), rope(x) @ r, atol=1e-5)
    other = np.random.default_rng(2).standard_normal((hd, hd))
    assert np.abs(rope(x @ other) - rope(x) @ other).max() > 1e-2  # a generic map does not commute


@pytest.mark.parametrize("name,k", [("gqa", 2), ("gqa", 3), ("mqa", 2), ("mqa", 3), ("mha_bias", 2), ("tied", 2)])
def test_every_preserving_candidate_preserves_llama(name, k):
    cfg, small = small_state(name)
    ref = logits(cfg, small.params)
    assert float(jnp.abs(ref).max()) > 0.5
    spec = GrowthConfig(k=k)
    names = [n for n in PRESERVING + DEPTH if not (cfg.tie_embeddings and n == "structured_non_clone")]
    for n in names:
        g = grow(n, small, cfg, spec, OPTIM, jax.random.PRNGKey(3))
        if n not in DEPTH:
            wide = wide_config(cfg, spec)
            assert g.model_cfg == wide and wide.n_kv_heads == (1 if cfg.n_kv_heads == 1 else k * cfg.n_kv_heads)
        diff = float(jnp.abs(logits(g.model_cfg, g.state.params) - ref).max())
        print(f"{name} k={k} {n}: max logit diff {diff:.2e}")
        assert diff <= 1e-5, (n, diff)
    for n in ("scratch_wide", "continue_small", "deepen_copy"):
        g = grow(n, small, cfg, spec, OPTIM, jax.random.PRNGKey(3))
        assert logits(g.model_cfg, g.state.params).shape == ref.shape


def test_tied_llama_structured_is_refused_in_one_line():
    cfg, small = small_state("tied")
    with pytest.raises(ValueError, match="tied embeddings") as e:
        grow("structured_non_clone", small, cfg, GrowthConfig(k=2), OPTIM, jax.random.PRNGKey(0))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_structured_non_clone_copies_differ_and_function_is_kept(name):
    cfg, small = small_state(name)
    k = 2
    g = grow("structured_non_clone", small, cfg, GrowthConfig(k=k), OPTIM, jax.random.PRNGKey(5))
    params = {p: np.asarray(x) for p, x in flatten(g.state.params).items()}
    for module in ("attn/q", "attn/o", "mlp/proj"):
        w = params[f"blocks/0/{module}/kernel"]
        axis = 0 if module in ("attn/o", "mlp/proj") else 1  # the head / hidden-unit axis
        a, b = np.split(w, k, axis=axis)
        if name == "mqa" and module != "mlp/proj":
            # one kv head: q.k forces every query head to take its rotation, so head copies stay equal
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=module)
        else:
            assert np.abs(a - b).max() > 1e-2, module  # the two copies of every unit differ
    ref = logits(cfg, small.params)
    assert float(jnp.abs(logits(g.model_cfg, g.state.params) - ref).max()) <= 1e-5
    # and training leaves the cloned subspace: copies of the gate's hidden units drift apart
    trained, _ = run(g.model_cfg, g.state, 10, 5)
    gate = np.asarray(trained.params["blocks"][0]["mlp"]["gate"]["kernel"])
    a, b = np.split(gate, k, axis=1)
    assert np.abs(a - b).max() > 1e-4


# The trajectory tests' learning rate: at OPTIM's 1e-2 the MQA run is chaotic (see the 128-step test).
TRAJECTORY_LR = 5e-3


def _trajectory(name: str, k: int, steps: int, every: int) -> float:
    """Max relative gap between exact_copy (fan_in, clone_consistent clip) and continue_small."""
    optim = dataclasses.replace(
        OPTIM, lr=TRAJECTORY_LR, clip_norm=1.0, clip_mode="clone_consistent", decay_steps=steps + 20
    )
    cfg, small = small_state(name)
    spec = GrowthConfig(k=k, lr_correction="fan_in")
    wide = grow("exact_copy", small, cfg, spec, optim, jax.random.PRNGKey(0))
    cont = grow("continue_small", small, cfg, spec, optim, jax.random.PRNGKey(0))
    eval_tokens = jax.random.randint(jax.random.PRNGKey(42), (8, cfg.context + 1), 0, VOCAB)
    evals = {c.d_model: train.make_eval_fn(model_lib.abstract(c)[0], 8) for c in (cfg, wide.model_cfg)}
    loss = lambda c, p: evals[c.d_model](p, np.asarray(eval_tokens))
    s_state, w_state, worst = cont.state, wide.state, 0.0
    for start in range(10, 10 + steps, every):
        s_state, _ = run(cfg, s_state, start, every, optim)
        w_state, _ = run(wide.model_cfg, w_state, start, every, optim)
        a, b = loss(cfg, s_state.params), loss(wide.model_cfg, w_state.params)
        worst = max(worst, abs(a - b) / abs(a))
    return worst


@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_exact_copy_follows_continue_small_short(name):
    gap = _trajectory(name, 2, 16, 8)
    print(f"{name}: 16-step max relative gap {gap:.1e}")
    assert gap <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_exact_copy_follows_continue_small_128_steps(name):
    """exact_copy tracks continue_small to float rounding for 128 steps, with the clip on (clip_norm 1.0
    clips 44 of the 128 small-model steps at lr 5e-3), so clone_consistent's per-tensor weights,
    MQA's c_out / c_in = 1/2 on k / v included, are what keeps them together: clip_mode=global
    drifts to 1.0e-3 by step 128.

    Why lr 5e-3 and not OPTIM's 1e-2: at 1e-2 the MQA run is chaotic. Its exact_copy gap (evaluated
    every 4 steps) sits at rounding level, <= 2.1e-7, through step 56 (0 at step 32), then grows
    about tenfold every 8 steps (3.8e-6 at 64, 4.1e-5 at 80, 1.2e-3 at 116), 5.1e-4 at 128; the
    small model alone, with clip_norm 1.0 against the next float32 above it, diverges from itself
    the same way (7e-8 at 64, 7e-7 at 80, 1e-4 at 128). That is float rounding amplified by the
    training dynamics, not a growth error. At lr 5e-3 the same one-ulp perturbation stays at 7e-8
    through step 128, and the exact_copy gap is <= 1.4e-7 (MQA) and <= 6.9e-8 (GQA) at every
    4-step lag. (Measured in issue 20's session on this CPU.)"""
    gap = _trajectory(name, 2, 128, 16)
    print(f"{name}: 128-step max relative gap {gap:.1e}")
    assert gap <= 1e-4


def test_growth_keeps_the_mlp_hidden_width_ratio():
    cfg = _cfg()
    wide = wide_config(cfg, GrowthConfig(k=3))
    assert (wide.d_model, wide.n_heads, wide.n_kv_heads, wide.mlp_hidden) == (48, 12, 6, 72)
    mqa = wide_config(_cfg(n_kv_heads=1), GrowthConfig(k=3))
    assert (mqa.n_heads, mqa.n_kv_heads) == (12, 1)


def test_llama_under_bf16_computes_in_bf16_and_exact_copy_preserves():
    from tests.test_precision import BF16_PRESERVATION_TOL, _logits

    cfg = dataclasses.replace(_cfg(), compute_dtype="bfloat16")
    graphdef, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    state, _ = run(cfg, train.init_state(params, optimizer.make_optimizer(OPTIM), jax.random.PRNGKey(1)), 0, 3)
    adam = state.opt_state[optimizer.ADAM]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((state.params, adam.mu, adam.nu)))  # master weights
    model = nnx.merge(graphdef, state.params)
    assert model.tok_embed(TOKENS).dtype == jnp.bfloat16  # the token embedding is read in the compute dtype
    h, head = jax.jit(lambda p, t: model_lib.apply_features(graphdef, p, t))(state.params, TOKENS)
    assert h.dtype == jnp.bfloat16 and head.dtype == jnp.bfloat16
    ref = _logits(graphdef, state.params, TOKENS)
    f32 = _logits(model_lib.abstract(_cfg())[0], state.params, TOKENS)
    assert float(jnp.abs(f32).max()) > 0.5 and float(jnp.abs(ref - f32).max()) < 0.1  # bf16 rounding only
    g = grow("exact_copy", state, cfg, GrowthConfig(k=2), OPTIM, jax.random.PRNGKey(3))
    assert g.model_cfg.compute_dtype == "bfloat16"
    diff = float(jnp.abs(_logits(model_lib.abstract(g.model_cfg)[0], g.state.params, TOKENS) - ref).max())
    print(f"llama bf16 exact_copy k=2: max logit diff {diff:.1e}")
    assert diff <= BF16_PRESERVATION_TOL


@pytest.mark.parametrize("n_kv,bias", [(2, False), (1, False), (1, True)])  # GQA, MQA, MQA with Qwen2's biases
def test_width_policy_uses_each_spaces_factor_as_exact_copy_does(n_kv, bias):
    """scratch_wide and every build_state candidate take their lr scale and clip weight from
    assemble.width_policy; it must give each tensor exact_copy's values. An MQA model's k / v kernels
    read the 2x wider stream but write their one kv head: scale 1/2, clip weight c_out / c_in = 1/2
    (its kv biases: 1); with one int k for every space the kernels got weight 1 and the biases 2."""
    cfg, k = _cfg(n_kv_heads=n_kv, qkv_bias=bias), 2
    optim = dataclasses.replace(OPTIM, clip_norm=1.0, clip_mode="clone_consistent")
    spec = GrowthConfig(k=k, lr_correction="fan_in")
    _, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    small = train.init_state(params, optimizer.make_optimizer(optim), jax.random.PRNGKey(1))
    small = small.replace(  # a base run's own policy (as after an earlier growth) is carried through
        opt_state=small.opt_state
        | {
            optimizer.CLIP: optimizer.ClipState(
                weight=jax.tree.map(lambda w: w * 3.0, small.opt_state[optimizer.CLIP].weight)
            )
        }
    )
    policy = lambda g: tuple(
        flatten(x) for x in (g.state.opt_state[optimizer.DIRECTION].scale, g.state.opt_state[optimizer.CLIP].weight)
    )
    ref = grow("exact_copy", small, cfg, spec, optim, jax.random.PRNGKey(2))
    ref_scale, ref_weight = policy(ref)
    shapes = {p: tuple(x.shape) for p, x in flatten(ref.state.params).items()}
    scale, weight = assemble.width_policy(shapes, spec, optim, core.factors(cfg, k), small)
    fresh_scale, fresh_weight = policy(grow("scratch_wide", small, cfg, spec, optim, jax.random.PRNGKey(2)))
    for path in ref_scale:
        assert scale[path] == pytest.approx(float(ref_scale[path])), path
        assert weight[path] == pytest.approx(float(ref_weight[path])), path
        assert float(fresh_scale[path]) == pytest.approx(float(ref_scale[path])), path  # a fresh run: base 1
        assert float(fresh_weight[path]) == pytest.approx(float(ref_weight[path]) / 3.0), path
    kv_weight = 3.0 / k if n_kv == 1 else 3.0  # the documented rule, c_out / c_in, times the base's 3
    for i in range(cfg.n_layers):
        for m in "kv":
            assert weight[f"blocks/{i}/attn/{m}/kernel"] == pytest.approx(kv_weight)
            assert scale[f"blocks/{i}/attn/{m}/kernel"] == pytest.approx(1 / k)
            if bias:
                assert weight[f"blocks/{i}/attn/{m}/bias"] == pytest.approx(3.0 if n_kv == 1 else 3.0 * k)
        assert weight[f"blocks/{i}/attn/q/kernel"] == pytest.approx(3.0)
