"""Muon as the optimizer (growth/training/muon.py) and width growth of a Muon train state (docs/strategies.md
"Muon"): the chain against optax, the orthogonalisation of a clone, the momentum map against a real
step, lag-0 preservation, the width-aware learning rate, every candidate, and the refusals."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import MuonDimensionNumbers
from optax.contrib import muon as optax_muon

from growth.config import GrowthConfig, ModelConfig, MuonConfig, OptimConfig
from growth.models import gpt as model_lib
from growth.training import muon, optimizer, train
from growth.widen import GrowthError, grow, registry
from growth.widen.core import flatten

VOCAB, CTX = 32, 8
# rms 0.2 (the default: AdamW's lr serves both halves); no clip, tiny eps: the trajectory theorem's setting
MUON = OptimConfig(name="muon", lr=1e-2, warmup_steps=10, decay_steps=60, eps=1e-12, weight_decay=0.1, clip_norm=0.0)
SPECTRAL = dataclasses.replace(MUON, muon=MuonConfig(consistent_rms=0.0))  # optax's width scaling
_COMPILED: dict[str, object] = {}


def _cfg(norm="layernorm", tied=False) -> ModelConfig:
    return ModelConfig(
        vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, context=CTX, norm=norm, tie_embeddings=tied, init_std=0.2
    )


def _batch(t: int, b: int = 4):
    return jax.random.randint(jax.random.PRNGKey(1000 + t), (b, CTX + 1), 0, VOCAB)


def _step(cfg: ModelConfig, optim: OptimConfig):
    key = repr((cfg, optim))
    if key not in _COMPILED:
        graphdef, _ = model_lib.abstract(cfg)
        _COMPILED[key] = jax.jit(train.make_train_step(graphdef, optimizer.make_optimizer(optim), optim))
    return _COMPILED[key]


def run(cfg, state, start, n, optim=MUON):
    step, losses = _step(cfg, optim), []
    for t in range(start, start + n):
        state, metrics = step(state, _batch(t))
        losses.append(float(metrics["loss"]))
    return state, np.array(losses)


_SMALL: dict[tuple, tuple] = {}


def small_state(tied: bool = False, optim: OptimConfig = MUON):
    """(cfg, state) trained 5 Muon steps, with norm gains and biases moved off their init."""
    if (tied, repr(optim)) not in _SMALL:
        cfg = _cfg("rmsnorm" if tied else "layernorm", tied)
        _, params = model_lib.build(cfg, jax.random.PRNGKey(0))
        state, _ = run(
            cfg, train.init_state(params, optimizer.make_optimizer(optim), jax.random.PRNGKey(1)), 0, 5, optim
        )
        keys = iter(jax.random.split(jax.random.PRNGKey(7), 64))
        move = {"scale": 0.3, "bias": 0.2}
        params = jax.tree_util.tree_map_with_path(
            lambda p, x: x + move[p[-1].key] * jax.random.normal(next(keys), x.shape) if p[-1].key in move else x,
            state.params,
        )
        _SMALL[tied, repr(optim)] = cfg, state.replace(params=params)
    return _SMALL[tied, repr(optim)]


# ---------------------------------------------------------------- the optimizer


def test_the_chain_is_optax_muon_on_hidden_matrices_and_adam_elsewhere():
    cfg = _cfg()
    _, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    optim = dataclasses.replace(SPECTRAL, warmup_steps=0, decay="constant", weight_decay=0.0)
    dims = lambda ps: jax.tree_util.tree_map_with_path(
        lambda p, x: MuonDimensionNumbers() if muon.is_muon(optimizer_path(p), x.shape) else None, ps
    )
    refs = {
        "muon": optax_muon(learning_rate=optim.lr, beta=0.95, eps=optim.eps, muon_weight_dimension_numbers=dims),
        "adam": optax.adam(optim.lr, b1=optim.b1, b2=optim.b2, eps=optim.eps),
    }
    ours = optimizer.make_optimizer(optim)
    state, ref_states = ours.init(params), {n: r.init(params) for n, r in refs.items()}
    for i in range(3):
        grads = jax.tree.map(lambda x, i=i: jax.random.normal(jax.random.PRNGKey(i), x.shape), params)
        mine, state = ours.update(grads, state, params)
        theirs = {}
        for n, r in refs.items():
            theirs[n], ref_states[n] = r.update(grads, ref_states[n], params)
        got, want = flatten(mine), {n: flatten(t) for n, t in theirs.items()}
        for path, x in got.items():
            which = "muon" if muon.is_muon(path, x.shape) else "adam"
            np.testing.assert_allclose(x, want[which][path], rtol=2e-5, atol=1e-7, err_msg=f"{path} step {i}")
    muon_paths = [p for p, x in flatten(params).items() if muon.is_muon(p, x.shape)]
    assert len(muon_paths) == 12 and not any(p.startswith(("lm_head", "tok_embed", "pos_embed")) for p in muon_paths)
    assert not flatten(state[optimizer.ADAM].nu)["blocks/0/mlp/fc/kernel"].any()  # a Muon leaf keeps nu = 0


def optimizer_path(p) -> str:
    return "/".join(str(getattr(x, "key", x)) for x in p)


@pytest.mark.parametrize("a,b", [(2, 2), (3, 3), (2, 1), (1, 3)])
def test_orthogonalising_a_clone_is_the_clone_of_the_orthogonalisation(a, b):
    """NS(tile_{a,b}(M) / b) = tile(NS(M)) / sqrt(a b): the derivation of docs/strategies.md, numerically."""
    m = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (6, 10)), np.float32)
    tx = optax.contrib.scale_by_muon(nesterov=False, beta=0.0)
    ortho = lambda x: np.asarray(tx.update(jnp.asarray(x), tx.init(jnp.asarray(x)))[0])
    wide = np.tile(m, (a, b)) / b
    np.testing.assert_allclose(ortho(wide), np.tile(ortho(m), (a, b)) / np.sqrt(a * b), atol=3e-5)


# ---------------------------------------------------------------- growth of a Muon state


def _momentum_gradient(before, after, beta=MUON.muon.beta, b1=MUON.b1):
    """The gradient of one real step, from the momentum before and after it (Muon leaves: beta; Adam: b1)."""
    return {
        p: (np.asarray(after[p], np.float64) - (beta if muon.is_muon(p, x.shape) else b1) * np.asarray(x, np.float64))
        / (1 - (beta if muon.is_muon(p, x.shape) else b1))
        for p, x in before.items()
    }


@pytest.mark.parametrize("tied,k", [(False, 2), (True, 3)])
def test_exact_copy_momentum_equals_a_real_muon_step_of_the_wide_model(tied, k):
    """The small momentum := its gradient, grown, equals the wide model's real gradient on the same batch;
    and the grown state's first step is the small step mapped (W' - W'_0 = tile(W - W_0) / c_in)."""
    cfg, small = small_state(tied)
    after, _ = run(cfg, small, 50, 1)
    g = _momentum_gradient(flatten(small.opt_state[optimizer.ADAM].mu), flatten(after.opt_state[optimizer.ADAM].mu))
    opt = type(small.opt_state)(small.opt_state)
    opt[optimizer.ADAM] = opt[optimizer.ADAM]._replace(mu=jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(g[optimizer_path(p)], jnp.float32), small.opt_state[optimizer.ADAM].mu
    ))  # fmt: skip
    spec = GrowthConfig(k=k, lr_correction="fan_in")
    pred = grow("exact_copy", small.replace(opt_state=opt), cfg, spec, MUON, jax.random.PRNGKey(4))
    wide = grow("exact_copy", small, cfg, spec, MUON, jax.random.PRNGKey(4))
    wide_after, _ = run(wide.model_cfg, wide.state, 50, 1)  # the same batch
    real = _momentum_gradient(
        flatten(wide.state.opt_state[optimizer.ADAM].mu), flatten(wide_after.opt_state[optimizer.ADAM].mu)
    )
    predicted = flatten(pred.state.opt_state[optimizer.ADAM].mu)
    floor = 1e-3 * max(np.abs(x).max() for x in real.values())
    for path, x in real.items():
        scale = max(float(np.abs(x).max()), floor)
        assert float(np.abs(np.asarray(predicted[path]) - x).max()) <= 1e-4 * scale, path
    # the first step: the wide update is the small update, cloned, over c_in (the Muon and the Adam halves)
    start_wide = flatten(wide.state.params)
    moved = {p: np.asarray(x) - np.asarray(start_wide[p]) for p, x in flatten(wide_after.params).items()}
    ref = grow("exact_copy", after, cfg, spec, MUON, jax.random.PRNGKey(4))  # the small step, mapped
    for path, x in flatten(ref.state.params).items():
        if path.endswith("attn/k/bias"):  # its gradient is exactly 0 (softmax shift): Adam 0/0 is noise
            continue
        want = np.asarray(x) - np.asarray(start_wide[path])
        assert np.abs(moved[path] - want).max() <= 1e-3 * max(np.abs(want).max(), 1e-6), path


