"""Figures of the budget, speedup and growth-factor axes (PNG, Agg), one per (group) or (policy, regime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.output.plots import _new_figure, _save, _slug, candidate_color


def _lag_axis(ax, lags: np.ndarray) -> None:
    positive = lags[lags > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        ax.set_xscale("symlog", linthresh=max(1.0, float(positive.min())))
    ax.set_xlabel("budget: steps after growth (lag)")


def ci_range(values: np.ndarray) -> tuple[float, float]:
    """Log-axis limits that hold every finite positive point and CI end, with a margin."""
    v = values[np.isfinite(values) & (values > 0)]
    if not len(v):
        return 0.1, 10.0
    return float(v.min()) / 2, float(v.max()) * 2


def draw_ci(ax, x, y, low, high, lims: tuple[float, float], color, label: str | None = None, **kw) -> None:
    """Points with their 95% CIs on a log axis. A finite end is a whisker; an end at 0 or infinity (a ratio
    the data cannot bound) is an arrow from the point to the axis edge, never a whisker to an arbitrary 1e-2
    or 1e3 (issue 31)."""
    x, y, low, high = (np.asarray(a, float) for a in (x, y, low, high))
    open_low = ~(np.isfinite(low) & (low > 0))
    open_high = ~np.isfinite(high)
    below = np.where(open_low, 0.0, np.maximum(y - low, 0))
    above = np.where(open_high, 0.0, np.maximum(high - y, 0))
    ax.errorbar(x, y, yerr=[below, above], color=color, label=label, **kw)
    arrow = {"arrowstyle": "-|>", "color": color, "lw": 1.0, "shrinkA": 4, "shrinkB": 0}
    for xi, yi in zip(x[open_high], y[open_high], strict=True):
        ax.annotate("", xy=(xi, lims[1]), xytext=(xi, yi), arrowprops=arrow)
    for xi, yi in zip(x[open_low], y[open_low], strict=True):
        ax.annotate("", xy=(xi, lims[0]), xytext=(xi, yi), arrowprops=arrow)


def plot_reference_diff(table: pd.DataFrame, path: Path) -> Path | None:
    """Paired difference of each candidate's eval loss to the reference vs budget, with 95% CI bands."""
    reference = table["reference"].iloc[0]
    others = [c for c in table["candidate"].unique() if c != reference]
    if reference not in set(table["candidate"]) or not others:
        return None
    fig = _new_figure(7, 4)
    ax = fig.add_subplot()
    for name in others:
        part = table[table["candidate"] == name].sort_values("lag")
        color = candidate_color(name)
        ax.plot(part["lag"], part["diff_to_reference"], color=color, label=name, marker=".")
        ax.fill_between(part["lag"], part["ref_ci_low"], part["ref_ci_high"], color=color, alpha=0.15, lw=0)
    ax.axhline(0, color="0.3", lw=0.8, ls="--")
    _lag_axis(ax, table["lag"].to_numpy(float))
    ax.set_ylabel(f"eval loss - {reference} (< 0: better)")
    head = table.iloc[0]
    ax.set_title(f"{head['policy']} {head['regime']} g{head['growth_step']}: paired difference to {reference}")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def winner_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Candidates x lags: True where the candidate is a winner (the leader or tied with it) at that budget."""
    return (
        table.pivot_table(index="candidate", columns="lag", values="winner", aggfunc="max").fillna(False).astype(bool)
    )


def plot_winners(table: pd.DataFrame, winners: pd.DataFrame, path: Path) -> Path:
    """The winner at each budget: a filled square per (candidate, lag) won; dashed lines where it changes."""
    matrix = winner_matrix(table)
    fig = _new_figure(max(5, 0.35 * matrix.shape[1] + 3), 0.4 * matrix.shape[0] + 1.5)
    ax = fig.add_subplot()
    for y, name in enumerate(matrix.index):
        xs = [x for x, lag in enumerate(matrix.columns) if matrix.loc[name, lag]]
        ax.scatter(xs, [y] * len(xs), marker="s", s=60, color=candidate_color(name))
    for x, lag in enumerate(matrix.columns):
        row = winners[winners["lag"] == lag]
        if len(row) and bool(row["changes"].iloc[0]):
            ax.axvline(x - 0.5, color="0.4", ls="--", lw=0.8)
    ax.set_yticks(range(matrix.shape[0]), list(matrix.index), fontsize=8)
    ax.set_xticks(range(matrix.shape[1]), [str(v) for v in matrix.columns], fontsize=7, rotation=90)
    ax.set_xlabel("budget: steps after growth (lag); dashed = the winners change")
    head = table.iloc[0]
    ax.set_title(f"{head['policy']} {head['regime']} g{head['growth_step']}: winner at each budget (ties included)")
    return _save(fig, path)


def plot_speedup_vs_k(table: pd.DataFrame, path: Path) -> Path | None:
    """FLOP speedup against scratch vs growth factor per candidate, with CIs; 1 = break-even."""
    if table.empty or table["k"].nunique() < 1:
        return None
    fig = _new_figure(6, 4)
    ax = fig.add_subplot()
    ok_rows = table[table["status"] == "ok"]
    lims = ci_range(ok_rows[["speedup_flops", "flops_ci_low", "flops_ci_high"]].to_numpy(float).ravel())
    lims = (min(lims[0], 0.05), max(lims[1], 2.0))  # below 0.1, which marks "not reached"; 1 (break-even) shows
    for name, part in table.groupby("candidate"):
        part = part.sort_values("k")
        ok = (part["status"] == "ok").to_numpy()
        color = candidate_color(str(name))
        k = part["k"].to_numpy(float)
        y, low, high = (part[c].to_numpy(float)[ok] for c in ("speedup_flops", "flops_ci_low", "flops_ci_high"))
        draw_ci(ax, k[ok], y, low, high, lims, color, str(name), marker="o", capsize=3)
        ax.scatter(k[~ok], [0.1] * int((~ok).sum()), marker="x", color=color)
    ax.axhline(1, color="0.3", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(*lims)
    ax.set_xlabel("growth factor k")
    ax.set_ylabel("FLOP speedup vs scratch")
    head = table.iloc[0]
    ax.set_title(f"{head['lr_policy']} {head['regime']} g{head['growth_step']}, rung {head['rung']}: speedup vs k\n"
                 "(pretraining charged; x at 0.1: not reached; arrow: CI open to that side)", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_speedup_ladder(table: pd.DataFrame, path: Path) -> Path | None:
    """One group's speedup against scratch at every rung of its ladder, in tokens and in FLOPs (pretraining
    charged), with 95% CIs; a missed rung is a down-pointing triangle at the upper bound its budget proves."""
    if table.empty:
        return None
    fig = _new_figure(11, 4)
    axes = fig.subplots(1, 2, sharex=True)
    names = sorted(table["candidate"].unique())
    offsets = dict(zip(names, np.linspace(-0.25, 0.25, len(names)), strict=True))  # side by side at a rung
    for ax, unit, label in (
        (axes[0], "tokens", "in tokens after growth"),
        (axes[1], "flops", "in FLOPs, pretraining charged"),
    ):
        ok_rows = table[table["status"] == "ok"]
        columns = [f"speedup_{unit}", f"{unit}_ci_low", f"{unit}_ci_high"]
        bounds = table.loc[table["status"] != "ok", f"{unit}_bound"].to_numpy(float)
        lims = ci_range(np.concatenate([ok_rows[columns].to_numpy(float).ravel(), bounds, [1.0]]))
        for name in names:
            part = table[table["candidate"] == name].sort_values("rung")
            ok = (part["status"] == "ok").to_numpy()
            x = part["rung"].to_numpy(float) + offsets[name]
            y, low, high = (part[c].to_numpy(float)[ok] for c in columns)
            color = candidate_color(str(name))
            draw_ci(ax, x[ok], y, low, high, lims, color, str(name), marker="o", ls="none", capsize=2)
            ax.scatter(x[~ok], part[f"{unit}_bound"].to_numpy(float)[~ok], marker="v", color=color, s=25)
        ax.axhline(1, color="0.3", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylim(*lims)
        ax.set_ylabel("speedup vs scratch_wide")
        ax.set_title(label, fontsize=9)
        rungs = table.drop_duplicates("rung").sort_values("rung")
        ax.set_xticks(rungs["rung"], [f"{r.rung}\n{r.target_loss:.2f}" for r in rungs.itertuples()], fontsize=7)
        ax.set_xlabel("rung: target eval loss (nats)")
    axes[0].legend(fontsize=7, ncol=2)
    head = table.iloc[0]
    fig.suptitle(f"{head['experiment']} {head['policy']} {head['regime']}: speedup per target\n"
                 "(v: not reached, at the bound its budget proves; arrow: CI open to that side)", fontsize=9)  # fmt: skip
    return _save(fig, path)


def budget_figures(table: pd.DataFrame, winners: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Both budget figures of every group in the tables."""
    paths = []
    keys = ["experiment", "policy", "growth_step", "regime"]
    for key, part in table.groupby(keys, sort=True):
        stem = _slug("_".join(str(v) for v in key))
        mine = winners.merge(pd.DataFrame([dict(zip(keys, key, strict=True))]), on=keys)
        diff = plot_reference_diff(part, out_dir / f"budget_diff_{stem}.png")
        paths += [p for p in (diff, plot_winners(part, mine, out_dir / f"budget_winner_{stem}.png")) if p]
    return paths
