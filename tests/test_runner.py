import dataclasses
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from growth import presets, widen
from growth.config import Config, ConfigValueError
from growth.experiment import pool, pretrain, results, runner
from growth.models import gpt as model_lib
from growth.store import checkpoint
from growth.store.files import read_jsonl
from growth.training import optimizer, train
from growth.validate import to_config
from tests.conftest import REPO


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny pretrained base run shared by the runner tests (pretraining is the slow part)."""
    root = tmp_path_factory.mktemp("base")
    cfg = presets.tiny(root, ["name=rt", "pool=[exact_copy,asymmetric_reset,scratch_wide,continue_small]"])
    base_dir = pretrain.run(cfg)
    return dataclasses.replace(cfg, runner=dataclasses.replace(cfg.runner, base_dir=str(base_dir)))


def _with(cfg: Config, tmp_path, **kw) -> Config:
    return dataclasses.replace(cfg, out_dir=str(tmp_path / kw.pop("out", "out")), **kw)


def _values(path) -> dict:
    return {
        (r["seed"], r["growth_step"], r["candidate"], r["regime"], r["lag"], r["metric"]): r["value"]
        for r in read_jsonl(path)
        if r["metric"] != "wall_time"
    }


def test_results_hold_every_metric_for_every_candidate(base, tmp_path):
    rows = read_jsonl(runner.run(_with(base, tmp_path)))
    have = {(r["candidate"], r["regime"], r["metric"]) for r in rows}
    for regime in ("deterministic", "stochastic"):
        for cand in ("exact_copy", "asymmetric_reset", "scratch_wide"):
            for m in (
                "eval_loss",
                "loss_gap",
                "token_kl",
                "max_logit_diff",
                "probe_kl",
                "probe_rms",
                "auc",
                "final_loss",
            ):
                assert (cand, regime, m) in have, (cand, regime, m)
        assert ("exact_copy", regime, "probe_escape") in have
        assert ("scratch_wide", regime, "probe_escape") not in have
        assert ("continue_small", regime, "auc") in have
        assert ("continue_small", regime, "token_kl") not in have
    lags = sorted({r["lag"] for r in rows if r["metric"] == "eval_loss" and r["candidate"] == "exact_copy"})
    assert lags == [0, 2, 4]
    r0 = rows[0]
    assert {"config_hash", "versions", "experiment"} <= set(r0) and r0["versions"]["jax"]
    # exact_copy preserves the function: zero-step KL at float noise, escape exactly 0 without noise.
    v = _values(results.results_path(_with(base, tmp_path)))
    assert v[(0, 10, "exact_copy", "deterministic", 0, "token_kl")] < 1e-6
    assert v[(0, 10, "exact_copy", "deterministic", 2, "probe_escape")] < 1e-6
    assert v[(0, 10, "scratch_wide", "deterministic", 0, "token_kl")] > 1e-3


def test_deterministic_run_repeats_bit_for_bit(base, tmp_path):
    cfg = dataclasses.replace(base, regimes=["deterministic"])
    a = _values(runner.run(_with(cfg, tmp_path, out="a")))
    b = _values(runner.run(_with(cfg, tmp_path, out="b")))
    assert a == b


def test_stacked_equals_separate(base, tmp_path):
    cfg = dataclasses.replace(base, regimes=["stochastic"])
    stacked = _values(runner.run(_with(cfg, tmp_path, out="stacked")))
    for name in ("exact_copy", "scratch_wide"):
        alone = _values(runner.run(_with(dataclasses.replace(cfg, pool=[name]), tmp_path, out=f"alone_{name}")))
        for key, value in alone.items():
            assert key[2] == name
            assert stacked[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_finished_cell_is_skipped_and_killed_run_resumes(base, tmp_path, monkeypatch):
    reference = _values(runner.run(_with(base, tmp_path, out="ref")))

    cfg = _with(base, tmp_path, out="killed")
    real = runner.run_cell

    def crash_on_stochastic(cfg, key, *a, **k):
        if key.regime == "stochastic":
            raise KeyboardInterrupt("killed")
        return real(cfg, key, *a, **k)

    monkeypatch.setattr(runner, "run_cell", crash_on_stochastic)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg)
    assert {r["regime"] for r in read_jsonl(results.results_path(cfg))} == {"deterministic"}

    calls = []
    monkeypatch.setattr(
        runner, "run_cell", lambda cfg, key, *a, **k: calls.append(str(key.regime)) or real(cfg, key, *a, **k)
    )
    runner.run(cfg)
    assert calls == ["stochastic"]  # the finished deterministic cell was skipped
    assert _values(results.results_path(cfg)) == reference
    runner.run(cfg)
    assert calls == ["stochastic"]  # everything finished: nothing runs again


def test_nan_candidate_is_recorded_as_diverged(base, tmp_path, monkeypatch):
    def broken(small, small_cfg, spec, optim_cfg, key):
        grown = widen.grow("exact_copy", small, small_cfg, spec, optim_cfg, key)
        opt = type(grown.state.opt_state)(grown.state.opt_state)
        direction = opt[optimizer.DIRECTION]
        opt[optimizer.DIRECTION] = direction._replace(scale=jax.tree.map(lambda s: s * jnp.nan, direction.scale))
        return dataclasses.replace(grown, state=grown.state.replace(opt_state=opt))

    monkeypatch.setattr(widen.registry, "_ENTRIES", dict(widen.registry._ENTRIES))  # dropped after the test
    widen.register(widen.Candidate("broken", broken, 999, "k", False, "exact_copy with NaN updates"))
    cfg = _with(dataclasses.replace(base, pool=["exact_copy", "broken"], regimes=["deterministic"]), tmp_path)
    rows = read_jsonl(runner.run(cfg))
    div = [r for r in rows if r["candidate"] == "broken" and r["metric"] == "diverged"]
    assert len(div) == 1 and div[0]["lag"] == 1 and div[0]["value"] == 1.0
    assert not [r for r in rows if r["candidate"] == "broken" and r["metric"] in ("auc", "final_loss")]
    ok = {r["metric"] for r in rows if r["candidate"] == "exact_copy"}
    assert {"auc", "final_loss"} <= ok
    assert all(math.isfinite(r["value"]) for r in rows if r["candidate"] == "exact_copy")


def test_missing_or_corrupt_base_checkpoint_is_a_clear_error(base, tmp_path):
    missing = dataclasses.replace(base, runner=dataclasses.replace(base.runner, base_dir=str(tmp_path / "nowhere")))
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint for step 10 under .*nowhere"):
        runner.run(_with(missing, tmp_path))
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(base.runner.base_dir, copy)
    for f in (copy / "checkpoints" / "10" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\x00garbage")
    corrupt = dataclasses.replace(base, runner=dataclasses.replace(base.runner, base_dir=str(copy)))
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        runner.run(_with(corrupt, tmp_path, out="c"))


def test_bad_runner_settings_are_clear_errors(base, tmp_path):
    """A config built in code is checked where it is typed (to_config, its entry point), the pool by the runner."""
    with pytest.raises(ConfigValueError, match=r"regimes\[0\]: Invalid value 'noisy', expected one of \[deterministic"):
        to_config(_with(dataclasses.replace(base, regimes=["noisy"]), tmp_path))
    with pytest.raises(pool.PoolError, match="unknown candidates \\['bogus'\\]"):
        runner.run(_with(dataclasses.replace(base, pool=["bogus"]), tmp_path))
    bad_step = dataclasses.replace(base, runner=dataclasses.replace(base.runner, pool_step="pmap"))
    with pytest.raises(ConfigValueError, match="runner.pool_step: Invalid value 'pmap'"):
        to_config(_with(bad_step, tmp_path))
    with pytest.raises(ConfigValueError, match="replicates=0 is invalid: it must be an integer >= 1"):
        to_config(_with(dataclasses.replace(base, replicates=0), tmp_path))


def test_two_job_multirun_through_the_local_launcher(tmp_path):
    out = tmp_path / "mr"
    cmd = [
        sys.executable,
        "-m",
        "experiments.grow",
        "-m",
        "hydra/launcher=local",
        "experiment=smoke",
        "data=synthetic",
        f"out_dir={out}",
        "seed=0,1",
        "growth_step=6",
        "pool=[exact_copy,continue_small]",
        "regimes=[deterministic]",
        "probe_lag=1",
        "continuation_lag=2",
        "runner.eval_every=1",
        "pretrain.steps=6",
        "pretrain.checkpoint_steps=[6]",
        "pretrain.batch_size=4",
        "runner.batch_size=4",
        "data.synthetic_train_docs=200",
        "data.synthetic_valid_docs=20",
        "data.eval_sequences=4",
        "data.vocab_size=300",
        f"data.cache_dir={tmp_path / 'cache'}",
        "logger.wandb.mode=disabled",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "smoke" / "results.jsonl")
    assert {r["seed"] for r in rows} == {0, 1}
    assert {r["candidate"] for r in rows if r["metric"] == "auc"} == {"exact_copy", "continue_small"}


def test_depth_candidates_run_beside_width_candidates(base, tmp_path):
    cfg = _with(dataclasses.replace(base, pool=["exact_copy", "deepen_identity"], regimes=["deterministic"]), tmp_path)
    v = _values(runner.run(cfg))
    assert v[(0, 10, "deepen_identity", "deterministic", 0, "token_kl")] < 1e-6  # identity blocks preserve
    assert (0, 10, "deepen_identity", "deterministic", 4, "auc") in v
    assert (0, 10, "deepen_identity", "deterministic", 2, "probe_escape") not in v  # no inherited subspace map
    assert (
        v[(0, 10, "deepen_identity", "deterministic", 4, "auc")] != v[(0, 10, "exact_copy", "deterministic", 4, "auc")]
    )


def _eval_losses(path, candidate: str, replicate: int = 0) -> dict[int, float]:
    return {
        r["lag"]: r["value"]
        for r in read_jsonl(path)
        if r["metric"] == "eval_loss" and r["candidate"] == candidate and r["replicate"] == replicate
    }


def test_replicates_write_their_own_rows_and_sequence_losses(base, tmp_path, monkeypatch):
    cfg = _with(
        dataclasses.replace(base, pool=["exact_copy", "continue_small"], regimes=["stochastic"], replicates=2), tmp_path
    )
    path = runner.run(cfg)
    rows = read_jsonl(path)
    assert {r["replicate"] for r in rows} == {0, 1}
    assert {(r["lr_correction"], r["clip_mode"]) for r in rows} == {("none", "global")}
    r0, r1 = _eval_losses(path, "exact_copy", 0), _eval_losses(path, "exact_copy", 1)
    assert r0[0] == r1[0]  # the same pretrained model and eval set
    assert r0[4] != r1[4]  # another batch order and dropout keys
    pool_rows = [r for r in rows if r["metric"] == "wall_time"]
    assert len(pool_rows) == 2
    for row in pool_rows:
        seq = np.load(path.parent / row["seq_losses"])
        assert int(seq["replicate"]) == row["replicate"] and str(seq["clip_mode"]) == "global"
        names, lags = list(seq["candidates"]), list(seq["lags"])
        assert names == ["exact_copy", "continue_small"] and lags == [0, 2, 4]
        assert seq["loss"].shape == (2, 3, base.data.eval_sequences)
        for c, name in enumerate(names):
            curve = _eval_losses(path, name, row["replicate"])
            for i, lag in enumerate(lags):  # the rows are the mean of the per-sequence losses
                assert float(seq["loss"][c, i].mean()) == pytest.approx(curve[lag], rel=1e-6)
    # The unit of resumption is the replicate: asking for three runs only the third.
    calls = []
    real = runner.run_cell
    monkeypatch.setattr(
        runner, "run_cell", lambda cfg, key, *a, **k: calls.append(key.replicate) or real(cfg, key, *a, **k)
    )
    runner.run(dataclasses.replace(cfg, replicates=3))
    assert calls == [2]


def test_clone_consistent_clip_gives_back_the_small_gradient_norm(base):
    cfg = to_config(base)
    _, _, small = train.load_state(cfg.runner.base_dir, cfg.growth_step, cfg)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, cfg.model.vocab_size, (4, cfg.model.context + 1)))
    small_grads = jax.grad(train.loss_fn, argnums=1)(model_lib.abstract(cfg.model)[0], small.params, batch, None)
    small_norm = float(optimizer.weighted_norm(small_grads, small.opt_state[optimizer.CLIP].weight))
    norms = {}
    for mode in ("global", "clone_consistent"):
        optim = dataclasses.replace(cfg.optim, clip_mode=mode)
        grown = widen.grow("exact_copy", small, cfg.model, cfg.growth, optim, jax.random.PRNGKey(0))
        wide_graphdef = model_lib.abstract(grown.model_cfg)[0]
        wide_grads = jax.grad(train.loss_fn, argnums=1)(wide_graphdef, grown.state.params, batch, None)
        norms[mode] = float(optimizer.weighted_norm(wide_grads, grown.state.opt_state[optimizer.CLIP].weight))
    assert norms["clone_consistent"] == pytest.approx(small_norm, rel=1e-5)
    assert abs(norms["global"] - small_norm) > 1e-3 * small_norm  # the plain norm of the wide gradient differs


def _max_rel_gap(path) -> float:
    wide, small = _eval_losses(path, "exact_copy"), _eval_losses(path, "continue_small")
    assert sorted(wide) == sorted(small) and len(wide) == 9
    gap = max(abs(wide[lag] - small[lag]) / small[lag] for lag in small)
    print(f"max relative gap exact_copy vs continue_small: {gap:.2e}")
    return gap


def test_fan_in_with_clone_consistent_clip_follows_the_small_model_for_128_steps(base, tmp_path):
    """SPEC section 3: exact_copy + fan_in + clone-consistent clip is the small run, under the real optimizer."""
    cfg = dataclasses.replace(
        base,
        pool=["exact_copy", "continue_small"],
        regimes=["deterministic"],
        probe_lag=16,
        continuation_lag=128,
        runner=dataclasses.replace(base.runner, eval_every=16),
        growth=dataclasses.replace(base.growth, lr_correction="fan_in"),
    )
    assert cfg.optim.clip_norm == 1.0 and cfg.optim.eps == 1e-8  # the runner's default optimizer
    consistent = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, clip_mode="clone_consistent"))
    consistent_gap = _max_rel_gap(runner.run(_with(consistent, tmp_path, out="consistent")))
    assert consistent_gap <= 1e-4
    # The same run clipped by the wide model's own gradient norm leaves the small trajectory (1.3e-4
    # here, against 1e-7: the clip is what makes the difference).
    assert _max_rel_gap(runner.run(_with(cfg, tmp_path, out="global"))) > 100 * max(consistent_gap, 1e-8)


@pytest.mark.slow
def test_smoke_reproduction_end_to_end(tmp_path):
    """`experiments.reproduce experiment=smoke` on the in-tree TinyStories text: replicated rows, a report
    with CIs and three-way verdicts."""
    out = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "experiments.reproduce",
        "experiment=smoke",
        f"out_dir={out}",
        "logger.wandb.mode=disabled",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "smoke" / "results.jsonl")
    assert {r["replicate"] for r in rows} == {0, 1}
    claims = pd.read_csv(out / "smoke" / "report" / "claims.csv")
    assert len(claims) >= 6 and set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive", "not run"}
    report = (out / "smoke" / "report" / "report.md").read_text()
    assert "CI" in report
