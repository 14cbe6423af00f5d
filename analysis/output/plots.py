"""Report figures (PNG, Agg): eval-loss curves, rank heat map, probe signals and preservation vs AUC."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.loading.cells import CELL, ROW, ordered_candidates, ordered_regimes
from analysis.ranking.rankings import DIVERGED, NOT_APPLICABLE, OK, STAGES, RankIndex, lag_text
from growth.measure import metric_registry
from growth.measure.metric_registry import Stage
from growth.store.files import atomic_write
from growth.widen import registry

DPI = 110
REGIME_MARKERS = {"deterministic": "o", "stochastic": "^"}
KL_FLOOR = 1e-12  # token KL of a preserving candidate is float noise; below this it is drawn at the floor


def candidate_color(name: str) -> str:
    """A fixed colour per candidate, the same in every figure."""
    return registry.color(name)


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A pyplot-free figure on the Agg canvas (no global state, nothing to close)."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Atomically save a figure as PNG."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def _slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def _legend_handles(candidates: list[str], regimes: list[str]) -> list[Line2D]:
    """Colour = candidate, marker = regime."""
    handles = [Line2D([], [], color=candidate_color(c), marker="o", ls="", label=c) for c in candidates]
    handles += [Line2D([], [], color="0.3", marker=REGIME_MARKERS.get(r, "s"), ls="", label=r) for r in regimes]
    return handles


def _use_log(values: np.ndarray) -> bool:
    """Log scale only where every value is positive and they span more than two decades."""
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 100


def _not_run(ax) -> None:
    """An empty panel that says so."""
    ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


def off_scale(levels: pd.Series) -> set[str]:
    """Candidates far above the rest (Tukey fence: above Q3 + 1.5 IQR), e.g. scratch_wide next to warm starts."""
    if len(levels) < 3:
        return set()
    q1, q3 = np.percentile(levels.to_numpy(float), [25, 75])
    return set(levels[levels > q3 + 1.5 * (q3 - q1)].index)


def _draw_curves(ax, data: pd.DataFrame, cell: pd.DataFrame, skip: set[str]) -> None:
    """Mean eval-loss line (± std band over runs) per candidate, an X where one diverged, the probe lag dashed."""
    for cand in ordered_candidates(data["candidate"].unique()):
        line = data[data["candidate"] == cand].dropna(subset=["mean"])
        if line.empty or cand in skip:
            continue
        color = candidate_color(cand)
        ax.plot(line["lag"], line["mean"], color=color, lw=1.6, label=cand)
        if (line["size"] > 1).any():
            spread = line["std"].fillna(0.0)
            ax.fill_between(line["lag"], line["mean"] - spread, line["mean"] + spread, color=color, alpha=0.2)
        div = cell.loc[cell["candidate"] == cand, "diverged_lag"]
        if len(div) and not math.isnan(div.iloc[0]):
            ax.plot(
                line["lag"].iloc[-1],
                line["mean"].iloc[-1],
                marker="X",
                ms=10,
                color=color,
                ls="",
                label=f"{cand} diverged (lag {int(div.iloc[0])})",
            )
    probe = cell["probe_lag"].dropna()
    if len(probe):
        ax.axvline(probe.iloc[0], color="0.3", ls="--", lw=1, label=f"probe lag {int(probe.iloc[0])}")
    ax.set_xlabel("steps after growth (lag)")
    ax.set_ylabel("held-out eval loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")


def plot_curves(curves: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per (experiment, seed, growth step): a panel per regime, a line per candidate, probe lag marked.

    When a candidate sits far above the others (off_scale), a second row zooms on the rest from the probe lag on.
    """
    paths = []
    regimes = ordered_regimes(summary["regime"].unique())
    multi = summary["experiment"].nunique() > 1
    for (exp, seed, step), rows in summary.groupby(ROW, sort=True):
        mine = curves[(curves["experiment"] == exp) & (curves["seed"] == seed) & (curves["growth_step"] == step)]
        start = rows["probe_lag"].min()
        late = mine[mine["lag"] >= (0 if math.isnan(start) else start)]
        outliers = {r: off_scale(late[late["regime"] == r].groupby("candidate")["mean"].mean()) for r in regimes}
        zoom = any(outliers.values())
        nrows = 2 if zoom else 1
        # A plain grid of alike panels: fixed margins look the same as constrained layout at ~60% of the cost.
        height = 1.0 + 3.6 * nrows
        fig = _new_figure(5.0 * len(regimes), height, layout=None)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.55 / height, top=1 - 0.75 / height, wspace=0.22, hspace=0.4)
        grid = fig.subplots(nrows, len(regimes), squeeze=False)
        for j, regime in enumerate(regimes):
            cell = rows[rows["regime"] == regime]
            data = mine[mine["regime"] == regime]
            grid[0, j].set_title(regime)
            if data.empty:
                _not_run(grid[0, j])
            else:
                _draw_curves(grid[0, j], data, cell, set())
            if zoom:
                ax = grid[1, j]
                hidden = outliers[regime]
                ax.set_title(
                    f"{regime}, zoom" + (f" (off-scale: {', '.join(sorted(hidden))})" if hidden else ""), fontsize=9
                )
                zoomed = data[data["lag"] >= (0 if math.isnan(start) else start)]
                if zoomed.empty:
                    _not_run(ax)
                else:
                    _draw_curves(ax, zoomed, cell, hidden)
        label = f"{exp}: " if multi else ""
        fig.suptitle(f"Eval-loss curves after growth, {label}seed {seed}, growth step {step}")
        paths.append(_save(fig, out_dir / f"curves_{_slug(exp)}_seed{seed}_step{step}.png"))
    return paths


