"""Run logging: `metrics.jsonl` in the run directory and the same metrics to wandb (progress: growth/experiment/progress.py).

In a multi-process job only process 0 logs (growth.distributed.hosts): the others' trackers write nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from growth.config import WandbConfig, WandbMode
from growth.distributed import hosts
from growth.store.files import append_jsonl

Fence = Callable[[Callable[[], None]], None]  # runs a write only while the run's lease holds (growth.store.lease)


def _unfenced(write: Callable[[], None]) -> None:
    write()


class Tracker:
    """Writes metrics to `run_dir/metrics.jsonl` (`fresh`: a new file) and, unless disabled, to a wandb run.

    `fence` wraps every write (a grid cell's lease: a worker that lost it raises instead of writing)."""

    def __init__(
        self,
        run_dir: Path,
        cfg: WandbConfig,
        config: dict,
        name: str,
        group: str,
        run_id: str,
        fresh: bool = False,
        fence: Fence | None = None,
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.wandb_run = None
        self.fence = fence or _unfenced
        self.writes = hosts.is_writer()
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.fence(lambda: self.path.unlink(missing_ok=True))
        if cfg.mode != WandbMode.disabled:
            import wandb

            self.wandb_run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                mode=cfg.mode.value,  # type: ignore[arg-type]
                dir=str(run_dir),
                config=config,
                name=name,
                group=group,
                id=run_id,
                resume="allow",
                settings=wandb.Settings(silent=True, console="off"),
                reinit="create_new",
            )

    def log(self, row: dict, step: int) -> None:
        if not self.writes:
            return

        def write() -> None:
            append_jsonl(self.path, [row])
            if self.wandb_run is not None:
                self.wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=step)

        self.fence(write)

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