@pytest.mark.parametrize("name", ["exact_copy", "perturbative", "asymmetric_reset", "structured_non_clone"])
def test_lag0_preservation_under_muon(name):
    cfg, small = small_state()
    graphdef_s, _ = model_lib.abstract(cfg)
    g = grow(name, small, cfg, GrowthConfig(k=2), MUON, jax.random.PRNGKey(2))
    graphdef_w, _ = model_lib.abstract(g.model_cfg)
    tokens = _batch(99)[:, :-1]
    small_logits = model_lib.apply(graphdef_s, small.params, tokens)
    wide_logits = model_lib.apply(graphdef_w, g.state.params, tokens)
    assert float(jnp.abs(wide_logits - small_logits).max()) < 1e-4
    assert type(g.state.opt_state[optimizer.ADAM]) is muon.MuonAdamState
    assert int(g.state.opt_state[optimizer.ADAM].count) == int(small.opt_state[optimizer.ADAM].count)


@pytest.mark.parametrize("optim", [MUON, SPECTRAL], ids=["rms", "spectral"])
def test_exact_copy_under_muon_with_fan_in_follows_the_small_trajectory(optim):
    cfg, small = small_state(optim=optim)
    _, small_losses = run(cfg, small, 10, 20, optim)
    fan_in = grow("exact_copy", small, cfg, GrowthConfig(k=2, lr_correction="fan_in"), optim, jax.random.PRNGKey(0))
    _, wide_losses = run(fan_in.model_cfg, fan_in.state, 10, 20, optim)
    np.testing.assert_allclose(wide_losses, small_losses, rtol=1e-4)
    plain = grow("exact_copy", small, cfg, GrowthConfig(k=2), optim, jax.random.PRNGKey(0))
    _, plain_losses = run(plain.model_cfg, plain.state, 10, 20, optim)
    assert np.max(np.abs(plain_losses - small_losses) / small_losses) > 1e-3  # lm_head's Adam step is k x too big
    scale = flatten(fan_in.state.opt_state[optimizer.DIRECTION].scale)
    hidden = 1 / np.sqrt(2) if optim.muon.consistent_rms > 0 else 1.0  # both axes widened: s_small / s_wide
    assert float(scale["blocks/0/mlp/fc/kernel"]) == pytest.approx(hidden)
    assert float(scale["lm_head/kernel"]) == pytest.approx(0.5) and float(scale["tok_embed/embedding"]) == 1.0


def test_every_candidate_maps_the_muon_state_and_steps():
    cfg, small = small_state()
    spec = GrowthConfig(k=2)
    batches = np.stack([np.asarray(_batch(200 + i)) for i in range(2)])
    for name in registry.names():
        g = grow(name, small, cfg, spec, MUON, jax.random.PRNGKey(5), batches=batches)
        state = g.state.opt_state[optimizer.ADAM]
        assert type(state) is muon.MuonAdamState, name
        nu = flatten(state.nu)
        for path, x in flatten(g.state.params).items():
            if muon.is_muon(path, x.shape):
                assert not np.asarray(nu[path]).any(), (name, path)  # Muon leaves carry no second moment
        _, losses = run(g.model_cfg, g.state, 60, 1)
        assert np.isfinite(losses).all(), name


def test_growing_an_adamw_state_under_muon_is_refused():
    cfg, small = small_state(optim=dataclasses.replace(MUON, name="adamw"))
    with pytest.raises(GrowthError, match="optim.name=muon.*trained with adamw"):
        grow("exact_copy", small, cfg, GrowthConfig(k=2), MUON, jax.random.PRNGKey(0))
