import dataclasses
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from growth.config import Config, ConfigValueError, ModelConfig, OptimConfig, PoolStep
from growth.data import pipeline as data_lib
from growth.experiment import pretrain
from growth.store import checkpoint
from growth.store.files import read_jsonl
from growth.training import optimizer, train
from growth.validate import to_config


def _leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_schedule_warmup_then_cosine():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, decay_steps=110, min_lr_ratio=0.1)
    sched = optimizer.make_schedule(cfg)
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(0.5)
    assert float(sched(10)) == pytest.approx(1.0)
    assert float(sched(110)) == pytest.approx(0.1)
    const = optimizer.make_schedule(dataclasses.replace(cfg, decay="constant"))
    assert float(const(500)) == pytest.approx(1.0)


def test_counters_move_once_per_step(tiny_cfg):
    graphdef, tx, state = train.fresh_state(tiny_cfg)
    data = data_lib.load(tiny_cfg.data)
    step = train.jit_train_step(graphdef, tx, tiny_cfg.optim)
    for t in range(3):
        state, metrics = step(state, data_lib.batch_at(data, 0, t, 8))
    assert int(state.step) == 3
    assert int(state.opt_state[optimizer.ADAM].count) == 3
    assert int(state.opt_state[optimizer.SCHEDULE].count) == 3
    assert int(state.opt_state[optimizer.SCHEDULE].since_growth) == 3
    # metrics["lr"] is the rate step 2 used; current_lr is what step 3 will use.
    sched = optimizer.make_schedule(tiny_cfg.optim)
    assert float(metrics["lr"]) == pytest.approx(float(sched(2)))
    assert float(optimizer.current_lr(tiny_cfg.optim, state.opt_state)) == pytest.approx(float(sched(3)))


