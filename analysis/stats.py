"""Paired bootstrap statistics over replicates and eval sequences (SPEC section 5, "noise").

Every cell (policy, experiment, seed, growth_step, regime) is turned into arrays x[r, c, n]: replicate r,
candidate c, eval sequence n; one array per ranked stage (probe-lag eval loss, continuation AUC). With the
per-sequence files of docs/results_schema.md, n runs over the N held-out sequences; without them (old
results) N = 1 and x holds the per-run rows, so only replicates are resampled.

Two-way bootstrap: each draw resamples replicates (rows) and sequences (columns) with replacement,
independently, and takes the mean of x over the resampled rows and columns. One draw's weights are shared
by every candidate and every signal of the cell, so differences of resampled means are resampled paired
differences, and the selector taus of one draw are computed on one coherent resample.

Why not scipy.stats.bootstrap: it resamples observations along one axis (jointly for paired samples), so it
cannot resample two crossed factors (replicates x sequences) independently, and it does not hand back the
draws we need to share between candidates and signals. The resampling here is a multinomial count vector per
factor, which is the same as drawing indices with replacement.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cells import SOURCES, ordered_candidates, stage_lags

DEFAULT_RESAMPLES = 2000
CI_LEVEL = 0.95
DEFAULT_SEED = 0
STATS_CELL = ["policy", "experiment", "seed", "growth_step", "regime"]
# stage -> the summary column it ranks (analysis.rankings.STAGES)
STAGE_METRIC = {"probe": "probe_eval_loss", "continuation": "auc"}
SIGNAL_COLUMNS = ("token_kl", "loss_gap", "probe_kl", "probe_rms", "probe_escape", "probe_eval_loss", "auc")
_CHUNK = 256  # bootstrap draws per einsum block (bounds memory at chunk x C x N floats)


# ---------------------------------------------------------------- pure functions


# Paired loss differences smaller than this are float32 rounding, not evidence (eval losses near 3 carry
# about 3e-7 of rounding; a clone that follows the small model exactly differs from it by that much).
# A CI excludes zero only when it clears this margin; docs/analysis.md states it.
NUMERICAL_TOLERANCE = 1e-5


def clearly_above_zero(low: float) -> bool:
    """The CI's lower end lies above zero by more than float rounding (False for NaN)."""
    return bool(low > NUMERICAL_TOLERANCE)


def clearly_below_zero(high: float) -> bool:
    """The CI's upper end lies below zero by more than float rounding (False for NaN)."""
    return bool(high < -NUMERICAL_TOLERANCE)


def per_sequence_auc(lags: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """AUC of each sequence's loss curve: trapezoid over lags / (lags[-1] - lags[0]); loss (..., L, N) -> (..., N).

    Same normalisation as growth.metrics.trapezoid_auc, so the mean over sequences is the `auc` row.
    """
    lags = np.asarray(lags, dtype=float)
    return np.trapezoid(np.asarray(loss, dtype=float), lags, axis=-2) / (lags[-1] - lags[0])


def resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n) counts of n indices drawn with replacement (a multinomial)."""
    if n == 1:
        return np.ones((n_resamples, 1))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)


def draw_weights(rng: np.random.Generator, n_rows: int, n_cols: int, n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent resampling counts for rows (replicates) and columns (sequences) of one two-way design."""
    return resample_counts(rng, n_rows, n_resamples), resample_counts(rng, n_cols, n_resamples)


def weighted_means(x: np.ndarray, w_rows: np.ndarray, w_cols: np.ndarray) -> np.ndarray:
    """Resampled means of x (R, K, N) under count weights (B, R) and (B, N): (B, K)."""
    x = np.asarray(x, dtype=float)
    n_rows, _, n_cols = x.shape
    out = np.empty((w_rows.shape[0], x.shape[1]))
    for start in range(0, w_rows.shape[0], _CHUNK):
        stop = start + _CHUNK
        rows = np.einsum("br,rkn->bkn", w_rows[start:stop], x)
        out[start:stop] = np.einsum("bkn,bn->bk", rows, w_cols[start:stop]) / (n_rows * n_cols)
    return out


