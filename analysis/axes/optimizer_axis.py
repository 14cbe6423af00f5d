"""Does the winner or the escape change with the optimizer? (issue 32; docs/analysis.md "Optimizer axis")

Rows are matched across optimizers (the `optimizer` column, optim.name) by (regime, lr_policy, k, growth
step, horizon = the cell's continuation lag), so a 500-step main-part cell is never compared with a
3,000-step long-part one. Within a side, one value per (seed, candidate): the mean over its replicates
and over experiments that ran the same cell (identical configs give identical numbers).

- Winner: the candidate with the lowest mean final eval loss over seeds; its *support* is the fraction of
  hierarchical-bootstrap draws (analysis.axes.hierarchical, over seeds) in which it is still the lowest. The
  winner "changes" when the two sides' winners differ and each has support >= 0.95; "unresolved" when
  they differ but one does not.
- Escape (probe_escape, clone_escape): per candidate and side the mean over seeds with its CI, and the
  difference muon - adamw with the CI of independent draws (the two sides pretrain different small
  models, so nothing is paired), widened for the smaller side's seed count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.axes import hierarchical as h

ESCAPE_METRICS = ("probe_escape", "clone_escape")
UTILITY = "final_loss"
BASE, OTHER = "adamw", "muon"
KEY = ["regime", "lr_policy", "k", "growth_step", "horizon"]
SUPPORT = 0.95


def per_seed(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(optimizer, KEY..., candidate, seed) -> value of `metric`, averaged over replicates and experiments."""
    ends = frame[frame["metric"] == UTILITY].groupby(["experiment", "growth_step"])["lag"].max()
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        return pd.DataFrame(columns=["optimizer", *KEY, "candidate", "seed", "value"])
    horizon = ends.rename("horizon").reset_index()
    rows = rows.merge(horizon, on=["experiment", "growth_step"])
    return rows.groupby(["optimizer", *KEY, "candidate", "seed"], as_index=False)["value"].mean()


def _nested(part: pd.DataFrame, candidates: list[str]) -> tuple[h.Nested, list[int]]:
    """x[s, 1, 1, c] of the seeds that have every candidate."""
    wide = part.pivot_table(index="seed", columns="candidate", values="value")[candidates].dropna()
    return h.nested(wide.to_numpy()[:, None, None, :]), list(wide.index)


def winners(frame: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """Per matched key: each side's winner, its bootstrap support, and whether the winner changes."""
    values = per_seed(frame, UTILITY)
    out = []
    for key, part in values.groupby(KEY, sort=True):
        sides = {o: p for o, p in part.groupby("optimizer")}
        if not {BASE, OTHER} <= set(sides):
            continue
        common = sorted(set.intersection(*(set(p["candidate"]) for p in sides.values())))
        record = dict(zip(KEY, key, strict=True)) | {"candidates": len(common)}
        picks = {}
        for name in (BASE, OTHER):
            data, seeds = _nested(sides[name], common)
            est = data.estimate()
            boot = h.draws(data, n_resamples, np.random.default_rng([seed, len(seeds)]))
            best = int(np.argmin(est))
            support = float(np.mean(np.argmin(boot, axis=1) == best))
            picks[name] = (common[best], support)
            record |= {f"{name}_winner": common[best], f"{name}_support": support, f"{name}_seeds": len(seeds)}
        (a, sa), (b, sb) = picks[BASE], picks[OTHER]
        record["winner_changes"] = "no" if a == b else ("yes" if min(sa, sb) >= SUPPORT else "unresolved")
        out.append(record)
    return pd.DataFrame(out)


def escape(frame: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """Per matched key, escape metric and candidate: each side's mean [CI] and muon - adamw [CI]."""
    out = []
    for metric in ESCAPE_METRICS:
        values = per_seed(frame, metric)
        for key, part in values.groupby([*KEY, "candidate"], sort=True):
            sides = {o: p for o, p in part.groupby("optimizer")}
            if not {BASE, OTHER} <= set(sides):
                continue
            record = dict(zip([*KEY, "candidate"], key, strict=True)) | {"metric": metric}
            boots, ests, counts = {}, {}, {}
            for i, name in enumerate((BASE, OTHER)):
                data, seeds = _nested(sides[name], [str(key[-1])])
                ests[name], counts[name] = data.estimate()[0], len(seeds)
                boots[name] = h.draws(data, n_resamples, np.random.default_rng([seed, i, len(seeds)]))[:, 0]
                low, high = h.interval(np.array([ests[name]]), boots[name][:, None], len(seeds))
                record |= {
                    name: ests[name],
                    f"{name}_low": low[0],
                    f"{name}_high": high[0],
                    f"{name}_seeds": len(seeds),
                }
            diff = ests[OTHER] - ests[BASE]
            low, high = h.interval(np.array([diff]), (boots[OTHER] - boots[BASE])[:, None], min(counts.values()))
            record |= {
                "difference": diff,
                "diff_low": low[0],
                "diff_high": high[0],
                "verdict": _verdict(low[0], high[0]),
            }
            out.append(record)
    return pd.DataFrame(out)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return f"higher under {OTHER}"
    if high < 0:
        return f"lower under {OTHER}"
    return "no change detected"


def _ci(value: float, low: float, high: float) -> str:
    return "n/a" if value != value else f"{value:.3g} [{low:.3g}, {high:.3g}]"


def markdown(win: pd.DataFrame, esc: pd.DataFrame) -> str:
    """The report section: the winners side by side, then each escape metric's difference."""
    from analysis.output.tables import markdown_table

    if win.empty and esc.empty:
        return f"*No matched cells: needs rows of both optimizers ({BASE} and {OTHER}) at one (regime, policy, k, growth step, horizon).*\n"
    lines = [
        "Cells matched across optim.name by (regime, policy, k, growth step, horizon); escape metrics: mean over"
        " seeds [95% hierarchical CI] per optimizer and their difference (analysis/axes/optimizer_axis.py).\n"
    ]
    if not win.empty:
        t = win.assign(**{
            BASE: [f"{r[f'{BASE}_winner']} ({r[f'{BASE}_support']:.2f}, {r[f'{BASE}_seeds']} seeds)" for _, r in win.iterrows()],
            OTHER: [f"{r[f'{OTHER}_winner']} ({r[f'{OTHER}_support']:.2f}, {r[f'{OTHER}_seeds']} seeds)" for _, r in win.iterrows()],
        })  # fmt: skip
        lines.append(
            "Winner by final eval loss (bootstrap support, seeds):\n\n"
            + markdown_table(t[[*KEY, BASE, OTHER, "winner_changes"]])
            + "\n"
        )
    if not esc.empty:
        t = esc.assign(**{
            BASE: [_ci(r[BASE], r[f"{BASE}_low"], r[f"{BASE}_high"]) for _, r in esc.iterrows()],
            OTHER: [_ci(r[OTHER], r[f"{OTHER}_low"], r[f"{OTHER}_high"]) for _, r in esc.iterrows()],
            f"{OTHER} - {BASE}": [_ci(r["difference"], r["diff_low"], r["diff_high"]) for _, r in esc.iterrows()],
        })  # fmt: skip
        lines.append(
            markdown_table(t[["metric", *KEY, "candidate", BASE, OTHER, f"{OTHER} - {BASE}", "verdict"]]) + "\n"
        )
    return "\n".join(lines)
