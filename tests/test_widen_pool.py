"""The SPEC section 3b candidates (net2net, zero_pad, shrink_perturb, msg, bert2bert_aki, ligo): lag 0,
moments against a real optimizer step, counters, msg's ramp across a checkpoint, ligo's operator,
the width policy of every wide model (scratch_wide included), stacking and the runner rows."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from growth.config import GrowthConfig
from growth.experiment import pool, runner
from growth.models import gpt as model_lib
from growth.models import masks
from growth.store import checkpoint
from growth.store.files import read_jsonl
from growth.training import optimizer, train
from growth.widen import GrowthError, assemble, grow, net2net, registry, trees
from growth.widen.trees import flatten
from tests.test_runner import _with, base  # noqa: F401  (base: the shared tiny pretrained run)
from tests.test_widen import OPTIM, _batch, _close, _moments, logits, run, small_state

NEW = ["net2net", "zero_pad", "shrink_perturb", "msg", "bert2bert_aki", "ligo"]
PRESERVING = ["net2net", "msg"]
GAPPED = ["zero_pad", "shrink_perturb", "bert2bert_aki", "ligo"]
BATCHES = np.stack([np.asarray(_batch(500 + t)) for t in range(6)])  # stand-ins for pre-growth batches
# LayerNorm untied (A), RMSNorm tied (B), RMSNorm untied (C), at k = 2 and 3.
CASES = [("A", 2), ("A", 3), ("B", 2), ("B", 3), ("C", 2), ("C", 3)]


def _grow(name, small, cfg, spec, key=3):
    return grow(name, small, cfg, spec, OPTIM, jax.random.PRNGKey(key), BATCHES)


def _loss(cfg, params, batch):
    graphdef, _ = model_lib.abstract(cfg)
    return float(train.loss_fn(graphdef, params, jnp.asarray(batch), None))


def _fill42(monkeypatch):
    """Every template a candidate could read (fresh params, a fresh optimizer state) filled with 42."""
    make_opt, build = optimizer.make_optimizer, model_lib.build
    fill = lambda tree: jax.tree.map(lambda x: jnp.full_like(x, 42), tree)

    def opt42(optim_cfg):
        tx = make_opt(optim_cfg)
        return optax.GradientTransformation(lambda p: fill(tx.init(p)), tx.update)

    monkeypatch.setattr(optimizer, "make_optimizer", opt42)
    monkeypatch.setattr(model_lib, "build", lambda c, key: (build(c, key)[0], fill(build(c, key)[1])))


# ---------------------------------------------------------------- lag 0


@pytest.mark.parametrize("small_name,k", CASES)
def test_net2net_and_msg_preserve_with_new_parameters_at_42(small_name, k, monkeypatch):
    cfg, small = small_state(small_name)
    ref = logits(cfg, small.params)
    assert float(jnp.abs(ref).max()) > 0.5  # O(1) logits: the tolerance means something
    plain = {n: _grow(n, small, cfg, GrowthConfig(k=k)) for n in PRESERVING}
    _fill42(monkeypatch)
    for name in PRESERVING:
        g = _grow(name, small, cfg, GrowthConfig(k=k))
        params = flatten(g.state.params)
        if name == "msg":  # the new parameters really are 42, the function still the small one's
            q = np.asarray(params["blocks/0/attn/q/kernel"])
            assert (q[cfg.d_model :] == 42).all() and (q[:, cfg.d_model :] == 42).all()
        else:  # net2net reads no template: the state is the same
            for a, b in zip(jax.tree.leaves(plain[name].state), jax.tree.leaves(g.state), strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        diff = float(jnp.abs(logits(g.model_cfg, g.state.params) - ref).max())
        print(f"{small_name} k={k} {name}: max logit diff {diff:.2e}")
        assert diff <= 1e-5, f"{name}: max logit diff {diff}"


@pytest.mark.parametrize("small_name", ["A", "B"])
def test_non_preserving_candidates_have_a_finite_measured_gap(small_name):
    cfg, small = small_state(small_name)
    batch = _batch(77)
    small_loss = _loss(cfg, small.params, batch)
    for k in (2, 3):
        for name in GAPPED:
            g = _grow(name, small, cfg, GrowthConfig(k=k))
            gap = _loss(g.model_cfg, g.state.params, batch) - small_loss
            print(f"{small_name} k={k} {name}: loss gap {gap:+.4f}")
            assert np.isfinite(gap) and abs(gap) > 1e-4, (name, k, gap)


@pytest.mark.slow  # k = 2 and 3 are checked by default (preservation, gaps, moments); k = 4 only adds size
def test_every_new_candidate_grows_at_k4_with_finite_state():
    cfg, small = small_state("A")
    for name in NEW:
        g = _grow(name, small, cfg, GrowthConfig(k=4))
        assert g.model_cfg.d_model == 32 and g.model_cfg.n_heads == 8
        for x in jax.tree.leaves(g.state):
            assert bool(jnp.isfinite(x).all()), name
        _, losses = run(g.model_cfg, g.state, 10, 2)
        assert np.isfinite(losses).all(), name


# ---------------------------------------------------------------- moments and counters


@pytest.mark.parametrize("name,small_name,k", [("net2net", "A", 2), ("net2net", "B", 3), ("msg", "A", 2)])
def test_moments_equal_a_real_step_of_the_wide_model(name, small_name, k):
    """net2net: the cloned trajectory with per-unit counts; msg at mask 0: placed, new entries 0,
    which is the wide model's real gradient too (every new entry reads or writes a masked unit)."""
    mu, nu, g, g2 = _moments(name, small_name, k)
    floor_g, floor_g2 = (1e-3 * max(np.abs(x).max() for x in t.values()) for t in (g, g2))
    for path in mu:
        if masks.is_mask(path):
            assert not mu[path].any() and not nu[path].any()
            continue
        assert _close(mu[path], g[path], floor_g), f"mu {path}"
        assert _close(nu[path], g2[path], floor_g2, rtol=1e-3), f"nu {path}"


