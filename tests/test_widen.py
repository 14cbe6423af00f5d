"""Width growth of full train states (growth/widen, docs/strategies.md): preservation, moments,
trajectory, symmetry, counters and errors, on tiny fp32 models."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.models import gpt as model_lib
from growth.training import optimizer, train
from growth.widen import GrowthError, UnknownCandidate, grow, registry, wide_config
from growth.widen.core import flatten

PRESERVING = ["exact_copy", "perturbative", "asymmetric_reset", "structured_non_clone"]
# One optimizer for every trained state: every compile of a train step costs seconds on a CPU.
OPTIM = OptimConfig(lr=1e-2, warmup_steps=10, decay_steps=60, eps=1e-12, weight_decay=0.1, clip_norm=0.0)
VOCAB, CTX = 32, 8
SMALL = {"A": ("layernorm", False), "B": ("rmsnorm", True), "C": ("rmsnorm", False)}  # C is not trained


def _cfg(norm="layernorm", tied=False) -> ModelConfig:
    return ModelConfig(
        vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, context=CTX, norm=norm, tie_embeddings=tied, init_std=0.2
    )


def _batch(t: int, b: int = 4):
    return jax.random.randint(jax.random.PRNGKey(1000 + t), (b, CTX + 1), 0, VOCAB)


TOKENS = jax.random.randint(jax.random.PRNGKey(99), (4, CTX), 0, VOCAB)
_COMPILED: dict[str, object] = {}


def _compiled(cfg: ModelConfig, optim: OptimConfig | None = None):
    """Jitted apply (optim None) or train step, compiled once per config."""
    key = repr((cfg, optim))
    if key not in _COMPILED:
        graphdef, _ = model_lib.abstract(cfg)
        if optim is None:
            _COMPILED[key] = jax.jit(lambda p, t: model_lib.apply(graphdef, p, t))
        else:
            _COMPILED[key] = jax.jit(train.make_train_step(graphdef, optimizer.make_optimizer(optim), optim))
    return _COMPILED[key]


def logits(cfg, params, tokens=TOKENS):
    return _compiled(cfg)(params, tokens)


def run(cfg, state, start, n, optim=OPTIM):
    step, losses = _compiled(cfg, optim), []
    for t in range(start, start + n):
        state, metrics = step(state, _batch(t))
        losses.append(float(metrics["loss"]))
    return state, np.array(losses)


_SMALL: dict[tuple, tuple] = {}


def small_state(name: str, jitter: bool = True):
    """(cfg, state): A and B trained 5 steps, C random with random moments; gains/biases off init."""
    if (name, jitter) in _SMALL:
        return _SMALL[name, jitter]
    cfg = _cfg(*SMALL[name])
    _, params = model_lib.build(cfg, jax.random.PRNGKey(0))
    state = train.init_state(params, optimizer.make_optimizer(OPTIM), jax.random.PRNGKey(1))
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 256))
    noise = lambda x, s: x + s * jax.random.normal(next(keys), x.shape)
    if name == "C":
        adam = state.opt_state[optimizer.ADAM]
        mu = jax.tree.map(lambda x: noise(x * 0, 1e-2), adam.mu)
        nu = jax.tree.map(lambda x: noise(x * 0, 1e-2) ** 2, adam.nu)
        opt = type(state.opt_state)(state.opt_state)
        opt[optimizer.ADAM] = adam._replace(mu=mu, nu=nu, count=jnp.asarray(5, jnp.int32))
        state = state.replace(params=jax.tree.map(lambda x: noise(x, 0.2), params), opt_state=opt)
    else:
        state, _ = run(cfg, state, 0, 5)
    if jitter:
        move = {"scale": 0.3, "bias": 0.2}
        state = state.replace(
            params=jax.tree_util.tree_map_with_path(
                lambda p, x: noise(x, move[p[-1].key]) if p[-1].key in move else x, state.params
            )
        )
    _SMALL[name, jitter] = cfg, state
    return cfg, state


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _max_diff(a, b) -> float:
    return float(jnp.abs(a - b).max())


# ---------------------------------------------------------------- 1. zero-step preservation

CASES = [("A", 2), ("A", 3), ("C", 2), ("C", 3), ("B", 3)]  # LayerNorm/RMSNorm, untied/tied, k = 2, 3


@pytest.mark.parametrize("small_name,k", CASES)
def test_preserving_candidates_keep_logits_and_ignore_templates(small_name, k, monkeypatch):
    cfg, small = small_state(small_name)
    ref = logits(cfg, small.params)
    assert float(jnp.abs(ref).max()) > 0.5  # O(1) logits: the 1e-4 tolerance means something
    spec = GrowthConfig(k=k)
    names = [n for n in PRESERVING if not (cfg.tie_embeddings and n == "structured_non_clone")]
    grown = {n: grow(n, small, cfg, spec, OPTIM, jax.random.PRNGKey(3)) for n in names}

    # The "42" check: every template a candidate could read (fresh params, a fresh optimizer state)
    # is filled with 42; the grown states must not change.
    make_opt, build = optimizer.make_optimizer, model_lib.build
    fill = lambda tree: jax.tree.map(lambda x: jnp.full_like(x, 42), tree)

    def opt42(optim_cfg):
        tx = make_opt(optim_cfg)
        return optax.GradientTransformation(lambda p: fill(tx.init(p)), tx.update)

    monkeypatch.setattr(optimizer, "make_optimizer", opt42)
    monkeypatch.setattr(model_lib, "build", lambda c, key: (build(c, key)[0], fill(build(c, key)[1])))
    for name in names:
        again = grow(name, small, cfg, spec, OPTIM, jax.random.PRNGKey(3))
        for a, b in zip(_leaves(grown[name].state), _leaves(again.state), strict=True):
            np.testing.assert_array_equal(a, b)
    monkeypatch.undo()

    for name, g in grown.items():
        assert g.model_cfg == wide_config(cfg, spec)
        for x in jax.tree.leaves(g.state.params) + jax.tree.leaves(g.state.opt_state[optimizer.ADAM]):
            assert x.dtype in (jnp.float32, jnp.int32) and bool(jnp.isfinite(x).all())
        diff = _max_diff(logits(g.model_cfg, g.state.params), ref)
        print(f"{small_name} k={k} {name}: max logit diff {diff:.2e}")
        assert diff < 1e-4, f"{name}: max logit diff {diff}"


def test_iid_noise_gap_grows_as_snr_falls():
    cfg, small = small_state("A")
    ref = logits(cfg, small.params)
    gaps = []
    for snr in (100.0, 10.0, 1.0):
        spec = GrowthConfig(k=2)
        spec.perturbative.noise, spec.perturbative.snr = "iid", snr
        g = grow("perturbative", small, cfg, spec, OPTIM, jax.random.PRNGKey(3))
        gaps.append(_max_diff(logits(g.model_cfg, g.state.params), ref))
    print("iid gaps", gaps)
    assert 1e-4 < gaps[0] < gaps[1] < gaps[2], gaps


def test_embed_maps_and_baselines():
    cfg, small = small_state("A")
    spec = GrowthConfig(k=2)
    e = grow("exact_copy", small, cfg, spec, OPTIM, jax.random.PRNGKey(0)).embed_map
    np.testing.assert_array_equal(np.asarray(e), np.tile(np.eye(8), (1, 2)))
    q = np.asarray(grow("structured_non_clone", small, cfg, spec, OPTIM, jax.random.PRNGKey(0)).embed_map, np.float64)
    np.testing.assert_allclose(q @ q.T, 2 * np.eye(8), atol=1e-5)
    np.testing.assert_allclose(np.ones(8) @ q, np.ones(16), atol=1e-5)

    scratch = grow("scratch_wide", small, cfg, spec, OPTIM, jax.random.PRNGKey(0))
    assert scratch.embed_map is None and scratch.model_cfg == wide_config(cfg, spec)
    opt = scratch.state.opt_state
    assert int(opt[optimizer.ADAM].count) == 0 and int(opt[optimizer.SCHEDULE].count) == 0
    assert not any(np.asarray(x).any() for x in jax.tree.leaves(opt[optimizer.ADAM].mu))
    assert int(scratch.state.step) == int(small.step)
    np.testing.assert_array_equal(np.asarray(scratch.state.dropout_key), np.asarray(small.dropout_key))

    cont = grow("continue_small", small, cfg, spec, OPTIM, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(cont.embed_map), np.eye(8))
    assert cont.model_cfg == cfg
    for a, b in zip(_leaves(cont.state), _leaves(small), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- 2. moments


def _gradient(before, after):
    """(g, g^2) from one real Adam step: mu' = b1 mu + (1 - b1) g, nu' = b2 nu + (1 - b2) g^2.

    This is the information of the lr = 0, betas = (0, 0) step, read from the one optimizer the
    tests compile anyway.
    """
    b1, b2 = OPTIM.b1, OPTIM.b2
    g = jax.tree.map(lambda a, b: (a - b1 * b) / (1 - b1), after.mu, before.mu)
    g2 = jax.tree.map(lambda a, b: (a - b2 * b) / (1 - b2), after.nu, before.nu)
    return g, g2


def _moments(name, small_name, k):
    """(predicted wide mu, nu, real wide g, g^2): the map applied to the small gradient vs a real step."""
    cfg, small = small_state(small_name)
    after, _ = run(cfg, small, 50, 1)
    g, g2 = _gradient(small.opt_state[optimizer.ADAM], after.opt_state[optimizer.ADAM])
    opt = type(small.opt_state)(small.opt_state)
    opt[optimizer.ADAM] = opt[optimizer.ADAM]._replace(mu=g, nu=g2)  # small moments := gradient, gradient^2
    spec = GrowthConfig(k=k)
    pred = grow(name, small.replace(opt_state=opt), cfg, spec, OPTIM, jax.random.PRNGKey(4))
    wide = grow(name, small, cfg, spec, OPTIM, jax.random.PRNGKey(4))
    wide_after, _ = run(wide.model_cfg, wide.state, 50, 1)  # the same batch
    real_g, real_g2 = _gradient(wide.state.opt_state[optimizer.ADAM], wide_after.opt_state[optimizer.ADAM])
    p = pred.state.opt_state[optimizer.ADAM]
    return [{k_: np.asarray(v, np.float64) for k_, v in flatten(t).items()} for t in (p.mu, p.nu, real_g, real_g2)]


def _close(pred, real, floor, rtol=1e-4):
    """Within rtol of the tensor's scale (floored: a key bias has an exactly zero gradient)."""
    scale = max(float(np.abs(real).max()), floor)
    return float(np.abs(pred - real).max()) <= rtol * scale


