"""Eval-loss curves of a comparison group as nested arrays for the budget and speedup analyses.

A **group** is (experiment, policy, growth_step, regime): every seed and replicate of it, every
candidate, every evaluated lag. Its array is x[s, r, n, c, l]: seed s, replicate r (`valid[s, r]`),
eval sequence n, candidate c, lag l, read from the per-sequence files (docs/results_schema.md); without
them (older results) N = 1 and x holds the `eval_loss` rows. Lags are those every run evaluated.

The scratch_wide runs of their own budget (growth.experiment.scratch, `scratch.jsonl`) are read the same way, per
(experiment, policy, regime): z[s, r, n, l] over their own lags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.loading.cells import ordered_candidates
from analysis.loading.load import DEFAULT_CLIP_MODE, DEFAULT_K, DEFAULT_LR_CORRECTION, policy_name
from analysis.ranking.cell_data import read_seq_losses

GROUP = ["experiment", "policy", "growth_step", "regime"]
SCRATCH_STORE = "scratch.jsonl"  # growth.experiment.scratch.STORE


@dataclass
class Curves:
    """One group's curves: x[s, r, n, c, l] and what the speedup needs."""

    key: tuple  # GROUP values
    k: int
    lr_policy: str
    seeds: list[int]
    replicates: list[list[int]]  # per seed, the replicate numbers behind valid[s]
    candidates: list[str]
    lags: np.ndarray  # (L,)
    x: np.ndarray  # (S, R, N, C, L)
    valid: np.ndarray  # (S, R)
    cost: dict = field(default_factory=dict)  # growth.measure.cost.cost_fields of the group's cells
    growth_tokens: dict[str, float] = field(default_factory=dict)  # per candidate, tokens spent before lag 0
    token_kl: dict[str, float] = field(default_factory=dict)  # per candidate, mean lag-0 token KL

    def label(self) -> str:
        experiment, policy, growth_step, regime = self.key
        return f"{experiment} {policy} g{growth_step} {regime}"


@dataclass
class ScratchCurves:
    """The shared scratch_wide runs of one (experiment, policy, regime): z[s, r, n, l]."""

    seeds: list[int]
    replicates: list[list[int]]
    lags: np.ndarray
    x: np.ndarray  # (S, R, N, L)
    valid: np.ndarray
    cost: dict = field(default_factory=dict)