def test_counters_and_moments_of_each_definition():
    cfg, small = small_state("A")
    adam, sched = small.opt_state[optimizer.ADAM], small.opt_state[optimizer.SCHEDULE]
    small_mu = {p: np.asarray(x) for p, x in flatten(adam.mu).items()}
    for name in NEW:
        g = _grow(name, small, cfg, GrowthConfig(k=2))
        opt = g.state.opt_state
        want_count = 0 if name == "shrink_perturb" else int(adam.count)
        assert int(opt[optimizer.ADAM].count) == want_count, name
        assert int(opt[optimizer.SCHEDULE].count) == int(sched.count), name
        assert int(opt[optimizer.SCHEDULE].since_growth) == 0 and int(opt[optimizer.DIRECTION].count) == 0
        assert int(g.state.step) == int(small.step)
        mu = {p: np.asarray(x) for p, x in flatten(opt[optimizer.ADAM].mu).items()}
        fc = "blocks/0/mlp/fc/kernel"
        if name == "shrink_perturb":
            assert not any(x.any() for x in mu.values())
        if name in ("zero_pad", "msg"):  # placed: old block the small one's, new entries 0
            np.testing.assert_allclose(mu[fc][:8, :32], small_mu[fc], rtol=1e-6)
            assert not mu[fc][8:].any() and not mu[fc][:, 32:].any()
        if name == "bert2bert_aki":  # added copies' incoming moments from block 1 (the last from itself)
            np.testing.assert_allclose(mu[fc][:8, 32:], small_mu["blocks/1/mlp/fc/kernel"] / 2, rtol=1e-6)
            np.testing.assert_allclose(mu[fc][:8, :32], small_mu[fc] / 2, rtol=1e-6)
            last = "blocks/1/mlp/fc/kernel"
            np.testing.assert_allclose(mu[last][:8, 32:], small_mu[last] / 2, rtol=1e-6)


def test_net2net_replicates_non_uniformly_and_stays_exact():
    cfg, small = small_state("A")
    for k in (2, 3):
        rng = jax.random.PRNGKey(3)
        g_maps = net2net.unit_maps(cfg, k, np.random.default_rng(0))
        for space in ("mlp0", "mlp1"):
            counts = np.bincount(g_maps[space], minlength=32)
            assert counts.min() >= 1 and counts.max() > counts.min(), counts  # every unit kept, counts uneven
            np.testing.assert_array_equal(g_maps[space][:32], np.arange(32))
        grown = grow("net2net", small, cfg, GrowthConfig(k=k), OPTIM, rng)
        proj = np.asarray(flatten(grown.state.params)["blocks/0/mlp/proj/kernel"])
        small_proj = np.asarray(flatten(small.params)["blocks/0/mlp/proj/kernel"])
        # the outgoing rows of each small unit's copies add up to the small row (per residual copy)
        used = net2net.unit_maps(cfg, k, trees.numpy_rng(rng))["mlp0"]
        summed = np.zeros_like(small_proj)
        np.add.at(summed, used, proj[:, :8])
        np.testing.assert_allclose(summed, small_proj, atol=1e-6)
        assert np.unique(np.bincount(used)).size > 1
        diff = float(jnp.abs(logits(grown.model_cfg, grown.state.params) - logits(cfg, small.params)).max())
        assert diff <= 1e-5, diff