@pytest.mark.parametrize("small_name,k", [("A", 2), ("B", 3)])
def test_exact_copy_moments_equal_the_wide_gradient(small_name, k):
    mu, nu, g, g2 = _moments("exact_copy", small_name, k)
    floor_g, floor_g2 = (1e-3 * max(np.abs(x).max() for x in t.values()) for t in (g, g2))
    for path in mu:
        assert _close(mu[path], g[path], floor_g), f"mu {path}"
        assert _close(nu[path], g2[path], floor_g2, rtol=1e-3), f"nu {path}"


def test_structured_moments_follow_the_gradient_maps():
    k = 2
    mu, nu, g, g2 = _moments("structured_non_clone", "A", k)
    floor_g, floor_g2 = (1e-3 * max(np.abs(x).max() for x in t.values()) for t in (g, g2))
    for path in mu:
        if path.endswith("/scale"):  # wide norm gains: moments reset (no linear map exists)
            assert not mu[path].any() and not nu[path].any()
        elif "/mlp/fc/" in path:  # hidden-unit copies: only their sum is mapped exactly
            f = mu[path].shape[-1] // k
            pred_sum, real_sum = (x[path].reshape(x[path].shape[:-1] + (k, f)).sum(-2) for x in (mu, g))
            assert _close(pred_sum, real_sum, floor_g), path
        else:  # exactly mapped; with nu = mu^2 the nu rule is exact as well
            assert _close(mu[path], g[path], floor_g), f"mu {path}"
            assert _close(nu[path], g2[path], floor_g2, rtol=1e-3), f"nu {path}"


