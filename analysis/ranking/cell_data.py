"""One cell of results as bootstrap-ready arrays: x[r, c, n] per ranked stage, per-run signals s[r, c].

With the per-sequence files of docs/results_schema.md, n runs over the N held-out sequences; without them
(old results) N = 1 and x holds the per-run rows, so only replicates are resampled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.loading.cells import ordered_candidates, sources, stage_lags
from analysis.ranking.bootstrap import has_noise, per_sequence_auc
from analysis.ranking.selectors import signals

STATS_CELL = ["policy", "experiment", "seed", "growth_step", "regime"]
# stage -> the summary column it ranks (analysis.ranking.rankings.STAGES)
STAGE_METRIC = {"probe": "probe_eval_loss", "continuation": "auc"}


def signal_columns() -> tuple[str, ...]:
    """The summary columns a cell's bootstrap carries: every signal's, and the continuation utility."""
    return tuple(dict.fromkeys([*(s.column for s in signals()), "auc"]))


@dataclass
class CellData:
    """One cell's arrays: per stage x[r, c, n] and per-run signals s[r, c] (NaN where missing)."""

    key: tuple  # STATS_CELL values
    candidates: list[str]
    runs: list[str]
    values: dict[str, np.ndarray]  # stage -> (R, C, N)
    signals: dict[str, np.ndarray]  # summary column -> (R, C)
    per_sequence: bool

    @property
    def n_replicates(self) -> int:
        return len(self.runs)

    @property
    def n_sequences(self) -> int:
        return next(iter(self.values.values())).shape[2]

    @property
    def method(self) -> str:
        """What the CI resamples."""
        if not has_noise(self.n_replicates, self.n_sequences):
            return "none (1 replicate, no per-sequence losses)"
        if self.per_sequence:
            return "replicates x sequences" if self.n_replicates > 1 else "sequences (1 replicate)"
        return "replicates"


def _per_run_signals(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows (cell, run, candidate, column, value) of every signal at its stage lag, one run at a time."""
    lags = stage_lags(frame)
    columns = sources()
    wanted = pd.DataFrame(
        [(name, columns[name][0], columns[name][1]) for name in signal_columns()],
        columns=["name", "metric", "lag_column"],
    )
    rows = frame.merge(wanted, on="metric").merge(lags, on=[c for c in STATS_CELL if c != "policy"])
    stage_lag = np.select(
        [rows["lag_column"] == c for c in ("zero_lag", "probe_lag", "continuation_lag")],
        [rows[c] for c in ("zero_lag", "probe_lag", "continuation_lag")],
        np.nan,
    )
    return rows[rows["lag"].to_numpy(float) == stage_lag]


def read_seq_losses(path: str | Path) -> dict:
    """One per-sequence loss file as plain numpy arrays and Python scalars."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    for key, value in list(out.items()):
        if value.ndim == 0:
            out[key] = value.item()
    out["candidates"] = [str(c) for c in out["candidates"]]
    return out


def _seq_files(cell_rows: pd.DataFrame, runs: list[str]) -> list[Path] | None:
    """The per-sequence file of every run of a cell (from its `_pool` wall_time row), or None if any lacks one."""
    pool = cell_rows[(cell_rows["metric"] == "wall_time") & (cell_rows["seq_losses"] != "")]
    by_run = {r.run: Path(r.source).parent / r.seq_losses for r in pool.itertuples()}
    if not by_run:
        return None
    missing = [r for r in runs if r not in by_run or not by_run[r].is_file()]
    if missing:
        warnings.warn(
            f"per-sequence losses missing for {len(missing)} run(s) of a cell ({missing[0]} ...): "
            "its CIs resample replicates only",
            stacklevel=3,
        )
        return None
    return [by_run[r] for r in runs]


def _from_seq_files(files: list[Path], candidates: list[str]) -> dict[str, np.ndarray] | None:
    """Per-stage (R, C, N) arrays from the per-sequence files; None when the files disagree on N."""
    stages: dict[str, list[np.ndarray]] = {"probe": [], "continuation": []}
    for path in files:
        data = read_seq_losses(path)
        lags, loss = np.asarray(data["lags"]), np.asarray(data["loss"], dtype=float)
        keep = lags <= data["continuation_lag"]
        lags, loss = lags[keep], loss[:, keep, :]
        index = {c: i for i, c in enumerate(data["candidates"])}
        n = loss.shape[2]
        probe_at = np.flatnonzero(lags == data["probe_lag"])
        per_stage = {
            "probe": loss[:, probe_at[0], :] if len(probe_at) else np.full((loss.shape[0], n), np.nan),
            "continuation": per_sequence_auc(lags, loss),
        }
        for stage, values in per_stage.items():
            stages[stage].append(np.stack([values[index[c]] if c in index else np.full(n, np.nan) for c in candidates]))
    if len({a.shape for a in stages["continuation"]}) != 1:
        warnings.warn("per-sequence files of one cell disagree on the number of sequences", stacklevel=3)
        return None
    return {stage: np.stack(arrays) for stage, arrays in stages.items()}


def collect_cells(frame: pd.DataFrame) -> list[CellData]:
    """Every cell of the frame (all policies, never mixed) as arrays ready for the bootstrap."""
    cells = []
    for policy, part in frame.groupby("policy", sort=True):
        signals = _per_run_signals(part)
        for key, cell_rows in part.groupby(STATS_CELL[1:], sort=True):
            candidates = ordered_candidates(cell_rows["candidate"].unique())
            if not candidates:
                continue
            runs = sorted(cell_rows["run"].unique())
            mine = signals
            for column, value in zip(STATS_CELL[1:], key, strict=True):
                mine = mine[mine[column] == value]
            table = mine.groupby(["name", "run", "candidate"])["value"].mean()
            per_run = {}
            for name in signal_columns():
                grid = np.full((len(runs), len(candidates)), np.nan)
                if name in table.index.get_level_values(0):
                    sub = table.loc[name]
                    for (run, cand), value in sub.items():
                        if run in runs and cand in candidates:
                            grid[runs.index(run), candidates.index(cand)] = value
                per_run[name] = grid
            files = _seq_files(cell_rows, runs)
            values = _from_seq_files(files, candidates) if files else None
            per_sequence = values is not None
            if values is None:
                values = {stage: per_run[metric][:, :, None] for stage, metric in STAGE_METRIC.items()}
            cells.append(CellData((policy, *key), candidates, runs, values, per_run, per_sequence))
    return cells