# ---------------------------------------------------------------- msg: the ramp is state


def assert_ramp_resumes(g, mask, tmp_path):
    """8 steps from growth (ramp_steps 6) equal 3 steps, a checkpoint restore mid-ramp, then 5 more, bit for bit."""
    whole, whole_losses = run(g.model_cfg, jax.tree.map(jnp.copy, g.state), 10, 8)
    assert mask(whole) == 1.0
    first, first_losses = run(g.model_cfg, jax.tree.map(jnp.copy, g.state), 10, 3)
    assert mask(first) == pytest.approx(0.5)  # killed mid-ramp
    mgr = checkpoint.manager(tmp_path / "ck")
    checkpoint.save(mgr, 3, first, {})
    target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), first)
    restored = jax.tree.map(jnp.asarray, checkpoint.restore(tmp_path / "ck", 3, target))
    assert mask(restored) == pytest.approx(0.5)
    resumed, rest_losses = run(g.model_cfg, restored, 13, 5)
    np.testing.assert_array_equal(np.concatenate([first_losses, rest_losses]), whole_losses)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_msg_ramp_resumes_exactly_across_a_checkpoint(tmp_path):
    cfg, small = small_state("A")
    spec = GrowthConfig(k=2)
    spec.msg.ramp_steps = 6
    g = _grow("msg", small, cfg, spec)
    mask = lambda st: float(np.asarray(flatten(st.params)["mask_resid"])[-1])
    assert mask(g.state) == 0.0
    assert_ramp_resumes(g, mask, tmp_path)


def test_msg_masks_follow_the_linear_ramp_and_get_no_update():
    cfg, small = small_state("C")
    spec = GrowthConfig(k=3)
    spec.msg.ramp_steps = 4
    g = _grow("msg", small, cfg, spec)
    state = g.state
    for t in range(6):
        m = {p: np.asarray(x) for p, x in flatten(state.params).items() if masks.is_mask(p)}
        want = min(1.0, t / 4)
        assert (m["mask_resid"][:8] == 1).all() and np.allclose(m["mask_resid"][8:], want)
        assert np.allclose(m["blocks/1/attn/mask_heads"][2:], want) and np.allclose(
            m["blocks/1/mlp/mask_hidden"][32:], want
        )
        assert m["mask_ramp"] == 4
        state, _ = run(g.model_cfg, state, 20 + t, 1)


# ---------------------------------------------------------------- ligo


def test_ligo_operator_loss_falls_and_reports_growth_tokens():
    cfg, small = small_state("A")
    spec = GrowthConfig(k=2)
    spec.ligo.lr = 3e-3
    g = _grow("ligo", small, cfg, spec)
    losses = np.array(g.growth_losses)
    print("ligo operator losses", losses.round(4))
    assert len(losses) == len(BATCHES) and losses[-1] < losses[0] - 1e-3
    assert g.growth_tokens == BATCHES.shape[0] * BATCHES.shape[1] * (BATCHES.shape[2] - 1)
    with pytest.raises(GrowthError, match="ligo trains its growth operator on pretraining batches"):
        grow("ligo", small, cfg, spec, OPTIM, jax.random.PRNGKey(0))


# ---------------------------------------------------------------- the width policy


def test_scratch_wide_follows_the_fan_in_policy():
    cfg, small = small_state("A")
    grown = {
        lr: grow("scratch_wide", small, cfg, GrowthConfig(k=2, lr_correction=lr), OPTIM, jax.random.PRNGKey(0))
        for lr in ("none", "fan_in")
    }
    scale = {
        lr: {p: float(s) for p, s in flatten(g.state.opt_state[optimizer.DIRECTION].scale).items()}
        for lr, g in grown.items()
    }
    assert set(scale["none"].values()) == {1.0}
    assert scale["fan_in"]["blocks/0/attn/q/kernel"] == pytest.approx(0.5) and scale["fan_in"]["lm_head/kernel"] == 0.5
    assert scale["fan_in"]["tok_embed/embedding"] == 1.0 and scale["fan_in"]["ln_f/scale"] == 1.0
    losses = {lr: run(g.model_cfg, g.state, 10, 4)[1] for lr, g in grown.items()}
    print("scratch_wide losses", losses)
    assert losses["none"][0] == losses["fan_in"][0]  # the same init
    assert np.abs(losses["none"][1:] - losses["fan_in"][1:]).max() > 1e-4


