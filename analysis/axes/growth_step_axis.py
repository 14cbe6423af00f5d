"""Does the speedup change with the growth step? (issue 32; docs/analysis.md "Growth-step axis")

Each growth step has its own ladder (its warm starts begin at their own lag-0 loss), so rungs of different
growth steps are different losses. The comparison therefore fixes one target per (experiment, regime,
policy): the highest of the groups' bottom rungs (the best loss each group's scratch_wide reaches), which
every group's scratch reaches; each group's speedup at it is recomputed (analysis.axes.speedup.group_speedup,
its hierarchical CI) with the FLOPs of the small model's pretraining charged to its own growth step
(growth.measure.cost: pretrain_tokens = growth_step x tokens per pretraining step). Against the earliest growth
step, the ratio of FLOP speedups with the CI of independent draws (log scale, widened for the smaller
seed count): `higher` / `lower` when it clears 1, else `no change detected`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.axes import hierarchical as h
from analysis.axes import speedup
from analysis.axes.curves import ScratchCurves

KEY = ["experiment", "regime", "policy"]


def common_target(groups: list[speedup.GroupSpeedup]) -> float:
    """The highest bottom rung among the groups: a loss every group's scratch reaches."""
    return float(max(g.targets[-1] for g in groups if len(g.targets)))


def compare(
    speeds: list[speedup.GroupSpeedup],
    scratch: dict[tuple, ScratchCurves],
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """One row per (experiment, regime, policy, candidate, growth step) where a key has >= 2 growth steps."""
    by_key: dict[tuple, list[speedup.GroupSpeedup]] = {}
    for g in speeds:
        experiment, policy, _, regime = g.curves.key
        by_key.setdefault((experiment, regime, policy), []).append(g)
    out = []
    for (experiment, regime, policy), groups in sorted(by_key.items()):
        groups = [g for g in groups if len(g.targets)]
        if len({g.curves.key[2] for g in groups}) < 2:
            continue
        target = np.array([common_target(groups)])
        fixed = {}
        for g in sorted(groups, key=lambda g: g.curves.key[2]):
            res = speedup.group_speedup(
                g.curves, scratch.get((experiment, g.curves.lr_policy, regime)), 1, n_resamples, seed, target
            )
            if res is not None:
                fixed[g.curves.key[2]] = res
        steps = sorted(fixed)
        first = fixed[steps[0]]
        for step in steps:
            res = fixed[step]
            for c, name in enumerate(res.candidates):
                row = res.table[res.table["candidate"] == name].iloc[0]
                record = {
                    "experiment": experiment, "regime": regime, "policy": policy, "candidate": name,
                    "growth_step": step, "target_loss": float(target[0]), "n_seeds": res.n_seeds,
                    "speedup_flops": row["speedup_flops"], "flops_ci_low": row["flops_ci_low"],
                    "flops_ci_high": row["flops_ci_high"], "speedup_tokens": row["speedup_tokens"],
                }  # fmt: skip
                record |= _ratio(res, first, c, name)
                out.append(record)
    return pd.DataFrame(out)


def _ratio(res: speedup.GroupSpeedup, first: speedup.GroupSpeedup, c: int, name: str) -> dict:
    """FLOP speedup of `res` over that of the earliest growth step, with its CI and verdict."""
    if name not in first.candidates:
        return {"ratio_to_first": np.nan, "ratio_low": np.nan, "ratio_high": np.nan, "verdict": "n/a"}
    j = first.candidates.index(name)
    est = res.flops_est[c, 0] / first.flops_est[j, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = res.flops_draws[:, c, 0] / first.flops_draws[:, j, 0]
    boot = np.where(np.isfinite(boot) & (boot > 0), boot, np.nan)
    low, high = h.ratio_interval(np.array([est]), boot[:, None], min(res.n_seeds, first.n_seeds), skip_nan=True)
    verdict = "higher" if low[0] > 1 else "lower" if high[0] < 1 else "no change detected"
    if res is first:
        verdict = "reference"
    return {"ratio_to_first": est, "ratio_low": low[0], "ratio_high": high[0], "verdict": verdict}


def markdown(table: pd.DataFrame) -> str:
    """The report section: per (experiment, regime, policy) the candidates x growth steps."""
    from analysis.output.tables import markdown_table

    if table.empty:
        return "*Needs one (experiment, regime, policy) with a speedup ladder at two or more growth steps.*\n"
    lines = [
        "FLOP speedup (pretraining charged to its own growth step) at one target loss shared by the growth"
        " steps, and its ratio to the earliest step [95% CI] (analysis/axes/growth_step_axis.py).\n"
    ]
    for (experiment, regime, policy), part in table.groupby(KEY, sort=True):
        t = part.assign(
            speedup=[_ci(r.speedup_flops, r.flops_ci_low, r.flops_ci_high) for r in part.itertuples()],
            ratio=[_ci(r.ratio_to_first, r.ratio_low, r.ratio_high) for r in part.itertuples()],
        )
        head = f"**{experiment}: {regime}, {policy}** (target loss {part['target_loss'].iloc[0]:.3f})"
        cols = ["candidate", "growth_step", "n_seeds", "speedup", "ratio", "verdict"]
        lines.append(
            f"{head}\n\n{markdown_table(t[cols].rename(columns={'speedup': 'FLOP speedup [CI]', 'ratio': 'vs earliest step [CI]'}))}\n"
        )
    return "\n".join(lines)


def _ci(value: float, low: float, high: float) -> str:
    return "not reached" if value != value else f"{value:.3g} [{low:.3g}, {high:.3g}]"
