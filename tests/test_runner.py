import dataclasses
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from growth import checkpoint, optimizer, pool, pretrain, results, runner, widen
from growth.config import Config, ConfigValueError, RunnerConfig
from growth.files import read_jsonl
from tests.conftest import REPO


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny pretrained base run shared by the runner tests (pretraining is the slow part)."""
    root = tmp_path_factory.mktemp("base")
    cfg = Config(
        name="rt",
        out_dir=str(root / "runs"),
        growth_step=10,
        pool=["exact_copy", "asymmetric_reset", "scratch_wide", "continue_small"],
        probe_lag=2,
        continuation_lag=4,
        runner=RunnerConfig(eval_every=2, batch_size=4, eval_chunk=4),
    )
    cfg.data = dataclasses.replace(
        cfg.data,
        vocab_size=320,
        context=16,
        synthetic_train_docs=200,
        synthetic_valid_docs=30,
        eval_sequences=8,
        cache_dir=str(root / "cache"),
    )
    cfg.model = dataclasses.replace(cfg.model, vocab_size=320, d_model=16, n_heads=2, n_layers=1, context=16)
    cfg.optim = dataclasses.replace(cfg.optim, warmup_steps=2, decay_steps=40)
    cfg.pretrain = dataclasses.replace(
        cfg.pretrain, steps=10, batch_size=4, checkpoint_steps=[10], save_every=10, eval_every=10, log_every=5
    )
    cfg.logger.wandb.mode = "disabled"
    cfg.logger.progress = False
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

    monkeypatch.setitem(widen.CANDIDATES, "broken", broken)
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
    with pytest.raises(ConfigValueError, match=r"regimes\[0\]: Invalid value 'noisy', expected one of \[deterministic"):
        runner.run(_with(dataclasses.replace(base, regimes=["noisy"]), tmp_path))
    with pytest.raises(pool.PoolError, match="unknown candidates \\['bogus'\\]"):
        runner.run(_with(dataclasses.replace(base, pool=["bogus"]), tmp_path))
    bad_step = dataclasses.replace(base, runner=dataclasses.replace(base.runner, pool_step="pmap"))
    with pytest.raises(ConfigValueError, match="runner.pool_step: Invalid value 'pmap'"):
        runner.run(_with(bad_step, tmp_path))
    with pytest.raises(runner.RunnerError, match="replicates=0 must be at least 1"):
        runner.run(_with(dataclasses.replace(base, replicates=0), tmp_path))


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
