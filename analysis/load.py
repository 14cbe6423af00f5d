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
# Rows that differ only in `replicate` are repeated runs of the same cell and get averaged downstream.
KEY = ("experiment", "replicate", "seed", "growth_step", "regime", "candidate", "lag", "metric")
COLUMNS = (*REQUIRED, "config_hash", "replicate", "versions", "source")


class NoResultsError(FileNotFoundError):
    """Raised when a results directory holds no usable results.jsonl."""


@dataclass(frozen=True)
class Results:
    """The de-duplicated rows plus where they came from."""

    frame: pd.DataFrame
    files: tuple[Path, ...]
    n_read: int
    n_duplicates: int


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
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                warnings.warn(f"{path}:{lineno}: skipping malformed JSON line ({err.msg})", stacklevel=2)
                continue
            if not isinstance(row, dict):
                warnings.warn(f"{path}:{lineno}: skipping a line that is not a JSON object", stacklevel=2)
                continue
            missing = [field for field in REQUIRED if field not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: row lacks field(s) {missing}; see docs/results_schema.md")
            config_hash = str(row.get("config_hash") or "")
            # `continuation_seed` is not in the schema today; honour it if a runner adds it.
            cont_seed = row.get("continuation_seed")
            replicate = config_hash if cont_seed is None else f"{config_hash}|cs={cont_seed}"
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
                    "versions": json.dumps(row.get("versions") or {}, sort_keys=True),
                    "source": str(path),
                }
            )
    return rows


def load_results(results_dir: str | Path, experiments: Sequence[str] | None = None) -> Results:
    """Read, validate and de-duplicate (keep the last) every results.jsonl below `results_dir`."""
    root = Path(results_dir)
    hint = (
        "grow runs write them: run `python -m experiments.grow` with its output directory "
        f"inside {root}, then `python -m analysis.report {root}`"
    )
    if not root.is_dir():
        raise NoResultsError(f"results directory {root} does not exist; {hint}")
    files = find_results(root)
    if not files:
        raise NoResultsError(f"no {RESULTS_NAME} found under {root}; {hint}")
    records = [row for path in files for row in read_jsonl(path)]
    if not records:
        raise NoResultsError(f"every {RESULTS_NAME} under {root} is empty; {hint}")
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    if experiments:
        known = sorted(frame["experiment"].unique())
        frame = frame[frame["experiment"].isin(list(experiments))]
        if frame.empty:
            raise NoResultsError(f"no rows for experiment(s) {list(experiments)} under {root}; found {known}")
    n_read = len(frame)
    # Files are read in sorted path order and lines in file order, so "last" means the latest append.
    frame = frame.drop_duplicates(subset=list(KEY), keep="last").reset_index(drop=True)
    return Results(frame=frame, files=tuple(files), n_read=n_read, n_duplicates=n_read - len(frame))