def _pad(per_seed: list[list[np.ndarray]], fill_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged per-seed replicate arrays into (S, R, ...) plus the valid mask."""
    n_reps = max(len(r) for r in per_seed)
    x = np.full((len(per_seed), n_reps, *fill_shape), np.nan)
    valid = np.zeros((len(per_seed), n_reps), bool)
    for s, reps in enumerate(per_seed):
        for r, a in enumerate(reps):
            x[s, r], valid[s, r] = a, True
    return x, valid


def _common_lags(runs: list[dict]) -> np.ndarray:
    common = set(int(v) for v in runs[0]["lags"])
    for run in runs[1:]:
        common &= {int(v) for v in run["lags"]}
    return np.asarray(sorted(common))


def _on_lags(run: dict, lags: np.ndarray, candidates: list[str] | None) -> np.ndarray:
    """A run's loss (C, L, N) -> (N, C, L) on `lags` (NaN for an absent candidate); scratch: (L, N) -> (N, L)."""
    index = [list(map(int, run["lags"])).index(int(v)) for v in lags]
    loss = np.asarray(run["loss"], dtype=float)
    if candidates is None:
        return loss[index].T
    where = {c: i for i, c in enumerate(run["candidates"])}
    out = np.full((loss.shape[2], len(candidates), len(lags)), np.nan)
    for c, name in enumerate(candidates):
        if name in where:
            out[:, c, :] = loss[where[name]][index].T
    return out


def _row_runs(rows: pd.DataFrame, pool_rows: pd.DataFrame) -> list[dict]:
    """Runs from eval_loss rows alone (N = 1), for results without per-sequence files."""
    runs = []
    for p in pool_rows.itertuples():
        mine = rows[(rows["run"] == p.run) & (rows["seed"] == p.seed) & (rows["metric"] == "eval_loss")]
        mine = mine[~mine["candidate"].str.startswith("_")]
        lags = sorted(mine["lag"].unique())
        names = ordered_candidates(mine["candidate"].unique())
        table = mine.pivot_table(index="candidate", columns="lag", values="value", aggfunc="mean")
        loss = table.reindex(index=names, columns=lags).to_numpy(float)[:, :, None]
        runs.append({"seed": p.seed, "replicate": p.replicate, "lags": lags, "candidates": names, "loss": loss})
    return runs


def group_curves(frame: pd.DataFrame) -> list[Curves]:
    """Every group of the frame (docs/analysis.md "Budgets"), seeds and replicates as nested arrays."""
    out = []
    for key, rows in frame.groupby(GROUP, sort=True):
        pool_rows = rows[(rows["metric"] == "wall_time") & rows["candidate"].str.startswith("_")]
        pool_rows = pool_rows.sort_values(["seed", "replicate", "run"])
        if pool_rows.empty:
            continue
        paths = [Path(p.source).parent / p.seq_losses for p in pool_rows.itertuples() if p.seq_losses]
        if len(paths) == len(pool_rows) and all(p.is_file() for p in paths):
            runs = []
            for p, path in zip(pool_rows.itertuples(), paths, strict=True):
                runs.append(read_seq_losses(path) | {"seed": p.seed, "replicate": p.replicate})
        else:
            runs = _row_runs(rows, pool_rows)
        if len({np.asarray(r["loss"]).shape[2] for r in runs}) != 1:
            continue  # files disagree on the number of sequences: not comparable
        lags = _common_lags(runs)
        candidates = ordered_candidates({c for r in runs for c in r["candidates"]})
        seeds = sorted({int(r["seed"]) for r in runs})
        per_seed = [[_on_lags(r, lags, candidates) for r in runs if r["seed"] == s] for s in seeds]
        reps = [[int(r["replicate"]) for r in runs if r["seed"] == s] for s in seeds]
        x, valid = _pad(per_seed, per_seed[0][0].shape)
        growth = rows[(rows["metric"] == "growth_tokens") & (rows["lag"] == 0)]
        kl = rows[(rows["metric"] == "token_kl") & (rows["lag"] == 0)]
        out.append(
            Curves(
                key=tuple(key),
                k=int(rows["k"].iloc[0]),
                lr_policy=str(rows["lr_policy"].iloc[0]),
                seeds=seeds,
                replicates=reps,
                candidates=candidates,
                lags=lags,
                x=x,
                valid=valid,
                cost=json.loads(pool_rows["cost"].iloc[-1]),
                growth_tokens=growth.groupby("candidate")["value"].mean().to_dict(),
                token_kl=kl.groupby("candidate")["value"].mean().to_dict(),
            )
        )
    return out


def scratch_curves(roots: Sequence[str | Path]) -> dict[tuple, ScratchCurves]:
    """The shared scratch runs below the roots, by (experiment, policy, regime) (policy labels as analysis.loading.load)."""
    runs: dict[tuple, list[dict]] = {}
    cost: dict[tuple, dict] = {}
    for root in roots:
        for store in sorted(Path(root).rglob(SCRATCH_STORE)):
            for line in store.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line
                if row.get("metric") != "wall_time" or not (store.parent / row.get("seq_losses", "")).is_file():
                    continue
                lr = str(row.get("lr_correction") or DEFAULT_LR_CORRECTION)
                clip = str(row.get("clip_mode") or DEFAULT_CLIP_MODE)
                key = (
                    str(row["experiment"]),
                    policy_name(lr, clip, int(row.get("k") or DEFAULT_K)),
                    str(row["regime"]),
                )
                with np.load(store.parent / row["seq_losses"]) as data:
                    run = {"lags": data["lags"], "loss": data["loss"]}
                runs.setdefault(key, []).append(run | {"seed": int(row["seed"]), "replicate": int(row["replicate"])})
                cost[key] = row.get("cost") or {}
    out = {}
    for key, found in runs.items():
        latest = {(r["seed"], r["replicate"]): r for r in found}  # a re-run replaces the earlier one
        found = [latest[k] for k in sorted(latest)]
        lags = _common_lags(found)
        seeds = sorted({r["seed"] for r in found})
        per_seed = [[_on_lags(r, lags, None) for r in found if r["seed"] == s] for s in seeds]
        reps = [[r["replicate"] for r in found if r["seed"] == s] for s in seeds]
        x, valid = _pad(per_seed, per_seed[0][0].shape)
        out[key] = ScratchCurves(seeds, reps, lags, x, valid, cost[key])
    return out
