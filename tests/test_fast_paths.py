"""The throughput changes of issue 29 compute the same thing as the plain formulations they replace:
the attention's hand-written backward pass, the head's gradients formed in the forward pass, rank-2
dense matmuls, and several continuation steps per compiled program."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from growth.data import pipeline as data_lib
from growth.experiment import continuation, pool
from growth.models import attention
from growth.models.layers import Dropout
from growth.training import train


def _reference_attention(q, k, v, allowed, keep, divisor, keep_prob):
    """The textbook forward, differentiated by JAX: what growth.models.attention.attend replaced."""
    s = jnp.einsum("blhd,bmhd->bhlm", q, k).astype(jnp.float32) / divisor
    p = jax.nn.softmax(jnp.where(allowed, s, jnp.finfo(jnp.float32).min), axis=-1)
    p = p if keep is None else jnp.where(keep, p / keep_prob, 0.0)
    return jnp.einsum("bhlm,bmhd->blhd", p.astype(v.dtype), v)


@pytest.mark.parametrize("window,rate,d", [(0, 0.0, 4), (0, 0.25, 4), (3, 0.0, 4), (3, 0.25, 4), (0, 0.25, 3)])
def test_attention_backward_equals_autodiff(window, rate, d):
    B, L, H = 2, 7, 3
    q, k, v, w = (jax.random.normal(jax.random.PRNGKey(i), (B, L, H, d)) for i in range(4))
    allowed = attention.causal_mask(L, window)
    drop = Dropout(rate)
    keep = drop.keep_mask((B, H, L, L), deterministic=rate == 0, rngs=jax.random.PRNGKey(9))
    args = (allowed, keep, math.sqrt(d), drop.keep_prob)

    def loss(f):
        return lambda q, k, v: jnp.sum(jnp.tanh(f(q, k, v, *args)) * w)

    np.testing.assert_allclose(attention.attend(q, k, v, *args), _reference_attention(q, k, v, *args), atol=1e-6)
    ours = jax.grad(loss(attention.attend), argnums=(0, 1, 2))(q, k, v)
    ref = jax.grad(loss(_reference_attention), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(ours[1]).max()) > 1e-3  # the keys get a gradient at all


@pytest.mark.parametrize("d", [4, 16])
def test_scaling_q_instead_of_the_scores_is_exact_for_power_of_two_divisors(d):
    # The committed study's models have 16-wide heads: their numbers must not move with the change.
    B, L, H = 2, 9, 2
    q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (B, L, H, d)) for i in range(3))
    args = (attention.causal_mask(L), None, math.sqrt(d), 1.0)
    np.testing.assert_array_equal(attention.attend(q, k, v, *args), _reference_attention(q, k, v, *args))


def test_causal_mask_and_window():
    m = np.asarray(attention.causal_mask(5, 2))
    assert m[4].tolist() == [False, False, False, True, True]
    assert np.asarray(attention.causal_mask(4)).sum() == 10


@pytest.mark.parametrize("n", [1024, 1000])  # 1000: padded rows carry no weight
def test_head_cross_entropy_gradient_equals_full_logits(n):
    h = jax.random.normal(jax.random.PRNGKey(0), (1, n, 16))
    w = jax.random.normal(jax.random.PRNGKey(1), (16, 300)) * 0.3
    t = jax.random.randint(jax.random.PRNGKey(2), (1, n), 0, 300)
    ours_value, ours = jax.value_and_grad(lambda h, w: train.head_cross_entropy(h, w, t, 256), argnums=(0, 1))(h, w)
    ref_value, ref = jax.value_and_grad(lambda h, w: train.cross_entropy(h @ w, t), argnums=(0, 1))(h, w)
    assert float(ours_value) == pytest.approx(float(ref_value), rel=1e-6)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    # Without differentiation the loss alone is computed, and it is the same value.
    assert float(train.head_cross_entropy(h, w, t, 256)) == pytest.approx(float(ref_value), rel=1e-6)


def test_dense_keeps_nnx_linear_math(tiny_cfg):
    graphdef, _, state = train.fresh_state(tiny_cfg)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, tiny_cfg.model.d_model))
    fc = state.params["blocks"][0]["mlp"]["fc"]
    expected = jnp.einsum("bld,df->blf", x, fc["kernel"]) + fc["bias"]
    from flax import nnx

    layer = nnx.merge(graphdef, state.params).blocks[0].mlp.fc
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6, atol=1e-6)
    assert layer(x).shape == (3, 5, fc["kernel"].shape[1])


@pytest.mark.parametrize("start,stop,most", [(0, 37, 16), (5, 6, 16), (3, 100, 1), (0, 0, 8), (7, 40, 5)])
def test_blocks_cover_the_range_in_powers_of_two(start, stop, most):
    out = list(continuation.blocks(start, stop, most))
    steps = [s for first, n in out for s in range(first, first + n)]
    assert steps == list(range(start, stop))
    assert all(n & (n - 1) == 0 and n <= most for _, n in out)
    assert len({n for _, n in out}) <= int(math.log2(most)) + 1


def test_scanned_steps_equal_single_steps(tiny_cfg):
    """N steps in one lax.scan program give the states and per-step losses of N jitted calls."""
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, dropout=0.1))
    graphdef, tx, state = train.fresh_state(cfg)
    data = data_lib.load(cfg.data)
    batches = np.stack([data_lib.batch_at(data, 0, t, 8) for t in range(5)])
    single = train.jit_train_step(graphdef, tx, cfg.optim)
    scanned = train.jit_steps(train.make_train_step(graphdef, tx, cfg.optim))
    copy = jax.tree.map(jnp.copy, state)
    losses = []
    for b in batches:
        state, m = single(state, jnp.asarray(b))
        losses.append(float(m["loss"]))
    copy, ms = scanned(copy, jnp.asarray(batches))
    np.testing.assert_allclose(np.asarray(ms["loss"]), losses, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(copy), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


def test_stepper_dispatch_does_not_change_the_run(tiny_cfg):
    """A cell's continuation with 16 steps per program equals the one-step-per-call run."""
    cfg = dataclasses.replace(tiny_cfg, pool=["exact_copy", "scratch_wide", "continue_small"], growth_step=0)
    data = data_lib.load(cfg.data)
    small = train.fresh_state(cfg)[2]
    out = {}
    for most in (1, 16):
        c = dataclasses.replace(cfg, runner=dataclasses.replace(cfg.runner, steps_per_dispatch=most))
        groups = pool.group_pool(pool.build_pool(c, small))
        stepper = continuation.Stepper(c, data, groups, 0.0, batch_seed=3, mesh=None)
        s, first = stepper.advance(jax.tree.map(jnp.copy, small), groups, 0, 5, lambda n: None)
        s, second = stepper.advance(s, groups, 5, 23, lambda n: None)
        out[most] = (s, groups[0].state, np.concatenate([first[0], second[0]]))
    assert out[16][2].shape == (23, 2)
    np.testing.assert_allclose(out[16][2], out[1][2], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out[16][:2]), jax.tree.leaves(out[1][:2]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("concurrent, stack_at_most", [(True, 0), (False, 1), (True, 1)])
def test_concurrent_and_unstacked_programs_give_the_same_run_bit_for_bit(tiny_cfg, concurrent, stack_at_most):
    """Each group's (and the small reference's) program from its own thread, and a group's candidates
    trained in pieces of one, leave every candidate's losses and state equal bit for bit (dropout on),
    and the group's state comes back stacked in its order."""
    cfg = dataclasses.replace(
        tiny_cfg, pool=["exact_copy", "zero_pad", "msg", "scratch_wide", "continue_small"], growth_step=0
    )
    data = data_lib.load(cfg.data)
    small = train.fresh_state(cfg)[2]
    out = {}
    for key in ((False, 0), (concurrent, stack_at_most)):
        runner = dataclasses.replace(cfg.runner, concurrent_programs=key[0], stack_at_most=key[1])
        c = dataclasses.replace(cfg, runner=runner)
        groups = pool.group_pool(pool.build_pool(c, small))
        assert len(groups) == 2  # msg has a shape of its own
        stepper = continuation.Stepper(c, data, groups, 0.1, batch_seed=3, mesh=None)
        s, losses = stepper.advance(jax.tree.map(jnp.copy, small), groups, 0, 21, lambda n: None)
        per = {
            n: (lo[:, i], jax.tree.map(lambda x, i=i: x[i], g.state))
            for g, lo in zip(groups, losses, strict=True)
            for i, n in enumerate(g.names)
        }
        out[key] = (s, per)
    base, other = out[(False, 0)], out[(concurrent, stack_at_most)]
    assert sorted(base[1]) == sorted(other[1])
    for a, b in zip(
        jax.tree.leaves((base[0], base[1])), jax.tree.leaves((other[0], {n: other[1][n] for n in base[1]})), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_steps_per_dispatch_leaves_the_cell_hash(tiny_cfg):
    """Finished cells stay finished whatever the dispatch: the setting changes no number (test above)."""
    from growth.experiment import results

    tiny_cfg = pool.with_default_pool(tiny_cfg)
    one = dataclasses.replace(tiny_cfg, runner=dataclasses.replace(tiny_cfg.runner, steps_per_dispatch=1))
    assert results.cell_hash(one) == results.cell_hash(tiny_cfg)
    for field, value in (("concurrent_programs", False), ("stack_at_most", 0)):
        apart = dataclasses.replace(tiny_cfg, runner=dataclasses.replace(tiny_cfg.runner, **{field: value}))
        assert results.cell_hash(apart) == results.cell_hash(tiny_cfg)
    other = dataclasses.replace(tiny_cfg, runner=dataclasses.replace(tiny_cfg.runner, eval_every=3))
    assert results.cell_hash(other) != results.cell_hash(tiny_cfg)
