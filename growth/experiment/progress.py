"""Live progress of a grid: jobs done / total, the current job and step, tokens/s and the grid's ETA.

A grid's work is a list of jobs (growth/experiment/plan.py): pretraining runs, grow cells, shared scratch runs,
each with its steps and FLOPs per step. The training loops report their steps through `job(...)`;
while a `Display` is open (experiments.reproduce, experiments.grow) they report to it, else to a
display of their own. The ETA is the FLOPs of the steps still to run divided by the FLOP rate measured
on the steps run so far (compilation and evaluation included, as they will be again).

On a terminal the display is one tqdm bar, redrawn; without one (SLURM, CI logs) it writes one log line
every `logger.progress_every_s` seconds instead.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from growth.config import Config
from growth.measure import throughput

if TYPE_CHECKING:  # growth.experiment.results imports growth.experiment.pretrain, which reports its steps here
    from growth.experiment.results import CellKey

log = logging.getLogger(__name__)
_REDRAW_S = 0.5  # the terminal bar's postfix is redrawn at most this often


@dataclass
class Job:
    """One unit of training in a grid."""

    kind: str  # pretrain | grow | scratch
    name: str  # names the job in the display and the plan (growth/experiment/plan.py builds it the same way)
    steps: int  # training steps of the whole job
    flops_per_step: float  # model FLOPs of one step (every model trained on the batch)
    tokens_per_step: int  # tokens of one step's batch
    done: int = 0  # steps already done (a finished job: steps; a resumed pretraining run: its checkpoint)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    @property
    def finished(self) -> bool:
        return self.done >= self.steps


def duration(seconds: float | None) -> str:
    """1h02m, 4m05s, 12s, or ? when unknown."""
    if seconds is None:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Display:
    """The grid's progress: a tqdm bar on a terminal, else a log line every `every_s` seconds."""

    def __init__(self, jobs: list[Job], enabled: bool = True, every_s: float = 60.0):
        self.jobs = {j.key: j for j in jobs}
        self.every_s = every_s
        self.interactive = enabled and sys.stderr.isatty()
        self.quiet = not enabled
        self.current: Job | None = None
        self.timed_flops, self.timed_s = 0.0, 0.0  # FLOPs and seconds of the steps timed so far (all jobs)
        self.job_timed = (0, 0.0)  # (steps, seconds) timed in the current job
        self.t0 = self.t_step = self.t_line = self.t_draw = time.perf_counter()
        self.job_steps = 0
        fmt = "{desc} {n}/{total} jobs |{bar}| {elapsed}{postfix}"  # postfix: ", <status>"
        self.bar = tqdm(
            total=len(jobs), initial=self.n_finished, desc="grid", bar_format=fmt, disable=not self.interactive
        )

    @property
    def n_finished(self) -> int:
        return sum(j.finished for j in self.jobs.values())

    def start(self, job: Job) -> Job:
        """The display's own record of `job` (a job the plan did not foresee is added)."""
        self.current = self.jobs.setdefault(job.key, job)
        self.current.done = min(self.current.done, self.current.steps)
        self.bar.total = len(self.jobs)
        self.t_step, self.job_steps, self.job_timed = time.perf_counter(), 0, (0, 0.0)
        return self.current

    def update(self, steps: int = 1) -> None:
        job = self.current
        if job is None:
            return
        now = time.perf_counter()
        if self.job_steps:  # a job's first step compiles: the rates count the steps after it
            self.timed_s += now - self.t_step
            self.timed_flops += steps * job.flops_per_step
            self.job_timed = (self.job_timed[0] + steps, self.job_timed[1] + now - self.t_step)
        self.t_step = now
        job.done += steps
        self.job_steps += steps
        if self.interactive and now - self.t_draw >= _REDRAW_S:
            self.t_draw = now
            self.bar.set_postfix_str(self.status(), refresh=True)
        elif not self.interactive and not self.quiet and now - self.t_line >= self.every_s:
            self.t_line = now
            log.info("%s", self.line())

    def end(self) -> None:
        """The current job has finished (or stopped)."""
        if self.current is not None:
            self.current.done = self.current.steps
            self.current = None
        self.bar.n = self.n_finished
        self.bar.refresh()

    def eta(self) -> float | None:
        """Seconds left: the FLOPs still to run over the FLOP rate of the steps measured so far."""
        if self.timed_flops <= 0:
            return None
        left = sum((j.steps - j.done) * j.flops_per_step for j in self.jobs.values() if not j.finished)
        return left * self.timed_s / self.timed_flops

    def status(self) -> str:
        job = self.current
        parts = []
        if job is not None:
            parts.append(f"{job.kind} {job.name} step {job.done}/{job.steps}")
            steps, seconds = self.job_timed
            if steps:
                parts.append(f"{steps * job.tokens_per_step / max(seconds, 1e-9):,.0f} tok/s")
        parts.append(f"ETA {duration(self.eta())}")
        return " | ".join(parts)

    def line(self) -> str:
        return f"grid {self.n_finished}/{len(self.jobs)} jobs | {self.status()}"

    def close(self) -> None:
        self.bar.close()
        if not self.interactive and not self.quiet:
            log.info(
                "grid %d/%d jobs finished in %s",
                self.n_finished,
                len(self.jobs),
                duration(time.perf_counter() - self.t0),
            )


