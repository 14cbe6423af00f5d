"""Read every results.jsonl below a directory into one de-duplicated pandas DataFrame."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RESULTS_NAME = "results.jsonl"
REQUIRED = ("experiment", "seed", "growth_step", "candidate", "regime", "lag", "metric", "value")
# A row's identity. Two rows with the same key come from a re-run of the same config: the later wins.
# Rows that differ only in `run` (config_hash and replicate) are repeated runs of the same cell: they are
# averaged, and bootstrapped over, downstream. Rows of different learning-rate policies are never mixed.
KEY = ("experiment", "policy", "run", "seed", "growth_step", "regime", "candidate", "lag", "metric")
COLUMNS = (
    *REQUIRED,
    "config_hash",
    "replicate",
    "run",
    "lr_correction",
    "clip_mode",
    "policy",
    "k",
    "lr_policy",
    "optimizer",
    "seq_losses",
    "cost",
    "versions",
    "source",
)
# Defaults for rows written before the runner recorded them (docs/results_schema.md).
DEFAULT_LR_CORRECTION, DEFAULT_CLIP_MODE = "none", "global"


DEFAULT_K = 2  # growth factor of rows written before cells recorded it
DEFAULT_OPTIMIZER = "adamw"  # optimizer of rows written before cells recorded it (optim.name)


def policy_name(lr_correction: str, clip_mode: str, k: int = DEFAULT_K) -> str:
    """The label of a comparison group, e.g. 'none/global', 'fan_in/clone_consistent', 'none/global/k3'.

    The growth factor joins the label when it is not 2, so rows of different k are never averaged as
    replicates of one cell (the `k` and `lr_policy` columns carry the parts separately).
    """
    base = f"{lr_correction}/{clip_mode}"
    return base if k == DEFAULT_K else f"{base}/k{k}"


class NoResultsError(FileNotFoundError):
    """Raised when a results directory holds no usable results.jsonl."""


@dataclass(frozen=True)
class Results:
    """The de-duplicated rows plus where they came from."""

    frame: pd.DataFrame
    files: tuple[Path, ...]
    n_read: int
    n_duplicates: int
    n_unparseable: int = 0  # lines that are not a JSON row (torn by a crash mid-append, or edited): skipped


def find_results(results_dir: str | Path) -> list[Path]:
    """All results.jsonl files below `results_dir`, in sorted path order."""
    return sorted(Path(results_dir).rglob(RESULTS_NAME))


def _finite_or_nan(value: object) -> float:
    """The value as a float; null (or a stray NaN/inf token) becomes NaN."""
    if value is None:
        return math.nan
    out = float(value)
    return out if math.isfinite(out) else math.nan


def read_jsonl(path: Path) -> list[dict]:
    """Parse one results.jsonl; a malformed line (e.g. truncated by a killed run) is skipped with a warning."""
    return _read_counted(path)[0]


def _read_counted(path: Path) -> tuple[list[dict], int]:
    """The rows of one results.jsonl and the number of unparseable lines skipped."""
    rows, bad = [], 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                warnings.warn(f"{path}:{lineno}: skipping malformed JSON line ({err.msg})", stacklevel=2)
                bad += 1
                continue
            if not isinstance(row, dict):
                warnings.warn(f"{path}:{lineno}: skipping a line that is not a JSON object", stacklevel=2)
                bad += 1
                continue
            missing = [field for field in REQUIRED if field not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: row lacks field(s) {missing}; see docs/results_schema.md")
            config_hash = str(row.get("config_hash") or "")
            replicate = int(row.get("replicate") or 0)  # rows without it: replicate 0
            # A run = one (config, replicate); `continuation_seed` is not in the schema, honoured if present.
            cont_seed = row.get("continuation_seed")
            run = f"{config_hash}|r={replicate}" + ("" if cont_seed is None else f"|cs={cont_seed}")
            lr_correction = str(row.get("lr_correction") or DEFAULT_LR_CORRECTION)
            clip_mode = str(row.get("clip_mode") or DEFAULT_CLIP_MODE)
            k = int(row.get("k") or DEFAULT_K)
            rows.append(
                {
                    "experiment": str(row["experiment"]),
                    "seed": int(row["seed"]),
                    "growth_step": int(row["growth_step"]),
                    "candidate": str(row["candidate"]),
                    "regime": str(row["regime"]),
                    "lag": int(row["lag"]),
                    "metric": str(row["metric"]),
                    "value": _finite_or_nan(row["value"]),
                    "config_hash": config_hash,
                    "replicate": replicate,
                    "run": run,
                    "lr_correction": lr_correction,
                    "clip_mode": clip_mode,
                    "policy": policy_name(lr_correction, clip_mode, k),
                    "k": k,
                    "lr_policy": policy_name(lr_correction, clip_mode),
                    "optimizer": str(row.get("optimizer") or DEFAULT_OPTIMIZER),
                    "seq_losses": str(row.get("seq_losses") or ""),
                    "cost": json.dumps(row.get("cost") or {}, sort_keys=True),  # growth.measure.cost, on `_pool` rows
                    "versions": json.dumps(row.get("versions") or {}, sort_keys=True),
                    "source": str(path),
                }
            )
    return rows, bad


def load_results(results_dir: str | Path | Sequence[str | Path], experiments: Sequence[str] | None = None) -> Results:
    """Read, validate and de-duplicate (keep the last) every results.jsonl below `results_dir` (one or several)."""
    roots = [Path(results_dir)] if isinstance(results_dir, str | Path) else [Path(d) for d in results_dir]
    files = []
    for root in roots:
        hint = (
            "grow runs write them: run `python -m experiments.grow` with its output directory "
            f"inside {root}, then `python -m analysis.report {root}`"
        )
        if not root.is_dir():
            raise NoResultsError(f"results directory {root} does not exist; {hint}")
        found = find_results(root)
        if not found:
            raise NoResultsError(f"no {RESULTS_NAME} found under {root}; {hint}")
        files += found
    root = roots[0] if len(roots) == 1 else ", ".join(str(r) for r in roots)
    scanned = [_read_counted(path) for path in files]
    records = [row for rows, _ in scanned for row in rows]
    n_unparseable = sum(bad for _, bad in scanned)
    if not records:
        raise NoResultsError(f"every {RESULTS_NAME} under {root} is empty; {hint}")
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame["replicate"] = frame["replicate"].astype(int)
    if experiments:
        known = sorted(frame["experiment"].unique())
        frame = frame[frame["experiment"].isin(list(experiments))]
        if frame.empty:
            raise NoResultsError(f"no rows for experiment(s) {list(experiments)} under {root}; found {known}")
    n_read = len(frame)
    # Files are read in sorted path order and lines in file order, so "last" means the latest append.
    frame = frame.drop_duplicates(subset=list(KEY), keep="last").reset_index(drop=True)
    return Results(
        frame=frame,
        files=tuple(files),
        n_read=n_read,
        n_duplicates=n_read - len(frame),
        n_unparseable=n_unparseable,
    )
