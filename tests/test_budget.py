"""The budget axis on synthetic curves whose winner changes at a known budget."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.axes import budget
from analysis.axes.curves import Curves
from analysis.output import budget_plots

LAGS = np.arange(0, 401, 20)
CROSS = 200  # exact_copy (3 - 0.001 l) and fast (3.1 - 0.0015 l) cross here


def crossing_curves(seeds: int = 5, reps: int = 2, seqs: int = 8, noise: float = 0.01) -> Curves:
    rng = np.random.default_rng(0)
    exact, fast, slow = 3.0 - 0.001 * LAGS, 3.1 - 0.0015 * LAGS, 3.3 - 0.0005 * LAGS
    x = np.stack([exact, fast, slow])[None, None, None] + rng.normal(0, noise, (seeds, reps, seqs, 1, 1))
    x = x + rng.normal(0, noise, (seeds, reps, seqs, 3, len(LAGS))) * 0.2
    return Curves(
        key=("synthetic", "none/global", 1000, "deterministic"), k=2, lr_policy="none/global",
        seeds=list(range(seeds)), replicates=[list(range(reps))] * seeds,
        candidates=["exact_copy", "fast", "slow"], lags=LAGS, x=x, valid=np.ones((seeds, reps), bool),
    )  # fmt: skip


def signal_frame(curves: Curves) -> pd.DataFrame:
    """probe_kl rows that order the candidates as the long budget does (fast < exact < slow)."""
    rows = []
    for s in curves.seeds:
        for r in range(2):
            for name, v in (("exact_copy", 0.2), ("fast", 0.1), ("slow", 0.3)):
                rows.append({"experiment": "synthetic", "policy": "none/global", "growth_step": 1000,
                             "regime": "deterministic", "seed": s, "replicate": r, "candidate": name,
                             "metric": "probe_kl", "lag": 20, "value": v})  # fmt: skip
    return pd.DataFrame(rows)


def test_winner_change_shows_in_table_winners_and_figure(tmp_path):
    curves = crossing_curves()
    table, winners, taus = budget.budget_tables(signal_frame(curves), curves, n_resamples=400, seed=0)
    by_lag = winners.set_index("lag")
    assert by_lag.loc[100, "winners"] == "exact_copy"
    assert by_lag.loc[340, "winners"] == "fast"
    assert by_lag.loc[CROSS, "winners"] == "exact_copy=fast"  # at the crossing both are inside the noise
    changed = by_lag.index[by_lag["changes"]].tolist()
    assert changed and all(120 <= lag <= 300 for lag in changed)  # around the crossing, nowhere else
    assert set(by_lag.loc[340, "per_seed_winners"].split()) == {"fast"}
    # the paired difference to exact_copy changes sign at the crossing, CIs clear of 0 on both sides
    fast = table[table["candidate"] == "fast"].set_index("lag")
    assert fast.loc[60, "ref_ci_low"] > 0 and fast.loc[380, "ref_ci_high"] < 0
    matrix = budget_plots.winner_matrix(table)
    assert matrix.loc["exact_copy", 100] and not matrix.loc["fast", 100]
    assert matrix.loc["fast", 380] and not matrix.loc["exact_copy", 380]
    paths = budget_plots.budget_figures(table, winners, tmp_path)
    assert len(paths) == 2 and all(p.stat().st_size > 1000 for p in paths)
    # probe_kl orders the candidates as the long budget does; at lag 0 one pair of three is reversed
    kl = taus[taus["signal"] == "probe_kl"].set_index("lag")
    assert kl.loc[400, "tau"] == 1.0 and abs(kl.loc[0, "tau"] - 1 / 3) < 1e-9
    assert kl.loc[400, "ci_low"] <= 1.0 <= kl.loc[400, "ci_high"]


def test_an_open_ci_is_an_arrow_to_the_axis_edge_not_a_whisker():
    """A CI end at 0 or infinity is drawn as an arrow to the axis edge; finite ends stay whiskers."""
    from matplotlib.text import Annotation

    from analysis.output.plots import _new_figure

    fig = _new_figure(4, 3)
    ax = fig.add_subplot()
    ax.set_yscale("log")
    y, low, high = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.0, 2.0]), np.array([np.inf, 3.0, 4.0])
    lims = budget_plots.ci_range(np.concatenate([y, low, high]))
    assert lims == (0.25, 8.0)  # the finite positive values, halved and doubled
    budget_plots.draw_ci(ax, [1, 2, 3], y, low, high, lims, "C0", "x", marker="o")
    arrows = [a for a in ax.get_children() if isinstance(a, Annotation)]
    assert sorted((a.xy[0], a.xy[1]) for a in arrows) == [(1.0, 8.0), (2.0, 0.25)]
    segments = ax.containers[0].lines[2][0].get_segments()  # the whiskers: one segment per point
    ends = sorted((float(s[0][1]), float(s[1][1])) for s in segments)
    assert ends == [(0.5, 1.0), (2.0, 3.0), (2.0, 4.0)]  # open sides have zero length, no 1e-2 / 1e3 ends
