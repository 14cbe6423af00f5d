import dataclasses

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.interop import surgery
from growth.models import gpt as model_lib
from growth.models.gpt import ConfigError
from growth.training import optimizer, train
from growth.widen import depth as depth_growth

# ---------------------------------------------------------------- partial init


class LinenMLP(linen.Module):
    features: int
    n_layers: int
    last_bias_one: bool = False

    @linen.compact
    def __call__(self, x):
        for i in range(self.n_layers):
            last = i == self.n_layers - 1
            init = linen.initializers.ones if last and self.last_bias_one else linen.initializers.zeros
            x = linen.Dense(self.features, bias_init=init)(x)
            if not last:
                x = jax.nn.relu(x)
        return x


def test_partial_init_linen_mlp_count_and_values():
    D, F, N, k = 3, 5, 2, 3
    x = jnp.ones((1, D))
    small = LinenMLP(F, N).init(jax.random.PRNGKey(0), x)
    big = LinenMLP(F, N + k).init(jax.random.PRNGKey(1), x)
    out = surgery.partial_init(big, small)
    assert model_lib.param_count(out) == F * (D + 1) + (N + k - 1) * F * (F + 1)
    for i in range(N + k):
        src = small if i < N else big
        name = f"Dense_{i}"
        jax.tree.map(np.testing.assert_array_equal, out["params"][name], src["params"][name])
    # The big tree is untouched and the result runs.
    assert not np.array_equal(big["params"]["Dense_0"]["kernel"], out["params"]["Dense_0"]["kernel"])
    assert LinenMLP(F, N + k).apply(out, x).shape == (1, F)


class NNXMLP(nnx.Module):
    def __init__(self, n_layers: int, width: int, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(n_layers)])

    def __call__(self, x):
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return x


@pytest.mark.parametrize("as_pure_dict", [False, True])
def test_partial_init_nnx_mlp(as_pure_dict):
    L, m, seed = 2, 2, 7
    small = NNXMLP(L, 4, nnx.Rngs(seed))
    big = NNXMLP(L + m, 4, nnx.Rngs(seed + 1000))
    big_before = nnx.to_pure_dict(nnx.state(big, nnx.Param))
    small_state = nnx.state(small, nnx.Param)
    big_state = nnx.state(big, nnx.Param)
    if as_pure_dict:
        small_state, big_state = nnx.to_pure_dict(small_state), nnx.to_pure_dict(big_state)
    grown = surgery.partial_init(big_state, small_state)
    assert isinstance(grown, nnx.State) != as_pure_dict
    if as_pure_dict:
        state = nnx.state(big, nnx.Param)
        nnx.replace_by_pure_dict(state, grown)
        grown = state
    nnx.update(big, grown)
    for i in range(L + m):
        want = small.layers[i] if i < L else None
        for name in ("kernel", "bias"):
            got = np.asarray(getattr(big.layers[i], name)[...])
            ref = np.asarray(getattr(want, name)[...]) if want is not None else big_before["layers"][i][name]
            np.testing.assert_array_equal(got, ref)


def test_partial_init_shape_mismatch_names_key_and_shapes():
    small = {"params": {"Dense_0": {"kernel": jnp.ones((3, 5)), "bias": jnp.ones(5)}}}
    big = {"params": {"Dense_0": {"kernel": jnp.ones((3, 6)), "bias": jnp.ones(6)}}}
    with pytest.raises(surgery.SurgeryError, match=r"params/Dense_0/\w+: shape \((3, )?5,?\).*\((3, )?6,?\)"):
        surgery.partial_init(big, small)


def test_partial_init_strict_reports_dropped_keys():
    small = {"a": jnp.ones(2), "gone": jnp.ones(2)}
    big = {"a": jnp.zeros(2)}
    np.testing.assert_array_equal(surgery.partial_init(big, small)["a"], np.ones(2))
    with pytest.raises(surgery.SurgeryError, match="gone"):
        surgery.partial_init(big, small, strict=True)


# ---------------------------------------------------------------- zeroing