def percentile_ci(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap draws along axis 0."""
    alpha = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(draws, dtype=float), [alpha, 100 - alpha], axis=0)
    return low, high


def has_noise(n_replicates: int, n_sequences: int) -> bool:
    """A CI needs something to resample: two replicates, or two sequences."""
    return n_replicates * n_sequences > 1


def bootstrap_mean_ci(
    d: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int | np.random.Generator = DEFAULT_SEED,
) -> tuple[float, float, float]:
    """Mean of d[r, n] (a paired difference per replicate and sequence; 1-D = replicates only) and its CI.

    Two-way percentile bootstrap: rows and columns resampled independently per draw. NaN CI when d has a
    single value (one replicate, no per-sequence data): there is nothing to resample.
    """
    d = np.asarray(d, dtype=float)
    d = d[:, None] if d.ndim == 1 else d
    mean = float(d.mean())
    if not has_noise(*d.shape):
        return mean, math.nan, math.nan
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    w_rows, w_cols = draw_weights(rng, d.shape[0], d.shape[1], n_resamples)
    draws = weighted_means(d[:, None, :], w_rows, w_cols)[:, 0]
    low, high = percentile_ci(draws, level)
    return mean, float(low), float(high)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of x and y along the last axis (vectorised over leading axes); 0 where either is constant.

    tau-b = sum_{i<j} s_x s_y / sqrt(sum s_x^2 * sum s_y^2), s = sign of the pairwise difference: the same
    number as scipy.stats.kendalltau's default, for the small candidate counts of a cell.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(x.shape[-1], k=1)
    sx, sy = np.sign(x[..., i] - x[..., j]), np.sign(y[..., i] - y[..., j])
    denom = np.sqrt((sx**2).sum(-1) * (sy**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (sx * sy).sum(-1) / denom
    return np.where(denom > 0, out, 0.0)


def cell_rng(seed: int, key: Iterable) -> np.random.Generator:
    """A Generator fixed by the base seed and the cell's identity: a cell's CIs do not depend on other cells."""
    return np.random.default_rng([seed, zlib.crc32(repr(tuple(key)).encode())])


# ---------------------------------------------------------------- cells from results


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
    wanted = pd.DataFrame(
        [(name, SOURCES[name][0], SOURCES[name][1]) for name in SIGNAL_COLUMNS],
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
            for name in SIGNAL_COLUMNS:
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


# ---------------------------------------------------------------- bootstrap of a cell


@dataclass
class CellBoot:
    """A cell's bootstrap: shared weights, per-stage resampled candidate means (None when there is no noise)."""

    cell: CellData
    w_rows: np.ndarray | None
    w_cols: np.ndarray | None
    means: dict[str, np.ndarray] = field(default_factory=dict)  # stage -> point means (C,)
    draws: dict[str, np.ndarray | None] = field(default_factory=dict)  # stage -> (B, C)

    def finite(self, stage: str) -> np.ndarray:
        """Candidates with a finite value in every replicate and sequence of the stage."""
        return np.isfinite(self.cell.values[stage]).all(axis=(0, 2))


def bootstrap_cell(cell: CellData, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> CellBoot:
    """Draw the cell's weights once and resample every stage's candidate means with them."""
    noisy = has_noise(cell.n_replicates, cell.n_sequences)
    if noisy:
        w_rows, w_cols = draw_weights(cell_rng(seed, cell.key), cell.n_replicates, cell.n_sequences, n_resamples)
    else:
        w_rows = w_cols = None
    boot = CellBoot(cell, w_rows, w_cols)
    for stage, x in cell.values.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN candidates
            boot.means[stage] = np.nanmean(x, axis=(0, 2))
        boot.draws[stage] = weighted_means(np.nan_to_num(x), w_rows, w_cols) if noisy else None
    return boot


def bootstrap_cells(
    cells: list[CellData], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> list[CellBoot]:
    """bootstrap_cell over a list of cells."""
    return [bootstrap_cell(c, n_resamples, seed) for c in cells]


def _cell_columns(boot: CellBoot) -> dict:
    return dict(zip(STATS_CELL, boot.cell.key, strict=True))


def candidate_table(boots: list[CellBoot], level: float = CI_LEVEL) -> pd.DataFrame:
    """Per (cell, stage, candidate): mean and CI of the ranked metric, replicate and sequence counts."""
    records = []
    for boot in boots:
        cell = boot.cell
        for stage in cell.values:
            ok = boot.finite(stage)
            draws = boot.draws[stage]
            low, high = percentile_ci(draws, level) if draws is not None else (None, None)
            for i, cand in enumerate(cell.candidates):
                records.append(
                    {
                        **_cell_columns(boot),
                        "stage": stage,
                        "candidate": cand,
                        "mean": boot.means[stage][i] if ok[i] else math.nan,
                        "ci_low": low[i] if low is not None and ok[i] else math.nan,
                        "ci_high": high[i] if high is not None and ok[i] else math.nan,
                        "n_replicates": cell.n_replicates,
                        "n_sequences": cell.n_sequences,
                        "ci_method": cell.method,
                    }
                )
    columns = [*STATS_CELL, "stage", "candidate", "mean", "ci_low", "ci_high", "n_replicates", "n_sequences"]
    return pd.DataFrame.from_records(records, columns=[*columns, "ci_method"])


def pair_table(boots: list[CellBoot], level: float = CI_LEVEL) -> pd.DataFrame:
    """Per (cell, stage, ordered candidate pair): diff = mean(candidate) - mean(other) and its paired CI.

    Lower is better for both stages, so diff < 0 with ci_high < 0 means `candidate` is reliably better.
    Only candidates finite in every replicate and sequence are paired.
    """
    records = []
    for boot in boots:
        cell = boot.cell
        for stage in cell.values:
            ok = np.flatnonzero(boot.finite(stage))
            draws = boot.draws[stage]
            for i in ok:
                for j in ok:
                    if i == j:
                        continue
                    low = high = math.nan
                    if draws is not None:
                        low, high = (float(v) for v in percentile_ci(draws[:, i] - draws[:, j], level))
                    records.append(
                        {
                            **_cell_columns(boot),
                            "stage": stage,
                            "candidate": cell.candidates[i],
                            "other": cell.candidates[j],
                            "diff": float(boot.means[stage][i] - boot.means[stage][j]),
                            "ci_low": low,
                            "ci_high": high,
                            "n_replicates": cell.n_replicates,
                            "n_sequences": cell.n_sequences,
                        }
                    )
    columns = [*STATS_CELL, "stage", "candidate", "other", "diff", "ci_low", "ci_high", "n_replicates", "n_sequences"]
    return pd.DataFrame.from_records(records, columns=columns)


def signal_draws(boot: CellBoot, column: str) -> np.ndarray | None:
    """Resampled per-candidate means of a signal (B, C): per-sequence when the signal is a ranked stage."""
    for stage, metric in STAGE_METRIC.items():
        if metric == column:
            return boot.draws[stage]
    if boot.w_rows is None:
        return None
    s = boot.cell.signals[column]
    return boot.w_rows @ np.nan_to_num(s) / s.shape[0]


def signal_means(boot: CellBoot, column: str) -> np.ndarray:
    """Point per-candidate means of a signal (C,), NaN where any run lacks it."""
    for stage, metric in STAGE_METRIC.items():
        if metric == column:
            values = boot.means[stage].copy()
            values[~boot.finite(stage)] = np.nan
            return values
    return boot.cell.signals[column].mean(axis=0)


def tau_draws(boots: list[CellBoot], target: str = "auc") -> dict[tuple, dict[str, np.ndarray]]:
    """Per cell key, per signal: bootstrap draws (B,) of Kendall tau-b between the signal and the target.

    The same candidates as the point estimate (analysis.selectors.cell_agreement): those with a finite
    signal and a finite target; each draw recomputes both sides' means on the resample and their tau.
    Cells without noise (one replicate, no per-sequence data) get no draws.
    """
    from analysis.selectors import SIGNALS, predicted_cost  # selectors imports cells only

    out: dict[tuple, dict[str, np.ndarray]] = {}
    for boot in boots:
        goal_draws = signal_draws(boot, target)
        if goal_draws is None:
            continue
        goal = signal_means(boot, target)
        per_signal = {}
        for signal in SIGNALS:
            x_draws = signal_draws(boot, signal.column)
            both = np.isfinite(signal_means(boot, signal.column)) & np.isfinite(goal)
            if x_draws is None or both.sum() < 2:
                continue
            cost = predicted_cost(x_draws[:, both], signal)
            per_signal[signal.name] = kendall_tau_b(cost, goal_draws[:, both])
        out[boot.cell.key] = per_signal
    return out
