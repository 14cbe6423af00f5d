"""Fault injection, part two (issue 30): faults that used to end in rc 0 with wrong or missing results.

A corrupted token cache, a worker stopped past the stale time and then continued, the double fault of a
stalled worker whose successor dies, an empty grid, a deleted per-sequence file. Each is run through the
CLI or the public API on the `tiny` preset, and ends in rows equal to a clean run's or one clear line.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analysis.loading.load import load_results
from analysis.report.render import _provenance
from experiments.cli import user_errors
from growth import presets
from growth.config import Config
from growth.data import corpus, token_cache
from growth.data import pipeline as data_lib
from growth.experiment import results, runner
from growth.store import files, lease
from tests.conftest import REPO

ENV = dict(os.environ, PYTHONPATH=str(REPO), GROWTH_JAX_CACHE=str(REPO / ".cache" / "jax-tests"))
# One cell (deterministic, replicate 0) of two candidates; 20 continuation steps give a stalled worker
# time to be caught mid-cell. Workers: a lease goes stale 1.5 s after its last heartbeat.
GRID = ["pool=[exact_copy,continue_small]", "regimes=[deterministic]", "replicates=1", "continuation_lag=20"]
WORKERS = ["workers.heartbeat_s=0.25", "workers.stale_s=1.5", "workers.poll_s=0.2"]


def _overrides(root: Path) -> list[str]:
    return ["experiment=tiny", f"out_dir={root / 'runs'}", f"data.cache_dir={root / 'cache'}", *GRID, *WORKERS]


def _cfg(root: Path) -> Config:
    return presets.compose(_overrides(root))


def _rows(cfg: Config) -> list[tuple]:
    """Every row but wall times, as (cell, candidate, lag, metric, value), the last write of a cell kept."""
    latest: dict[tuple, dict] = {}
    for r in files.read_jsonl(results.results_path(cfg)):
        if r["metric"] != "wall_time":
            latest[
                (r["seed"], r["growth_step"], r["regime"], r["replicate"], r["candidate"], r["lag"], r["metric"])
            ] = r
    return sorted((*k, r["value"]) for k, r in latest.items())


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean run: its config (cache and runs under one root) and rows."""
    cfg = _cfg(tmp_path_factory.mktemp("clean"))
    runner.run(cfg)
    return cfg, _rows(cfg)


def _token_file(cfg: Config) -> Path:
    (train,) = (Path(cfg.data.cache_dir) / "tokens").glob("*/train.bin")
    return train


def _flip_low_bits(path: Path) -> None:
    """xor the low bit of every 50th id: still valid ids (the vocabulary size is even), other text."""
    ids = np.fromfile(path, np.uint16)
    ids[::50] ^= 1
    ids.tofile(path)