def _heat_label(rec: dict | None) -> str:
    """Annotation of one heat-map square."""
    if rec is None or rec["status"] not in (OK, DIVERGED):
        return "n/a" if rec is not None and rec["status"] == NOT_APPLICABLE else "not\nrun"
    return f"{int(rec['rank'])}\ndiv." if rec["status"] == DIVERGED else f"{int(rec['rank'])}"


def plot_rank_heatmap(ranks: pd.DataFrame, path: Path) -> Path:
    """Ranks as a heat map: candidates x cells, one panel per stage, each square annotated."""
    idx = RankIndex(ranks)
    cells = [(regime, row) for regime in idx.regimes for row in idx.rows]
    labels = [
        f"{regime[:4]}.\n{exp + chr(10) if idx.multi else ''}s{seed} @ {step}" for regime, (exp, seed, step) in cells
    ]
    ranked = ranks["rank"].dropna()
    vmax = max(2.0, float(ranked.max()) if len(ranked) else 2.0)
    cmap = colormaps["viridis_r"].with_extremes(bad="0.85")
    fig = _new_figure(max(6.0, 1.6 + 0.95 * len(cells)), 1.2 + len(STAGES) * (0.45 * len(idx.candidates) + 0.8))
    axes = fig.subplots(len(STAGES), 1, squeeze=False)[:, 0]
    for ax, stage in zip(axes, STAGES, strict=True):
        grid = np.full((len(idx.candidates), len(cells)), np.nan)
        for j, (regime, row) in enumerate(cells):
            for i, cand in enumerate(idx.candidates):
                rec = idx.get(regime, row, stage.name, cand)
                if rec is not None and not math.isnan(rec["rank"]):
                    # Diverged squares take the worst colour even when all diverged and "tie" at rank 1.
                    grid[i, j] = vmax if rec["status"] == DIVERGED else rec["rank"]
                dark = not math.isnan(grid[i, j]) and grid[i, j] > (1 + vmax) / 2
                ax.text(
                    j,
                    i,
                    _heat_label(rec),
                    ha="center",
                    va="center",
                    fontsize=8,
                    weight="bold" if rec is not None and rec["winner"] else "normal",
                    color="white" if dark else "black",
                )
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=1, vmax=vmax, aspect="auto")
        ax.set_yticks(range(len(idx.candidates)), idx.candidates, fontsize=8)
        ax.set_xticks(range(len(cells)), labels, fontsize=7)
        lags = lag_text(ranks.loc[ranks["stage"] == stage.name, "lag"])
        ax.set_title(f"{stage.name}, lag {lags}: ranked by {stage.label}", fontsize=9)
    fig.colorbar(image, ax=list(axes), label="rank (1 = best)", shrink=0.6)
    fig.suptitle("Candidate ranks per cell (1 = best, bold = winner, grey = not ranked)")
    return _save(fig, path)


