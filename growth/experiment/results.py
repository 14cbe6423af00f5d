"""The results store: where a grid's rows live, what identifies a cell, which cells are finished.

A cell is one (seed, growth step, regime, replicate) under one config hash. When it finishes, its
per-sequence eval losses are written to `seq_losses/<cell>.npz` and then its rows are appended to
`results.jsonl` in one locked write; the `wall_time` row is written last and marks the cell done, so a
killed run redoes only unfinished cells (deterministically). A cell whose npz is gone is not finished. Every row of one write carries its
`write_id` and the wall-time row the write's row count (`n_rows`): a cell counts as finished only when
all of its rows were read back. docs/results_schema.md has the format.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from growth.config import Config, Regime, config_hash, optim_identity
from growth.experiment.pretrain import trajectory_identity
from growth.measure import cost, metric_registry
from growth.store import files

log = logging.getLogger(__name__)

POOL_ROW = "_pool"  # candidate name of the rows that describe the whole cell


@dataclass(frozen=True)
class CellKey:
    seed: int
    growth_step: int
    regime: Regime
    replicate: int

    @property
    def stem(self) -> str:
        return f"seed{self.seed}-g{self.growth_step}-{self.regime}-r{self.replicate}"


@dataclass(frozen=True)
class Row:
    candidate: str
    lag: int
    metric: str
    value: float


@dataclass(frozen=True)
class SeqLosses:
    """Mean token loss of each held-out sequence: loss[c, l, n] for candidate c at lags[l]."""

    candidates: list[str]
    lags: list[int]
    loss: np.ndarray  # (C, L, N) float32, NaN where a candidate diverged


def results_path(cfg: Config) -> Path:
    return Path(cfg.out_dir) / cfg.name / "results.jsonl"


# Runner settings that change how steps are dispatched, not what they compute: left out of the hash so
# finished cells stay finished (steps_per_dispatch: the scanned program's updates equal the per-step
# program's; concurrent_programs: the same programs on the same inputs; stack_at_most: a candidate's
# numbers do not depend on what is stacked beside it; tests/test_fast_paths.py).
EXECUTION_ONLY = ("steps_per_dispatch", "concurrent_programs", "stack_at_most")


def runner_identity(cfg: Config) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg.runner).items() if k not in EXECUTION_ONLY}


def grow_identity(cfg: Config) -> dict:
    """What fixes a cell's numbers, besides its CellKey (replicates only says how many keys exist)."""
    return (
        trajectory_identity(cfg)
        | {
            "optim": optim_identity(cfg.optim),
            "growth": dataclasses.asdict(cfg.growth),
            "runner": runner_identity(cfg),
            "pool": list(cfg.filled_pool()),
            "lags": [cfg.probe_lag, cfg.continuation_lag],
            "growth_step": cfg.growth_step,
            "eval_sequences": cfg.data.eval_sequences,
        }
        | ({"log_eval_lags": cfg.budget.log_eval_lags} if cfg.budget.log_eval_lags else {})
    )  # old hashes kept