def _fill_ffff(path: Path) -> None:
    """A quarter of the ids (a stretch in the middle) beyond any vocabulary."""
    ids = np.fromfile(path, np.uint16)
    ids[len(ids) // 4 : len(ids) // 2] = 0xFFFF
    ids.tofile(path)


# ---------------------------------------------------------------- the token cache


@pytest.mark.parametrize(
    ("corrupt", "said"),
    [(_flip_low_bits, "does not match the sha256 in its manifest"), (_fill_ffff, "holds id 65535, outside the")],
)
def test_a_corrupted_token_cache_is_named_and_rebuilt(clean, tmp_path, caplog, corrupt, said):
    cfg, reference = clean
    other = _cfg(tmp_path)
    shutil.copytree(Path(cfg.data.cache_dir), Path(other.data.cache_dir))  # the clean run's cache...
    train = _token_file(other)
    corrupt(train)  # ...with bits flipped or a stretch of ids beyond the vocabulary
    with caplog.at_level(logging.WARNING, logger="growth.data.token_cache"):
        runner.run(other)
    lines = [r.getMessage() for r in caplog.records if r.name == "growth.data.token_cache"]
    assert len(lines) == 1 and str(train) in lines[0] and said in lines[0] and "rebuilding" in lines[0], lines
    assert _rows(other) == reference  # pretrained and grown on the rebuilt cache: the clean run's rows


def test_a_corrupted_cache_whose_source_is_gone_is_refused_in_one_line(clean, tmp_path, monkeypatch):
    cfg, _ = clean
    other = _cfg(tmp_path)
    shutil.copytree(Path(cfg.data.cache_dir), Path(other.data.cache_dir))
    train = _token_file(other)
    _fill_ffff(train)

    def gone(*a, **k):
        raise data_lib.DataError("the hub dataset is unreachable (offline)")

    monkeypatch.setattr(corpus, "documents", gone)
    with pytest.raises(SystemExit) as e, user_errors():
        data_lib.load(other.data)
    message = str(e.value.code)
    assert message.startswith(f"error: token cache file {train} holds id 65535, outside the")
    assert "cannot be rebuilt from its source: the hub dataset is unreachable" in message and "\n" not in message


def test_an_old_cache_without_manifest_is_rebuilt_with_the_same_ids(clean, tmp_path):
    cfg, _ = clean
    other = _cfg(tmp_path)
    shutil.copytree(Path(cfg.data.cache_dir), Path(other.data.cache_dir))
    before = np.fromfile(_token_file(other), np.uint16)
    (_token_file(other).parent / "manifest.json").unlink()
    root = token_cache.open_verified(other.data)
    assert (root / "manifest.json").is_file()
    assert np.array_equal(np.fromfile(root / "train.bin", np.uint16), before)


# ---------------------------------------------------------------- empty grids


def test_an_empty_pool_is_refused_in_one_line_before_anything_runs(tmp_path):
    cmd = [sys.executable, "-m", "experiments.reproduce", *_overrides(tmp_path), "pool=[]"]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pool=[] is empty") and "nothing would run" in last, proc.stderr[-2000:]
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file() and "hydra" not in p.parts]
    assert written == []  # no row, no plan, no pretraining (only Hydra's own log)


@pytest.mark.parametrize(("override", "said"), [("regimes=[]", "regimes=[]"), ("grid=[{pool:[]}]", "grid[0].pool=[]")])
def test_empty_regimes_or_an_empty_cell_pool_are_refused_at_compose_time(tmp_path, override, said):
    with pytest.raises(SystemExit) as e, user_errors():
        presets.compose([*_overrides(tmp_path), override])
    assert str(e.value.code).startswith(f"error: {said} is empty, so the grid would have no cells")
    assert "\n" not in str(e.value.code)


# ---------------------------------------------------------------- a deleted per-sequence file


def test_a_finished_cell_whose_npz_is_deleted_is_recomputed_and_the_report_says_so(clean, tmp_path):
    cfg, reference = clean
    other = _cfg(tmp_path)
    out = results.results_path(other).parent
    shutil.copytree(results.results_path(cfg).parent, out)
    shutil.copytree(Path(cfg.out_dir) / "pretrain", Path(other.out_dir) / "pretrain")
    (npz,) = (out / "seq_losses").glob("*.npz")
    kept = dict(np.load(npz))
    npz.unlink()
    assert results.unfinished(other, results.results_path(other), runner.cell_keys(other)) == runner.cell_keys(other)
    report = _provenance(load_results(out), out)
    assert "Could not read the per-sequence losses of 1 cell(s)" in report and npz.name in report
    runner.run(other)
    again = dict(np.load(npz))
    assert np.array_equal(again["loss"], kept["loss"], equal_nan=True)  # recomputed: the same numbers
    assert _rows(other) == reference
    assert "Could not read" not in _provenance(load_results(out), out)


# ---------------------------------------------------------------- stalled and killed workers


def _worker(root: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "experiments.grow", *_overrides(root)]
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _wait(what, timeout: float = 240.0, every: float = 0.005):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if got := what():
            return got
        time.sleep(every)
    raise AssertionError("timed out")


def _log_lines(cfg: Config) -> list[dict]:
    logs = list((results.results_path(cfg).parent / "grow").glob("*/metrics.jsonl"))
    return files.read_jsonl(logs[0]) if logs else []