def test_every_wide_candidate_has_the_same_policy():
    cfg, small = small_state("A")
    optim = dataclasses.replace(OPTIM, clip_mode="clone_consistent")
    spec = GrowthConfig(k=3, lr_correction="fan_in")
    want = None
    for name in [*NEW, "exact_copy", "scratch_wide"]:
        g = grow(name, small, cfg, spec, optim, jax.random.PRNGKey(0), BATCHES)
        opt = g.state.opt_state
        policy = {
            p: (float(s), float(w))
            for (p, s), w in zip(
                flatten(opt[optimizer.DIRECTION].scale).items(),
                jax.tree.leaves(opt[optimizer.CLIP].weight),
                strict=True,
            )
            if not masks.is_mask(p)
        }
        assert policy["blocks/0/mlp/fc/kernel"] == pytest.approx((1 / 3, 1.0)), name
        assert policy["tok_embed/embedding"] == pytest.approx((1.0, 3.0)), name
        want = policy if want is None else want
        assert policy == want, name


# ---------------------------------------------------------------- pool, runner, errors


def test_same_shape_candidates_stack_into_one_group():
    cfg, small = small_state("A")
    grown = {n: _grow(n, small, cfg, GrowthConfig(k=2)) for n in [*NEW, "exact_copy", "scratch_wide"]}
    groups = pool.group_pool(grown)
    names = sorted(sorted(g.names) for g in groups)
    assert names == sorted([["msg"], sorted(set(grown) - {"msg"})]), names


def test_runner_rows_rank_every_new_candidate_and_charge_ligo(base, tmp_path):  # noqa: F811
    cfg = _with(base, tmp_path, pool=[*NEW, "exact_copy", "scratch_wide", "continue_small"], regimes=["deterministic"])
    rows = read_jsonl(runner.run(cfg))
    have = {(r["candidate"], r["metric"]): r["value"] for r in rows if r["lag"] in (0, cfg.continuation_lag)}
    for name in [*NEW, "exact_copy", "scratch_wide"]:
        assert (name, "auc") in have and np.isfinite(have[name, "auc"]), name
        assert (name, "growth_tokens") in have, name
    assert have["ligo", "growth_tokens"] == cfg.growth.ligo.steps * cfg.pretrain.batch_size * cfg.data.context
    assert have["exact_copy", "growth_tokens"] == 0
    assert have["net2net", "max_logit_diff"] < 1e-5 and have["msg", "max_logit_diff"] < 1e-5
    assert have["zero_pad", "loss_gap"] != 0


def test_bad_options_and_families_are_one_clear_line():
    cfg, small = small_state("A")
    key = jax.random.PRNGKey(0)
    cases = [
        ("msg", lambda s: setattr(s.msg, "ramp_steps", 0), "growth.msg.ramp_steps=0 must be an integer >= 1"),
        ("ligo", lambda s: setattr(s.ligo, "steps", 0), "growth.ligo.steps=0 must be an integer >= 1"),
        ("ligo", lambda s: setattr(s.ligo, "lr", 0.0), "growth.ligo.lr=0.0 must be > 0"),
        ("net2net", lambda s: setattr(s.net2net, "noise", -1.0), "growth.net2net.noise=-1.0 must be >= 0"),
        ("zero_pad", lambda s: setattr(s.zero_pad, "init_scale", -1.0), "growth.zero_pad.init_scale=-1.0"),
        ("shrink_perturb", lambda s: setattr(s.shrink_perturb, "shrink", -0.5), "growth.shrink_perturb.shrink=-0.5"),
    ]
    for name, edit, message in cases:
        spec = GrowthConfig(k=2)
        edit(spec)
        with pytest.raises(GrowthError, match=message.replace("(", r"\(").replace(".", r"\.")):
            grow(name, small, cfg, spec, OPTIM, key, BATCHES)
    llama = types.SimpleNamespace(family="llama")
    assemble.require_family("net2net", llama, net2net.FAMILIES)  # type: ignore[arg-type]  # net2net grows llama
    for name in NEW:
        if name == "net2net":
            continue
        with pytest.raises(
            GrowthError, match=f"candidate '{name}' grows the gpt family only, not model.family='llama'"
        ):
            assemble.require_family(name, llama)  # type: ignore[arg-type]
    assert set(NEW) <= set(registry.names())