_ACTIVE: list[Display] = []  # the open display (a stack: one per open `showing`)


class showing:
    """`with showing(display):` routes every training loop's steps to `display`, and closes it after."""

    def __init__(self, display: Display):
        self.display = display

    def __enter__(self) -> Display:
        _ACTIVE.append(self.display)
        return self.display

    def __exit__(self, *exc) -> None:
        _ACTIVE.remove(self.display)
        self.display.close()


class JobProgress:
    """What a training loop holds: `update(n)` after n steps, `close()` at the end."""

    def __init__(self, job: Job, enabled: bool, every_s: float):
        self.own = None if _ACTIVE else Display([job], enabled, every_s)
        self.display: Display = _ACTIVE[-1] if self.own is None else self.own
        self.display.start(job)

    def update(self, steps: int = 1) -> None:
        self.display.update(steps)

    def close(self) -> None:
        self.display.end()
        if self.own is not None:
            self.own.close()


def job(kind: str, name: str, steps: int, tokens_per_step: int, flops_per_step: float, done: int = 0,
        enabled: bool = True, every_s: float = 60.0) -> JobProgress:  # fmt: skip
    """Report a training loop's steps to the open display (or to one of its own)."""
    return JobProgress(Job(kind, name, steps, flops_per_step, tokens_per_step, done), enabled, every_s)


# ---------------------------------------------------------------- the jobs, as the loops and the plan name them


def policy(cfg: Config) -> str:
    return f"k{cfg.growth.k} {cfg.growth.lr_correction}/{cfg.optim.clip_mode}"


def grow_name(cfg: Config, key: CellKey) -> str:
    """A grow cell's name in the display and the plan (the training loop builds it the same way)."""
    return f"{key.stem} {policy(cfg)}"


def scratch_name(cfg: Config, key: CellKey) -> str:
    return f"seed{key.seed}-{key.regime}-r{key.replicate} {policy(cfg)}"


def pretrain_name(seed: int, run_dir: Path) -> str:
    return f"seed{seed} {run_dir.name}"


def grow_job(cfg: Config, key: CellKey) -> JobProgress:
    """The progress of one grow cell's continuation."""
    tokens = cfg.runner.batch_size * cfg.model.context
    return job("grow", grow_name(cfg, key), cfg.continuation_lag, tokens, throughput.grow_flops_per_step(cfg), 0,
               cfg.logger.progress, cfg.logger.progress_every_s)  # fmt: skip


def scratch_job(cfg: Config, key: CellKey) -> JobProgress:
    tokens = cfg.runner.batch_size * cfg.model.context
    return job("scratch", scratch_name(cfg, key), cfg.budget.scratch_steps, tokens, throughput.scratch_flops_per_step(cfg), 0,
               cfg.logger.progress, cfg.logger.progress_every_s)  # fmt: skip
