"""Live progress (growth/experiment/progress.py), the plan (growth/experiment/plan.py) and throughput in the logs (growth/measure/throughput.py)."""

import logging
import subprocess
import sys

import pytest

from growth import presets
from growth.experiment import plan, progress, runner
from growth.experiment.progress import Display, Job
from growth.measure import throughput
from growth.store.files import read_jsonl
from tests.conftest import PRETRAIN_LONGER, REPO


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_eta_is_the_flops_left_over_the_measured_rate(monkeypatch, caplog):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    jobs = [Job("grow", "a", 4, 10.0, 8), Job("scratch", "b", 4, 20.0, 8), Job("grow", "old", 3, 5.0, 8, done=3)]
    display = Display(jobs, enabled=True, every_s=0.0)  # stderr is no terminal here: log lines
    assert not display.interactive and display.n_finished == 1
    with caplog.at_level(logging.INFO, logger="growth.experiment.progress"):
        display.start(Job("grow", "a", 4, 10.0, 8))
        for t in (5.0, 6.0, 7.0):  # the first step compiles (5 s): not counted in the rate
            clock.t = t
            display.update(1)
    # timed: 2 steps x 10 FLOPs in 2 s -> 10 FLOP/s; left: 1 step of a (10) + 4 of b (80) -> 9 s
    assert display.eta() == pytest.approx(9.0)
    assert caplog.messages[-1] == "grid 1/3 jobs | grow a step 3/4 | 8 tok/s | ETA 9s"
    display.end()
    assert display.n_finished == 2 and display.current is None
    display.close()


def test_grow_shows_progress_logs_throughput_and_the_plan_sees_it_finished(tmp_path, caplog):
    cfg = presets.tiny(
        tmp_path,
        [*PRETRAIN_LONGER, "growth_step=10", "pool=[exact_copy,continue_small]", "regimes=[deterministic]",
         "probe_lag=2", "continuation_lag=4", "runner.eval_every=2", "logger.peak_tflops=0.001",
         "logger.progress_every_s=0", "logger.progress=true"],
    )  # fmt: skip
    prepared = [runner.prepare(cfg)]
    before = plan.jobs(prepared)
    assert [(j.kind, j.finished) for j in before] == [("pretrain", False), ("grow", False)]
    with (
        caplog.at_level(logging.INFO, logger="growth.experiment.progress"),
        progress.showing(plan.display(cfg, prepared)),
    ):
        path = runner.run(cfg)
    lines = [m for m in caplog.messages if m.startswith("grid ")]
    assert any(" | pretrain seed0 " in m and " tok/s | ETA " in m for m in lines), lines
    assert any(" | grow seed0-g10-deterministic-r0 k2 none/global step " in m for m in lines), lines
    assert lines[-1].startswith("grid 2/2 jobs finished in ")
    assert all(j.finished for j in plan.jobs(prepared))

    peak = throughput.peak_flops(cfg)
    assert peak == 1e9
    grow_rows = read_jsonl(next((path.parent / "grow").glob("*/metrics.jsonl")))
    timed = [r for r in grow_rows if "tokens_per_s" in r]
    assert [r["step"] for r in timed] == [2, 4]  # every evaluation after steps (lag 0 has none)
    for r in timed:  # mfu = model FLOP/s / peak, with the cell's FLOPs per step
        per_step = throughput.grow_flops_per_step(cfg)
        tokens = cfg.runner.batch_size * cfg.model.context
        assert r["tokens_per_s"] > 0 and r["mfu"] == pytest.approx(r["tokens_per_s"] / tokens * per_step / peak)
    pre_rows = [r for r in read_jsonl(next((tmp_path / "runs").glob("**/pretrain/*/metrics.jsonl"))) if "mfu" in r]
    assert pre_rows and all(r["mfu"] > 0 for r in pre_rows)


def test_plan_true_lists_the_jobs_and_trains_nothing(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.reproduce", "experiment=smoke", "plan=true", f"out_dir={out}",
         f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("plan of ")) :]  # after Hydra's log
    assert lines[0] == "plan of smoke: 5 jobs, 0 finished", proc.stdout
    assert "ms per step of the wide model (d_model 64, batch 16 x 32)" in lines[1]
    assert sum(" to run " in line for line in lines) == 5
    assert lines[-1].startswith("estimated time left: ") and lines[-1].endswith("(5 jobs to run)")
    assert not out.exists()  # nothing trained, nothing written