def auc_regret(summary: pd.DataFrame) -> pd.Series:
    """AUC minus the best AUC of the same cell: 0 for the cell's winner, comparable across cells."""
    best = summary.groupby(CELL)["auc"].transform("min")
    return summary["auc"] - best


def _set_scale(ax, axis: str, values: np.ndarray) -> None:
    """Log (x) or symlog (regret y, which holds zeros) when the values span more than two decades."""
    positive = values[np.isfinite(values) & (values > 0)]
    if axis == "x" and _use_log(values):
        ax.set_xscale("log")
    elif axis == "y" and len(positive) and positive.max() / positive.min() > 100:
        ax.set_yscale("symlog", linthresh=float(10 ** math.floor(math.log10(positive.min()))))
        ax.set_ylim(bottom=0)  # regrets are >= 0; symlog's margin would otherwise invent a negative decade


def _scatter_panels(
    summary: pd.DataFrame, panels: tuple[tuple[str, str], ...], path: Path, title: str, floors: dict[str, float]
) -> Path | None:
    """Scatter each signal (x) against the 128-step AUC regret (y): a point per candidate per cell."""
    has_auc = summary[np.isfinite(summary["auc"])].copy()
    if not any(np.isfinite(has_auc[col]).any() for col, _ in panels):
        return None
    has_auc["regret"] = auc_regret(has_auc)
    candidates = ordered_candidates(has_auc["candidate"].unique())
    regimes = [r for r in ordered_regimes(has_auc["regime"].unique()) if (has_auc["regime"] == r).any()]
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width, height = 5.2 * ncols + 2.0, 0.4 + 4.0 * nrows
    fig = _new_figure(width, height, layout=None)  # fixed grid: manual margins, ~1/3 cheaper than constrained
    fig.subplots_adjust(
        left=0.75 / width, right=1 - 2.1 / width, bottom=0.55 / height, top=1 - 0.7 / height, wspace=0.3, hspace=0.38
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (column, label) in zip(axes, panels, strict=True):
        values = has_auc[column].abs() if column == "loss_gap" else has_auc[column]
        floor = floors.get(column)
        x = values.clip(lower=floor) if floor else values
        ok = np.isfinite(x)
        ax.set_ylabel("AUC − best AUC of its cell (0 = winner)")
        ax.grid(alpha=0.3)
        suffix = f" (values < {floor:g} drawn at {floor:g})" if floor else ""
        ax.set_xlabel(label + suffix)
        if not ok.any():
            ax.set_title(f"{label}: not run")
            continue
        for cand in candidates:
            for regime in regimes:
                sel = ok & (has_auc["candidate"] == cand) & (has_auc["regime"] == regime)
                if sel.any():
                    ax.scatter(
                        x[sel],
                        has_auc.loc[sel, "regret"],
                        color=candidate_color(cand),
                        marker=REGIME_MARKERS.get(regime, "s"),
                        s=36,
                        alpha=0.85,
                        edgecolor="k",
                        lw=0.4,
                        clip_on=False,
                    )
        _set_scale(ax, "x", x[ok].to_numpy(float))
        _set_scale(ax, "y", has_auc.loc[ok, "regret"].to_numpy(float))
        ax.set_title(f"{label} vs 128-step AUC")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.legend(handles=_legend_handles(candidates, regimes), loc="center right", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_probe_vs_auc(summary: pd.DataFrame, path: Path) -> Path | None:
    """Each probe-lag signal against the 128-step AUC; None when no cell has both."""
    panels = [(m.name, m.label) for m in metric_registry.of_stage(Stage.probe)] + [
        ("probe_eval_loss", "eval loss at probe lag")
    ]
    return _scatter_panels(summary, tuple(panels), path, "Probe signals vs continuation utility", {})


def plot_preservation_vs_auc(summary: pd.DataFrame, path: Path) -> Path | None:
    """Zero-step token KL and |loss gap| against the 128-step AUC; None when no cell has both."""
    panels = (("token_kl", "zero-step token KL(small || wide)"), ("loss_gap", "zero-step |loss gap|"))
    return _scatter_panels(
        summary,
        panels,
        path,
        "Zero-step preservation vs continuation utility",
        {"token_kl": KL_FLOOR, "loss_gap": KL_FLOOR},
    )
