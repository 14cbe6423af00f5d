"""Run logging: `metrics.jsonl` in the run directory, the same metrics to wandb, progress bars."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from growth.config import WandbConfig


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append rows as whole lines and fsync, so a crash never leaves half a row behind."""
    text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (a crash mid-write) is skipped."""
    if not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a temporary sibling of `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as the target: os.replace is only atomic within one file system.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def truncate_jsonl(path: Path, keep) -> None:
    """Keep only the rows for which `keep(row)` is true (used when a run resumes)."""
    rows = [r for r in read_jsonl(path) if keep(r)]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class Tracker:
    """Writes metrics to `run_dir/metrics.jsonl` and, unless disabled, to a wandb run."""

    def __init__(self, run_dir: Path, cfg: WandbConfig, config: dict, name: str, group: str, run_id: str):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wandb_run = None
        if cfg.mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.wandb.mode={cfg.mode!r} is unknown; use offline, online or disabled")
        if cfg.mode != "disabled":
            import wandb

            self.wandb_run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                mode=cfg.mode,
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
        append_jsonl(self.path, [row])
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def progress(total: int, desc: str, enabled: bool, initial: int = 0) -> tqdm:
    """A progress bar that stays quiet when stderr is not a terminal."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not (enabled and sys.stderr.isatty()), leave=False)