def test_asymmetric_reset_zeroes_added_copies_and_sets_mask():
    cfg, small = small_state("A")
    spec = GrowthConfig(k=3)
    spec.asymmetric_reset.rewarm_steps = 5
    g = grow("asymmetric_reset", small, cfg, spec, OPTIM, jax.random.PRNGKey(0))
    ref = grow("exact_copy", small, cfg, spec, OPTIM, jax.random.PRNGKey(0))
    direction = g.state.opt_state[optimizer.DIRECTION]
    assert int(direction.reset_rewarm_steps) == 5
    mu, mask, ref_mu = (
        {p: np.asarray(x) for p, x in flatten(t).items()}
        for t in (g.state.opt_state[optimizer.ADAM].mu, direction.reset_mask, ref.state.opt_state[optimizer.ADAM].mu)
    )
    fc, head, ln = "blocks/0/mlp/fc/kernel", "lm_head/kernel", "ln_f/scale"
    np.testing.assert_array_equal(mu[fc][:, :32], ref_mu[fc][:, :32])  # unit = output column
    assert not mu[fc][:, 32:].any() and mask[fc][:, 32:].all() and not mask[fc][:, :32].any()
    assert not mu[head][8:].any() and mask[head][8:].all() and ref_mu[head][8:].any()  # unit = input row
    assert not mu[ln][8:].any() and mask[ln][8:].all()