def cell_hash(cfg: Config) -> str:
    return config_hash(grow_identity(cfg))


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("jax", "flax", "optax", "orbax-checkpoint", "width-growth"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass(frozen=True)
class Measured:
    """What a finished cell measured: recorded in its wall_time row (None fields: it predates the record)."""

    candidates: frozenset[str] | None
    metrics: frozenset[str] | None
    missing: tuple[str, ...] = ()  # files its rows name that are gone (e.g. a deleted seq_losses/*.npz)

    def lacks(self, candidates: list[str], metrics: list[str]) -> list[str]:
        """The files this cell's rows name that are gone, and the asked-for candidates and metrics it did not
        measure (none when it predates the record)."""
        gone = [f"its file {name} (missing)" for name in self.missing]
        if self.candidates is None or self.metrics is None:
            return gone
        return gone + sorted(set(candidates) - self.candidates) + sorted(set(metrics) - self.metrics)


def finished_cells(path: Path, chash: str) -> dict[CellKey, Measured]:
    """Cells already written by a run of this config, and what each measured (no `replicate`: replicate 0).

    A cell is finished when its wall-time row is there and, for rows that record it, every row of the
    same write was read back (a row lost to a torn line leaves the cell unfinished, so it is redone)."""
    rows = [r for r in files.read_jsonl(path) if r.get("config_hash") == chash]
    per_write = Counter(r.get("write_id") for r in rows if r.get("write_id"))
    out = {}
    for r in rows:
        if r.get("metric") != "wall_time":
            continue
        if r.get("n_rows") is not None and per_write[r.get("write_id")] < int(r["n_rows"]):
            continue
        key = CellKey(r["seed"], r["growth_step"], Regime(r["regime"]), int(r.get("replicate", 0)))
        rec = r.get("measured") or {}
        cands, mets = rec.get("candidates"), rec.get("metrics")
        missing = tuple(missing_files(path.parent, r))
        out[key] = Measured(
            None if cands is None else frozenset(cands), None if mets is None else frozenset(mets), missing
        )
    return out


NAMED_FILES = ("seq_losses",)  # row fields that name a file (relative to the results directory) a cell needs


def missing_files(root: Path, row: dict) -> list[str]:
    """The files `row` names (relative to the results directory `root`) that do not exist."""
    return [str(row[f]) for f in NAMED_FILES if row.get(f) and not (root / str(row[f])).is_file()]


def asked_metrics() -> list[str]:
    """The metrics a cell run now writes (growth/measure/metric_registry.py)."""
    return sorted(metric_registry.METRICS)


def required_metrics() -> list[str]:
    """The metrics whose absence makes a finished cell run again (Metric.rerun_missing)."""
    return sorted(n for n, m in metric_registry.METRICS.items() if m.rerun_missing)


def unfinished(cfg: Config, path: Path, keys: list[CellKey], quiet: bool = False) -> list[CellKey]:
    """The cells to run: never run, or finished without a candidate or metric asked for now (rerun whole).

    A cell written before cells recorded what they measured is kept, with one line saying so.
    """
    done = finished_cells(path, cell_hash(cfg))
    todo = []
    for key in keys:
        if key not in done:
            todo.append(key)
            continue
        if done[key].candidates is None and not done[key].missing:
            if not quiet:
                log.warning("cell %s predates the record of what a cell measured: kept as written", key.stem)
            continue
        lacking = done[key].lacks(cfg.filled_pool(), required_metrics())
        if lacking:
            if not quiet:
                log.warning("cell %s is finished but lacks %s: running it again", key.stem, ", ".join(lacking))
            todo.append(key)
    return todo


def seq_losses_path(cfg: Config, key: CellKey, chash: str) -> Path:
    return results_path(cfg).parent / "seq_losses" / f"{key.stem}-{chash}.npz"


def write_cell(cfg: Config, key: CellKey, rows: list[Row], seq: SeqLosses, wall_time_s: float) -> None:
    """Write a finished cell: its per-sequence losses, then its rows with the wall-time row last."""
    chash = cell_hash(cfg)
    seq_path = seq_losses_path(cfg, key, chash)
    files.atomic_save_npz(
        seq_path,
        {
            "candidates": np.asarray(seq.candidates, dtype=str),
            "lags": np.asarray(seq.lags, np.int64),
            "loss": np.asarray(seq.loss, np.float32),
            "seed": np.asarray(key.seed),
            "growth_step": np.asarray(key.growth_step),
            "regime": np.asarray(str(key.regime)),
            "replicate": np.asarray(key.replicate),
            "config_hash": np.asarray(chash),
            "lr_correction": np.asarray(str(cfg.growth.lr_correction)),
            "clip_mode": np.asarray(str(cfg.optim.clip_mode)),
            "probe_lag": np.asarray(cfg.probe_lag),
            "continuation_lag": np.asarray(cfg.continuation_lag),
        },
    )
    common = identity_columns(cfg, key, chash) | {"versions": versions(), "write_id": uuid.uuid4().hex}
    out = [common | _fields(r) for r in rows]
    out.append(
        common
        | _fields(Row(POOL_ROW, cfg.continuation_lag, "wall_time", wall_time_s))
        | {"seq_losses": str(seq_path.relative_to(results_path(cfg).parent)), "n_rows": len(rows) + 1}
        | {"measured": {"candidates": sorted(cfg.filled_pool()), "metrics": asked_metrics()}}
        | {"cost": cost.cost_fields(cfg)}  # tokens and FLOPs of the speedup (growth.measure.cost)
    )
    files.append_jsonl(results_path(cfg), out)


def identity_columns(cfg: Config, key: CellKey, chash: str) -> dict:
    """The columns that say which run a row belongs to (grow cells and scratch runs alike)."""
    return {
        "experiment": cfg.name,
        "seed": key.seed,
        "growth_step": key.growth_step,
        "regime": str(key.regime),
        "replicate": key.replicate,
        "lr_correction": str(cfg.growth.lr_correction),
        "clip_mode": str(cfg.optim.clip_mode),
        "k": cfg.growth.k,
        "optimizer": str(cfg.optim.name),
        "config_hash": chash,
    }


def _fields(row: Row) -> dict:
    value = float(row.value)
    return {
        "candidate": row.candidate,
        "lag": int(row.lag),
        "metric": row.metric,
        "value": value if math.isfinite(value) else None,
    }