def _holder(cfg: Config) -> int | None:
    found = list((results.results_path(cfg).parent / "leases").glob("*.json"))
    held = json.loads(found[0].read_text()) if found else None
    return held["pid"] if held else None


def _stop_outside_the_lock(proc: subprocess.Popen, cfg: Config) -> None:
    """SIGSTOP `proc` at a moment it holds no lease lock (a stopped lock holder would block every worker)."""
    lock = results.results_path(cfg).parent / "leases" / lease.LOCK_NAME
    while True:
        os.kill(proc.pid, signal.SIGSTOP)
        with open(lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                os.kill(proc.pid, signal.SIGCONT)
                time.sleep(0.001)


def _stall_first_worker(clean, tmp_path) -> tuple[Config, subprocess.Popen]:
    """Worker A on a directory whose pretraining is done, stopped mid-cell until its lease is stale."""
    cfg = _cfg(tmp_path)
    shutil.copytree(Path(clean[0].out_dir) / "pretrain", Path(cfg.out_dir) / "pretrain")
    first = _worker(tmp_path, tmp_path / "a.log")
    _wait(lambda: len(_log_lines(cfg)) >= 2)  # mid-cell: its log has begun
    _stop_outside_the_lock(first, cfg)
    assert not results.finished_cells(results.results_path(cfg), results.cell_hash(cfg)), "finished before SIGSTOP"
    time.sleep(2.5)  # past workers.stale_s = 1.5
    return cfg, first


def _check_one_log_and_clean_rows(cfg: Config, reference: list[tuple]) -> None:
    steps = [r["step"] for r in _log_lines(cfg)]
    assert steps == runner.eval_lags(cfg)  # one worker's log, whole, each lag once
    walls = [r for r in files.read_jsonl(results.results_path(cfg)) if r["metric"] == "wall_time"]
    assert len(walls) == 1  # the cell was written once
    assert _rows(cfg) == reference
    assert not list((results.results_path(cfg).parent / "leases").glob("*.json"))


@pytest.mark.slow  # about 15 s; the double fault below (default suite) fences a stalled worker too
def test_a_worker_stopped_past_the_stale_time_then_continued_writes_nothing_more(clean, tmp_path):
    cfg, first = _stall_first_worker(clean, tmp_path)
    second = _worker(tmp_path, tmp_path / "b.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "b.log").read_text()[-3000:]
    os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()[-3000:]
    said = (tmp_path / "a.log").read_text()
    assert "was taken over by another worker" in said and "writes nothing more for that cell" in said
    _check_one_log_and_clean_rows(cfg, clean[1])


def test_a_stalled_worker_whose_successor_died_finishes_the_cell(clean, tmp_path):
    cfg, first = _stall_first_worker(clean, tmp_path)
    second = _worker(tmp_path, tmp_path / "b.log")
    _wait(lambda: _holder(cfg) == second.pid and len(_log_lines(cfg)) >= 2)  # B took over and is mid-cell
    second.kill()
    second.wait()
    assert not results.finished_cells(results.results_path(cfg), results.cell_hash(cfg)), "B finished before its kill"
    os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()[-3000:]
    said = (tmp_path / "a.log").read_text()
    assert "writes nothing more for that cell" in said and "taking over cell" in said  # lost it, then took it back
    _check_one_log_and_clean_rows(cfg, clean[1])


def test_a_worker_that_cannot_finish_the_grid_exits_non_zero_naming_the_cells(clean, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    shutil.copytree(Path(clean[0].out_dir) / "pretrain", Path(cfg.out_dir) / "pretrain")
    monkeypatch.setattr(results, "write_cell", lambda *a, **k: None)  # its rows never reach the results file
    with pytest.raises(SystemExit) as e, user_errors():
        runner.run(cfg)
    message = str(e.value.code)
    assert message.startswith("error: 1 cell(s) are unfinished and no live worker holds them after two passes")
    assert "seed0-g10-deterministic-r0" in message and "\n" not in message