def test_zero_last_kernel_with_unit_bias_gives_ones():
    model = LinenMLP(4, 3, last_bias_one=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    params = model.init(jax.random.PRNGKey(1), x)
    zeroed = surgery.zero_kernel(params, "params/Dense_2")
    np.testing.assert_array_equal(model.apply(zeroed, x), np.ones((5, 4)))
    assert jax.tree.structure(zeroed) == jax.tree.structure(params)
    np.testing.assert_array_equal(zeroed["params"]["Dense_2"]["bias"], params["params"]["Dense_2"]["bias"])
    assert float(jnp.abs(params["params"]["Dense_2"]["kernel"]).sum()) > 0  # input untouched


CFG = ModelConfig(vocab_size=32, d_model=16, n_heads=2, n_layers=2, context=8)
OPTIM = OptimConfig(lr=1e-2, warmup_steps=1, decay_steps=10)


@pytest.fixture(scope="module")
def built():
    return model_lib.build(CFG, jax.random.PRNGKey(0))


def test_zero_kernel_on_gpt_path_and_bad_path(built):
    _, params = built
    zeroed = surgery.zero_kernel(params, "blocks/1/mlp/proj")
    assert float(jnp.abs(zeroed["blocks"][1]["mlp"]["proj"]["kernel"]).max()) == 0.0
    assert zeroed["blocks"][0] is params["blocks"][0]
    with pytest.raises(surgery.SurgeryError, match="no key 'nope'"):
        surgery.zero_kernel(params, "blocks/1/nope/proj")
    with pytest.raises(surgery.SurgeryError, match="not a layer with a 'kernel'"):
        surgery.zero_kernel(params, "blocks/1/mlp")


def test_ablation_losses_zero_block(built):
    graphdef, params = built
    eval_set = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (4, 9), 0, 32))
    losses = surgery.ablation_losses(graphdef, params, eval_set, batch_size=4)
    assert set(losses) == {"none", 0, 1} and all(np.isfinite(v) for v in losses.values())
    assert losses[1] != losses["none"]
    assert surgery.loss_with_zeroed(graphdef, params, eval_set, 1, batch_size=4) == pytest.approx(losses[1])


# ---------------------------------------------------------------- depth growth


@pytest.fixture(scope="module")
def trained(built):
    """A trained-ish small state: perturbed weights, non-zero moments, every counter at 3."""
    graphdef, params = built
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), 3 * len(leaves))

    def noise(i, scale):
        return jax.tree.unflatten(
            treedef, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys[i::3], leaves, strict=True)]
        )

    params = jax.tree.map(jnp.add, params, noise(0, 0.1))  # non-zero biases, non-unit gains
    state = train.init_state(params, optimizer.make_optimizer(OPTIM), jax.random.PRNGKey(2))
    opt = type(state.opt_state)(state.opt_state)
    three = jnp.asarray(3, jnp.int32)
    opt[optimizer.ADAM] = opt[optimizer.ADAM]._replace(
        count=three, mu=noise(1, 0.01), nu=jax.tree.map(jnp.square, noise(2, 0.01))
    )
    opt[optimizer.DIRECTION] = opt[optimizer.DIRECTION]._replace(count=three)
    opt[optimizer.SCHEDULE] = opt[optimizer.SCHEDULE]._replace(count=three, since_growth=three)
    state = state.replace(opt_state=opt, step=three)
    batch = jax.random.randint(jax.random.PRNGKey(3), (4, 9), 0, 32)
    return graphdef, state, batch


def test_depth_plan_positions():
    plan = depth_growth.depth_plan(3, depth_growth.DepthConfig(n_new=3, positions=[3, 0, 2]))
    assert plan == [("new", 0), ("old", 0), ("old", 1), ("new", 2), ("old", 2), ("new", 3)]
    appended = depth_growth.depth_plan(2, depth_growth.DepthConfig(n_new=2))
    assert appended == [("old", 0), ("old", 1), ("new", 2), ("new", 2)]
    with pytest.raises(ConfigError, match="one position per new block"):
        depth_growth.depth_plan(2, depth_growth.DepthConfig(n_new=2, positions=[1]))
    with pytest.raises(ConfigError, match="0..2"):
        depth_growth.depth_plan(2, depth_growth.DepthConfig(n_new=1, positions=[5]))