# ---------------------------------------------------------------- 3. trajectory, 4. symmetry


@pytest.mark.parametrize("small_name,k", [("A", 2), ("B", 3)])
def test_exact_copy_with_fan_in_follows_the_small_trajectory(small_name, k):
    cfg, small = small_state(small_name)
    _, small_losses = run(cfg, small, 10, 20)
    fan_in = grow("exact_copy", small, cfg, GrowthConfig(k=k, lr_correction="fan_in"), OPTIM, jax.random.PRNGKey(0))
    _, wide_losses = run(fan_in.model_cfg, fan_in.state, 10, 20)
    np.testing.assert_allclose(wide_losses, small_losses, rtol=1e-4)
    plain = grow("exact_copy", small, cfg, GrowthConfig(k=k), OPTIM, jax.random.PRNGKey(0))
    _, plain_losses = run(plain.model_cfg, plain.state, 10, 20)
    gap = np.max(np.abs(plain_losses - small_losses) / small_losses)
    print(
        f"{small_name} k={k}: fan_in max rel gap"
        f" {np.max(np.abs(wide_losses - small_losses) / small_losses):.1e}, none {gap:.1e}"
    )
    assert gap > 1e-2


def test_clones_stay_clones_only_for_exact_copy():
    cfg, small = small_state("A")
    k, fc = 2, "blocks/1/mlp/fc/kernel"
    spread = {}
    for name in ("exact_copy", "asymmetric_reset", "structured_non_clone"):
        g = grow(name, small, cfg, GrowthConfig(k=k), OPTIM, jax.random.PRNGKey(0))
        trained, _ = run(g.model_cfg, g.state, 10, 20)
        params = {p: np.asarray(x) for p, x in flatten(trained.params).items()}
        if name == "exact_copy":  # on every widened axis each copy block still equals copy 0
            for path, x in params.items():
                for axis in range(x.ndim):
                    if x.shape[axis] in (16, 64):  # widened axes; vocab (32) and context (8) are not
                        blocks = np.split(x, k, axis=axis)
                        for b in blocks[1:]:
                            np.testing.assert_allclose(b, blocks[0], atol=1e-6, err_msg=path)
        a, b = np.split(params[fc], k, axis=1)  # incoming weights of the two copies of each hidden unit
        spread[name] = float(np.abs(a - b).max())
    print("copy spread after 20 steps", spread)
    assert spread["exact_copy"] < 1e-6
    assert spread["asymmetric_reset"] > 1e-3 and spread["structured_non_clone"] > 1e-3, spread


# ---------------------------------------------------------------- 5. counters


@pytest.mark.parametrize("schedule", ["continue", "rewarm", "restart"])
def test_schedule_policies_move_the_right_counters(schedule):
    cfg, small = small_state("A")
    sched = optimizer.make_schedule(OPTIM)
    count, adam_count = int(small.opt_state[optimizer.SCHEDULE].count), int(small.opt_state[optimizer.ADAM].count)
    assert count == adam_count == 5  # mid-warmup: the rate changes every step
    g = grow(
        "exact_copy", small, cfg, GrowthConfig(k=2, schedule=schedule, rewarm_steps=4), OPTIM, jax.random.PRNGKey(0)
    )
    opt = g.state.opt_state
    assert int(opt[optimizer.ADAM].count) == adam_count  # Adam's bias correction goes on in every policy
    assert int(opt[optimizer.SCHEDULE].since_growth) == 0 and int(opt[optimizer.DIRECTION].count) == 0
    assert int(g.state.step) == int(small.step)
    step, lrs, state = _compiled(g.model_cfg, OPTIM), [], g.state
    for t in range(4):
        state, metrics = step(state, _batch(t))
        lrs.append(float(metrics["lr"]))
    assert int(state.opt_state[optimizer.ADAM].count) == adam_count + 4
    assert int(state.opt_state[optimizer.SCHEDULE].count) == int(opt[optimizer.SCHEDULE].count) + 4
    if schedule == "continue":
        assert int(opt[optimizer.SCHEDULE].count) == count
        assert lrs[0] == pytest.approx(float(optimizer.current_lr(OPTIM, small.opt_state)))
        assert lrs == pytest.approx([float(sched(count + i)) for i in range(4)])
    elif schedule == "rewarm":
        assert int(opt[optimizer.SCHEDULE].count) == count and int(opt[optimizer.SCHEDULE].rewarm_steps) == 4
        assert lrs[0] == pytest.approx(float(sched(count)) / 4)
        assert lrs == pytest.approx([float(sched(count + i)) * (i + 1) / 4 for i in range(4)])
        assert lrs[3] == pytest.approx(float(sched(count + 3)))  # back on the schedule after R steps
    else:
        assert int(opt[optimizer.SCHEDULE].count) == 0 and int(opt[optimizer.SCHEDULE].rewarm_steps) == 0
        assert lrs == pytest.approx([float(sched(i)) for i in range(4)])


