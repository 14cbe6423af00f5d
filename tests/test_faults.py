"""Fault injection: corrupt checkpoints, torn appends, many workers on one out_dir, full or read-only
disks, diverging pretraining. Each fault ends in a correct result or one clear line, never a silently
wrong row."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.cli import user_errors
from growth.config import Config, RunnerConfig, WorkersConfig
from growth.experiment import pretrain, results, runner
from growth.experiment.results import CellKey
from growth.store import checkpoint, files, lease
from growth.training import train
from tests.conftest import REPO, tiny_config

ENV = dict(os.environ, PYTHONPATH=str(REPO))


def flip_bytes(step_dir: Path) -> Path:
    """Overwrite 16 bytes in the middle of the largest array file of a checkpoint, its size unchanged."""
    data = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 16] = bytes(b ^ 0xFF for b in raw[mid : mid + 16])
    data.write_bytes(bytes(raw))
    return data


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    """A tiny pretraining run (checkpoints at 10, 20, 30)."""
    cfg = tiny_config(tmp_path_factory.mktemp("pre"))
    return cfg, pretrain.run(cfg)


def _grow_cfg(cfg: Config, out: Path, **kw) -> Config:
    return dataclasses.replace(
        cfg,
        out_dir=str(out),
        growth_step=10,
        pool=["exact_copy", "scratch_wide", "continue_small"],
        probe_lag=2,
        continuation_lag=4,
        runner=RunnerConfig(eval_every=2, batch_size=4, eval_chunk=4, **kw),
    )


# ---------------------------------------------------------------- checkpoints


def test_flipped_bytes_are_caught_by_the_manifest(tmp_path):
    state = {"mu": {"w": np.random.RandomState(0).randn(64, 64).astype(np.float32)}, "count": np.asarray(3)}
    checkpoint.save(checkpoint.manager(tmp_path), 5, state, {"seed": 0})
    restored = checkpoint.restore(tmp_path, 5, state)
    assert np.array_equal(restored["mu"]["w"], state["mu"]["w"])
    flip_bytes(tmp_path / "5")
    with pytest.raises(checkpoint.CorruptCheckpoint, match=r"step 5 under .* is corrupt: array \['mu'\]\['w'\]") as e:
        checkpoint.restore(tmp_path, 5, state)
    assert "\n" not in str(e.value) and "Delete" in str(e.value)


def test_a_checkpoint_without_manifest_is_refused(tmp_path):
    state = {"w": np.ones(4, np.float32)}
    checkpoint.save(checkpoint.manager(tmp_path), 1, state, {"seed": 0})
    shutil.rmtree(tmp_path / "1" / "manifest")
    with pytest.raises(checkpoint.CorruptCheckpoint, match="has no checksum manifest"):
        checkpoint.restore(tmp_path, 1, state)


def test_nan_where_the_saved_state_was_finite_is_named(tmp_path, monkeypatch):
    state = {"w": np.ones(8, np.float32)}
    checkpoint.save(checkpoint.manager(tmp_path), 1, state, {"seed": 0})
    real = ocp.CheckpointManager.restore

    def nan_restore(self, step, args=None):
        out = real(self, step, args=args)
        if "state" in out:
            out["state"]["w"] = np.full(8, np.nan, np.float32)
        return out

    monkeypatch.setattr(ocp.CheckpointManager, "restore", nan_restore)
    with pytest.raises(checkpoint.CorruptCheckpoint, match=r"\['w'\] restores with NaN or inf but was finite"):
        checkpoint.restore(tmp_path, 1, state)


def test_corrupt_base_checkpoint_gives_an_error_and_no_finished_cell(pre, tmp_path):
    cfg, out = pre
    copy = tmp_path / "base"
    shutil.copytree(out, copy)
    flip_bytes(copy / "checkpoints" / "10")
    grow = _grow_cfg(cfg, tmp_path / "runs", base_dir=str(copy))
    with pytest.raises(checkpoint.CheckpointError, match="is corrupt"):
        runner.run(grow)
    assert not results.finished_cells(results.results_path(grow), results.cell_hash(grow))


def test_pretraining_redoes_a_corrupt_latest_checkpoint_from_the_newest_sound_one(pre, tmp_path):
    cfg, out = pre
    _, _, reference = train.load_state(out, 30, cfg)
    other = dataclasses.replace(cfg, out_dir=str(tmp_path / "runs"))
    shutil.copytree(out, pretrain.run_dir(other))
    flip_bytes(pretrain.run_dir(other) / "checkpoints" / "30")
    flip_bytes(pretrain.run_dir(other) / "checkpoints" / "20")
    rerun = pretrain.run(other)  # 30 and 20 are corrupt: resumes from 10
    _, _, again = train.load_state(rerun, 30, other)
    for a, b in zip(jax_leaves(reference), jax_leaves(again), strict=True):
        assert np.array_equal(a, b)
    assert sorted(p.name.split("-")[0] for p in (rerun / "corrupt").iterdir()) == ["20", "30"]
    metrics = files.read_jsonl(rerun / "metrics.jsonl")
    assert [r["step"] for r in metrics] == sorted({r["step"] for r in metrics})  # log redone, not doubled


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# ---------------------------------------------------------------- appends


def test_torn_tail_then_append_loses_no_row(tmp_path):
    path = tmp_path / "results.jsonl"
    files.append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as f:
        f.write('{"a": 3, "tor')  # a crash mid-append
    files.append_jsonl(path, [{"a": 4}, {"a": 5}])
    scan = files.scan_jsonl(path)
    assert [r["a"] for r in scan.rows] == [1, 2, 4, 5]
    assert scan.unparseable == 1


def _cell_rows(write_id: str, n_rows: int, present: int) -> list[dict]:
    common = {"config_hash": "h", "seed": 0, "growth_step": 10, "regime": "deterministic", "replicate": 0}
    rows = [common | {"metric": "eval_loss", "write_id": write_id} for _ in range(present - 1)]
    return [*rows, common | {"metric": "wall_time", "write_id": write_id, "n_rows": n_rows}]


def test_a_cell_with_a_lost_row_is_not_finished(tmp_path):
    path = tmp_path / "results.jsonl"
    files.append_jsonl(path, _cell_rows("w1", n_rows=5, present=4))  # one row lost
    assert results.finished_cells(path, "h") == {}
    files.append_jsonl(path, _cell_rows("w2", n_rows=5, present=5))  # the redo
    assert results.finished_cells(path, "h").keys() == {CellKey(0, 10, "deterministic", 0)}


def test_report_header_states_the_unparseable_count(tmp_path):
    from analysis.loading.load import load_results
    from analysis.report.render import _provenance

    src = REPO / "docs" / "results" / "paper_cpu" / "results.jsonl"
    path = tmp_path / "paper_cpu" / "results.jsonl"
    path.parent.mkdir()
    path.write_text(src.read_text() + '{"experiment": "paper_cpu", "se')
    loaded = load_results(tmp_path)
    assert loaded.n_unparseable == 1
    assert "1 unparseable line(s) skipped" in _provenance(loaded, tmp_path)


# ---------------------------------------------------------------- leases


def test_a_live_lease_is_respected_and_a_stale_one_taken_over(tmp_path):
    workers = WorkersConfig(heartbeat_s=0.05, stale_s=0.5, poll_s=0.1)
    first = lease.claim(tmp_path, "cell", workers, lambda: False)
    assert first is not None
    assert lease.claim(tmp_path, "cell", workers, lambda: False) is None  # live: heartbeats keep it fresh
    time.sleep(0.7)
    assert lease.claim(tmp_path, "cell", workers, lambda: False) is None  # still beating after stale_s
    first._stop_beating()  # the worker hangs: no more heartbeats
    time.sleep(0.7)
    second = lease.claim(tmp_path, "cell", workers, lambda: False)
    assert second is not None and second.owner["token"] != first.owner["token"]
    wrote = []
    assert not first.commit(lambda: wrote.append("first"))  # the old owner's rows are dropped
    assert second.commit(lambda: wrote.append("second"))
    assert wrote == ["second"] and not (tmp_path / "leases" / "cell.json").exists()


def test_the_lease_of_a_killed_worker_is_taken_over_at_once(tmp_path):
    code = (
        "import sys; from pathlib import Path; from growth.store import lease; from growth.config import WorkersConfig;"
        "lease.claim(Path(sys.argv[1]), 'cell', WorkersConfig(), lambda: False); import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=ENV, check=True, timeout=120)
    held = json.loads((tmp_path / "leases" / "cell.json").read_text())
    assert held["pid"] != os.getpid()
    assert lease.claim(tmp_path, "cell", WorkersConfig(), lambda: False) is not None  # pid gone: stale
    assert lease.claim(tmp_path, "done", WorkersConfig(), lambda: True) is None  # a finished cell is never claimed


def _grow_cmd(out: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "experiments.grow", "experiment=smoke", "data=synthetic", f"out_dir={out}",
        "growth_step=6", "pool=[exact_copy,scratch_wide,continue_small]", "probe_lag=1", "continuation_lag=2",
        "runner.eval_every=1", "pretrain.steps=6", "pretrain.checkpoint_steps=[6]", "pretrain.batch_size=4",
        "runner.batch_size=4", "data.synthetic_train_docs=200", "data.synthetic_valid_docs=20",
        "data.eval_sequences=4", "data.vocab_size=300", f"data.cache_dir={cache}", "logger.wandb.mode=disabled",
        "replicates=3", "workers.poll_s=0.5",
    ]  # fmt: skip


def _rows(path: Path) -> list[tuple]:
    return sorted(
        (r["seed"], r["growth_step"], r["regime"], r["replicate"], r["candidate"], r["lag"], r["metric"], r["value"])
        for r in files.read_jsonl(path)
        if r["metric"] != "wall_time"
    )


@pytest.mark.slow
def test_two_processes_on_one_empty_out_dir_compute_every_cell_once(tmp_path):
    cache = tmp_path / "cache"
    single = subprocess.run(_grow_cmd(tmp_path / "one", cache), cwd=REPO, env=ENV, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    procs = [
        subprocess.Popen(_grow_cmd(tmp_path / "two", cache), cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    two = tmp_path / "two" / "smoke" / "results.jsonl"
    walls = [r for r in files.read_jsonl(two) if r["metric"] == "wall_time"]
    keys = [(r["regime"], r["replicate"]) for r in walls]
    assert len(keys) == len(set(keys)) == 6  # every cell once
    assert len({r["write_id"] for r in walls}) == 6
    rows = _rows(two)
    assert len(rows) == len(set(rows))  # no duplicate row
    assert rows == _rows(tmp_path / "one" / "smoke" / "results.jsonl")
    assert not list((tmp_path / "two" / "smoke" / "leases").glob("*.json"))  # every lease released


# ---------------------------------------------------------------- storage and divergence


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_refused_append_is_one_line_naming_the_path(tmp_path, monkeypatch, code):
    path = tmp_path / "results.jsonl"

    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(files.StorageError, match=f"cannot write '{path}'") as e:
        files.append_jsonl(path, [{"a": 1}])
    assert "\n" not in str(e.value)


def test_a_full_disk_during_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    def full(self, step, args=None, **kw):
        raise ValueError('Error writing local file "/x/ocdbt.process_0/d/1": [OS error 28: No space left on device]')

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    with pytest.raises(files.StorageError, match=r"cannot write '.*/7': no space left on the device; free space"):
        checkpoint.save(checkpoint.manager(tmp_path), 7, {"w": np.ones(3)}, {})
    with pytest.raises(SystemExit, match=r"^error: cannot write .*/7': no space left on the device"), user_errors():
        checkpoint.save(checkpoint.manager(tmp_path), 7, {"w": np.ones(3)}, {})
    with pytest.raises(SystemExit, match=r"^error: cannot write '/ro/x': the file system is read-only"), user_errors():
        raise OSError(errno.EROFS, "Read-only file system", "/ro/x")


@pytest.mark.slow
def test_a_really_full_disk_during_pretraining_is_one_line(tmp_path):
    """A 256 KiB tmpfs in a private mount namespace (unshare; nothing outside the test sees it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    cmd = (
        f"mount -t tmpfs -o size=256k none {mnt} && exec {sys.executable} -m experiments.pretrain experiment=smoke"
        f" data=synthetic out_dir={mnt} data.cache_dir={tmp_path / 'cache'} logger.wandb.mode=disabled"
        " model.d_model=128 pretrain.steps=20 pretrain.save_every=10 pretrain.checkpoint_steps=[10,20]"
    )
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (private mount namespaces) is not available here")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "no space left on the device" in last, proc.stderr[-3000:]
    noise = proc.stderr + proc.stdout
    assert "Traceback" not in noise and "Event loop is closed" not in noise, noise[-3000:]


def test_diverging_pretraining_is_one_line_with_step_loss_and_fix(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.optim = dataclasses.replace(cfg.optim, lr=1e9, clip_norm=0.0, warmup_steps=0)
    with (
        pytest.raises(
            SystemExit,
            match=r"^error: pretraining diverged: the training loss is (nan|inf) at step \d+"
            r" \(optim.lr=1e\+09\); lower the learning rate, e.g. optim.lr=1e\+08 or set optim.clip_norm=1.0",
        ),
        user_errors(),
    ):
        pretrain.run(cfg)