@pytest.mark.parametrize("how", list(PoolStep))
def test_pool_step_is_each_candidates_own_step(tiny_cfg, how):
    """Stacked candidates (different params, with dropout) step exactly as each would alone."""
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, dropout=0.1))
    graphdef, tx, _ = train.fresh_state(cfg)
    states = [train.fresh_state(dataclasses.replace(cfg, seed=s))[2] for s in (1, 2, 3)]
    data = data_lib.load(cfg.data)
    batches = [jnp.asarray(data_lib.batch_at(data, 0, t, 8)) for t in range(2)]
    pool_step = train.jit_pool_step(graphdef, tx, cfg.optim, how)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    for b in batches:
        stacked, pool_metrics = pool_step(stacked, b)
    step = train.jit_train_step(graphdef, tx, cfg.optim)
    for i, s in enumerate(states):
        for b in batches:
            s, m = step(s, b)
        assert float(pool_metrics["loss"][i]) == pytest.approx(float(m["loss"]), rel=1e-5)
        for x, y in zip(jax.tree.leaves(jax.tree.map(lambda a, i=i: a[i], stacked)), jax.tree.leaves(s), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    assert float(pool_metrics["loss"][0]) != float(pool_metrics["loss"][1])  # the candidates differ
    bad = dataclasses.replace(cfg, runner=dataclasses.replace(cfg.runner, pool_step="bogus"))
    with pytest.raises(
        ConfigValueError, match=r"runner.pool_step: Invalid value 'bogus', expected one of \[map, vmap\]"
    ):
        to_config(bad)


def test_stacked_evaluation_map_equals_vmap_equals_one_by_one(tiny_cfg):
    """The evaluation programs give each stacked candidate its own per-sequence losses, either way."""
    from growth.experiment import pool

    graphdef, _, _ = train.fresh_state(tiny_cfg)
    params = [train.fresh_state(dataclasses.replace(tiny_cfg, seed=s))[2].params for s in (1, 2, 3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    chunk = np.asarray(data_lib.load(tiny_cfg.data).eval_BxT1[:4], np.int32)
    alone = np.stack([np.asarray(train.sequence_losses(graphdef, p, chunk)) for p in params])
    for how in PoolStep:
        got = np.asarray(pool.stacked_eval(tiny_cfg.model, how)(stacked, chunk))
        np.testing.assert_allclose(got, alone, rtol=1e-6)
    assert not np.allclose(alone[0], alone[1])  # the candidates differ


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One finished tiny pretraining run, shared by the tests that only read it."""
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path_factory.mktemp("pre"))
    return cfg, pretrain.run(cfg)


def test_short_pretrain_lowers_loss(pretrained):
    _, out = pretrained
    rows = read_jsonl(out / "metrics.jsonl")
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert len(evals) == 3
    assert evals[-1] < evals[0] - 0.3
    assert checkpoint.steps(out / "checkpoints") == [10, 20, 30]


def test_resume_equals_uninterrupted_run_bit_for_bit(pretrained, tmp_path):
    tiny_cfg, full = pretrained
    _, _, reference = train.load_state(full, 30, tiny_cfg)

    # A "killed" run: same config, other out_dir, stopped after step 20, then started again.
    killed = dataclasses.replace(tiny_cfg, out_dir=str(tmp_path / "other"))
    killed.pretrain = dataclasses.replace(tiny_cfg.pretrain, steps=20)
    partial = pretrain.run(killed)
    shutil.rmtree(partial / "checkpoints" / "20")  # lose the last save too: resume from step 10
    resumed_cfg = dataclasses.replace(killed, pretrain=tiny_cfg.pretrain)
    resumed = pretrain.run(resumed_cfg)
    assert resumed == partial
    _, _, state = train.load_state(resumed, 30, resumed_cfg)
    assert _leaves_equal(state, reference)
    steps = [r["step"] for r in read_jsonl(resumed / "metrics.jsonl")]
    assert steps == sorted(set(steps))  # no duplicated rows from the replayed steps


def test_nan_loss_stops_with_the_step(tiny_cfg):
    tiny_cfg.optim = dataclasses.replace(tiny_cfg.optim, lr=1e9, clip_norm=0.0, warmup_steps=0)
    with pytest.raises(train.TrainingDiverged, match=r"at step \d+"):
        pretrain.run(tiny_cfg)


def test_missing_and_corrupt_checkpoints_are_clear_errors(pretrained, tmp_path):
    tiny_cfg, finished = pretrained
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint for step 25.*available: \\[10, 20, 30\\]"):
        train.load_state(out, 25, tiny_cfg)
    for f in (out / "checkpoints" / "30" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        train.load_state(out, 30, tiny_cfg)


def test_checkpoint_holds_the_run_config(pretrained):
    _, out = pretrained
    saved = checkpoint.read_config(out / "checkpoints", 10)
    assert saved["model"]["d_model"] == 16 and saved["seed"] == 0


def test_eval_is_mean_token_loss(tiny_cfg):
    graphdef, _, state = train.fresh_state(tiny_cfg)
    data = data_lib.load(tiny_cfg.data)
    value = train.make_eval_fn(graphdef, batch_size=3)(state.params, data.eval_BxT1)
    direct = train.loss_fn(graphdef, state.params, jnp.asarray(data.eval_BxT1, jnp.int32), None)
    assert value == pytest.approx(float(direct), rel=1e-5)


def test_one_train_step_golden_values():
    """A fixed tiny model, batch and optimizer: one step's loss, gradient norm and parameters.

    Update these numbers only when a change is *meant* to alter the step's numerics (model, loss,
    optimizer chain, initialisation): rerun the body and paste the new values, saying why in the
    commit. A refactor that moves them is a bug.
    """
    cfg = Config(
        seed=0,
        model=ModelConfig(vocab_size=64, d_model=16, n_heads=2, n_layers=2, context=8),
        optim=OptimConfig(lr=1e-2, warmup_steps=0, decay="constant", clip_norm=1.0),
    )
    graphdef, tx, state = train.fresh_state(cfg)
    batch = jnp.asarray(np.arange(2 * 9).reshape(2, 9) * 7 % 64, jnp.int32)
    state, metrics = train.jit_train_step(graphdef, tx, cfg.optim)(state, batch)
    leaves = jax.tree.leaves(state.params)
    assert float(metrics["loss"]) == pytest.approx(4.162848949432373, rel=1e-5)
    assert float(metrics["grad_norm"]) == pytest.approx(1.9601188898086548, rel=1e-5)  # > clip_norm: clipped
    assert float(metrics["lr"]) == pytest.approx(1e-2, rel=1e-6)
    assert float(sum(jnp.sum(x) for x in leaves)) == pytest.approx(78.35287475585938, rel=1e-5)
    assert float(sum(jnp.sum(jnp.abs(x)) for x in leaves)) == pytest.approx(213.64608764648438, rel=1e-5)


def test_checkpoint_of_an_older_state_layout_is_refused(tiny_cfg, monkeypatch):
    _, _, state = train.fresh_state(tiny_cfg)
    directory = Path(tiny_cfg.out_dir) / "old"
    monkeypatch.setattr(checkpoint, "LAYOUT_VERSION", 1)  # as an older version of the harness wrote it
    checkpoint.save(checkpoint.manager(directory / "checkpoints"), 5, state, {"seed": 0})
    monkeypatch.undo()
    with pytest.raises(
        checkpoint.CheckpointError, match="has state layout 1, but this version of the harness reads layout 2"
    ):
        train.load_state(directory, 5, tiny_cfg)