def test_fan_in_scales_only_cloned_fan_in_tensors():
    cfg, small = small_state("B")
    g = grow("exact_copy", small, cfg, GrowthConfig(k=3, lr_correction="fan_in"), OPTIM, jax.random.PRNGKey(0))
    scale = {p: float(s) for p, s in flatten(g.state.opt_state[optimizer.DIRECTION].scale).items()}
    assert scale["blocks/0/attn/q/kernel"] == pytest.approx(1 / 3)
    assert scale["blocks/0/mlp/proj/kernel"] == pytest.approx(1 / 3)
    assert scale["tok_embed/embedding"] == 1.0 and scale["ln_f/scale"] == 1.0
    assert scale["blocks/0/attn/q/bias"] == 1.0
    assert g.model_cfg.logit_scale == pytest.approx(cfg.logit_scale / 3)
    assert g.model_cfg.d_model == 24 and g.model_cfg.n_heads == 6


# ---------------------------------------------------------------- 6. errors


def test_bad_specs_raise_clear_errors():
    cfg, small = small_state("A")
    key = jax.random.PRNGKey(0)
    with pytest.raises(UnknownCandidate, match="valid names: exact_copy, perturbative"):
        grow("exact_clone", small, cfg, GrowthConfig(), OPTIM, key)
    assert issubclass(UnknownCandidate, ValueError) and issubclass(GrowthError, ValueError)
    with pytest.raises(GrowthError, match=r"growth.k=1 must be an integer >= 2"):
        grow("exact_copy", small, cfg, GrowthConfig(k=1), OPTIM, key)
    with pytest.raises(GrowthError, match=r"growth.k=2.5 must be an integer >= 2"):
        grow("exact_copy", small, cfg, GrowthConfig(k=2.5), OPTIM, key)
    with pytest.raises(GrowthError, match=r"growth.k=2.5"):
        wide_config(cfg, GrowthConfig(k=2.5))
    with pytest.raises(GrowthError, match="growth.schedule='warm'"):
        grow("exact_copy", small, cfg, GrowthConfig(schedule="warm"), OPTIM, key)
    with pytest.raises(GrowthError, match="growth.perturbative.snr=0"):
        bad = GrowthConfig()
        bad.perturbative.snr = 0
        grow("perturbative", small, cfg, bad, OPTIM, key)
    other = dataclasses.replace(cfg, d_model=16)
    with pytest.raises(
        GrowthError, match=r"has shape \(8,\) but the model config expects \(16,\).*d_model=16.*pass the"
    ):
        grow("exact_copy", small, other, GrowthConfig(), OPTIM, key)
    tied_cfg, tied = small_state("B")
    with pytest.raises(GrowthError, match="missing.*lm_head"):
        grow("exact_copy", tied, dataclasses.replace(tied_cfg, tie_embeddings=False), GrowthConfig(), OPTIM, key)
    with pytest.raises(GrowthError, match="structured_non_clone does not support tied embeddings"):
        grow("structured_non_clone", tied, tied_cfg, GrowthConfig(), OPTIM, key)
    assert {*PRESERVING, "scratch_wide", "continue_small"} <= set(registry.names())


# ---------------------------------------------------------------- configs

VARIANTS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "growth").glob("*.yaml"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_growth_variants_compose(variant):
    from hydra import compose, initialize_config_dir

    from growth.config import register_configs
    from growth.validate import to_config
    from growth.widen import check_options

    register_configs()
    with initialize_config_dir(str(Path(__file__).parents[1] / "configs"), version_base=None):
        cfg = to_config(compose("config", overrides=[f"growth={variant}"]))
    assert isinstance(cfg.growth, GrowthConfig)
    assert (cfg.growth == GrowthConfig()) == (variant == "default")
    for name in registry.names():
        check_options(name, cfg.growth)