def test_deepen_identity_preserves_function_and_carries_state(trained):
    graphdef, small, batch = trained
    depth = depth_growth.DepthConfig(n_new=2, positions=[0, 1])  # new blocks 0 and 2; old 0 -> 1, old 1 -> 3
    grown, cfg = depth_growth.deepen_identity(small, CFG, depth, OPTIM, jax.random.PRNGKey(3))
    assert cfg.n_layers == 4 and dataclasses.replace(cfg, n_layers=2) == CFG
    big_graphdef, _ = model_lib.abstract(cfg)
    tokens = batch[:, :-1]
    want = model_lib.apply(graphdef, small.params, tokens)
    got = model_lib.apply(big_graphdef, grown.params, tokens)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)

    old_of = {1: 0, 3: 1}
    adam_s, adam_g = small.opt_state[optimizer.ADAM], grown.opt_state[optimizer.ADAM]
    for j in range(4):
        for tree_s, tree_g in ((adam_s.mu, adam_g.mu), (adam_s.nu, adam_g.nu), (small.params, grown.params)):
            if j in old_of:
                jax.tree.map(np.testing.assert_array_equal, tree_g["blocks"][j], tree_s["blocks"][old_of[j]])
            elif tree_g is not grown.params:
                assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(tree_g["blocks"][j]))
    for name in ("tok_embed", "pos_embed", "ln_f", "lm_head"):
        jax.tree.map(np.testing.assert_array_equal, adam_g.mu[name], adam_s.mu[name])
    for j in (0, 2):  # identity: output projections zero, the rest a fresh init
        for layer in ("attn/o", "mlp/proj"):
            lay = surgery.get_path(grown.params, f"blocks/{j}/{layer}")
            assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(lay))
        assert float(jnp.abs(grown.params["blocks"][j]["attn"]["q"]["kernel"]).max()) > 0
    # Every counter is carried unchanged.
    assert int(adam_g.count) == int(adam_s.count) == 3
    assert int(grown.opt_state[optimizer.DIRECTION].count) == int(small.opt_state[optimizer.DIRECTION].count)
    for a, b in zip(grown.opt_state[optimizer.SCHEDULE], small.opt_state[optimizer.SCHEDULE], strict=True):
        assert int(a) == int(b)
    assert int(grown.step) == int(small.step) == 3
    np.testing.assert_array_equal(grown.dropout_key, small.dropout_key)
    # New buffers throughout: donating the grown state cannot delete the small one's arrays.
    small_buffers = {x.unsafe_buffer_pointer() for x in jax.tree.leaves(small)}
    assert not small_buffers & {x.unsafe_buffer_pointer() for x in jax.tree.leaves(grown)}
    # The structure is the optimizer's own for the deeper model.
    fresh = train.init_state(grown.params, optimizer.make_optimizer(OPTIM), grown.dropout_key)
    assert jax.tree.structure(fresh) == jax.tree.structure(grown)


def test_deepen_copy_places_neighbour_copy(trained):
    _, small, _ = trained
    spec = GrowthConfig()
    spec.depth = depth_growth.DepthConfig(n_new=2, positions=[2, 0])  # a spec with a `depth` field
    grown, cfg = depth_growth.deepen_copy(small, CFG, spec, OPTIM, jax.random.PRNGKey(3))
    assert cfg.n_layers == 4  # plan: new(copy of 0), old 0, old 1, new(copy of 1)
    for j, src in ((0, 0), (1, 0), (2, 1), (3, 1)):
        jax.tree.map(np.testing.assert_array_equal, grown.params["blocks"][j], small.params["blocks"][src])
    for j in (0, 3):
        mu = grown.opt_state[optimizer.ADAM].mu["blocks"][j]
        assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(mu))
    direction = grown.opt_state[optimizer.DIRECTION]
    assert all(float(x) == 1.0 for x in jax.tree.leaves(direction.scale["blocks"][0]))


def test_deepen_fresh_and_local_layers(trained):
    _, small, _ = trained
    cfg = dataclasses.replace(CFG, attention_layers=["global", "local"], window_size=4)
    grown, new_cfg = depth_growth.deepen(
        small, cfg, depth_growth.DepthConfig(n_new=1, positions=[2], init="fresh"), OPTIM, jax.random.PRNGKey(3)
    )
    assert new_cfg.attention_layers == ["global", "local", "local"]
    assert float(jnp.abs(grown.params["blocks"][2]["mlp"]["proj"]["kernel"]).max()) > 0
    with pytest.raises(ConfigError, match="depth"):
        depth_growth.deepen_identity(small, CFG, object(), OPTIM, jax.random.PRNGKey(0))
