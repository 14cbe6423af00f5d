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

from analysis.atomic import atomic_write
from analysis.cells import CANDIDATE_ORDER, ROW, ordered_candidates, ordered_regimes
from analysis.rankings import DIVERGED, NOT_APPLICABLE, OK, STAGES

DPI = 110
REGIME_MARKERS = {"deterministic": "o", "stochastic": "^"}
KL_FLOOR = 1e-12  # token KL of a preserving candidate is float noise; below this it is drawn at the floor
PROBE_PANELS = (
    ("probe_kl", "probe KL to continue_small"),
    ("probe_rms", "probe RMS logit change"),
    ("probe_escape", "probe escape fraction"),
    ("probe_eval_loss", "eval loss at probe lag"),
)


def candidate_color(name: str) -> str:
    """A fixed colour per candidate, the same in every figure."""
    palette = [f"C{i}" for i in range(10)]
    if name in CANDIDATE_ORDER:
        return palette[CANDIDATE_ORDER.index(name)]
    return palette[(len(CANDIDATE_ORDER) + sum(map(ord, name))) % 10]


def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure on the Agg canvas (no global state, nothing to close)."""
    fig = Figure(figsize=(width, height), layout="constrained")
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


def plot_curves(curves: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per (experiment, seed, growth step): a panel per regime, a line per candidate, probe lag marked."""
    paths = []
    regimes = ordered_regimes(summary["regime"].unique())
    multi = summary["experiment"].nunique() > 1
    for (exp, seed, step), rows in summary.groupby(ROW, sort=True):
        fig = _new_figure(5.0 * len(regimes), 4.0)
        axes = fig.subplots(1, len(regimes), squeeze=False, sharey=True)[0]
        for ax, regime in zip(axes, regimes):
            cell = rows[rows["regime"] == regime]
            data = curves[(curves["experiment"] == exp) & (curves["seed"] == seed)
                          & (curves["growth_step"] == step) & (curves["regime"] == regime)]
            ax.set_title(f"{regime}")
            ax.set_xlabel("steps after growth (lag)")
            ax.set_ylabel("held-out eval loss")
            ax.grid(alpha=0.3)
            if data.empty:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="0.4")
                continue
            for cand in ordered_candidates(data["candidate"].unique()):
                line = data[data["candidate"] == cand].dropna(subset=["mean"])
                if line.empty:
                    continue
                color = candidate_color(cand)
                ax.plot(line["lag"], line["mean"], color=color, lw=1.6, label=cand)
                spread = line["std"].fillna(0.0)
                if (line["size"] > 1).any():
                    ax.fill_between(line["lag"], line["mean"] - spread, line["mean"] + spread, color=color, alpha=0.2)
                div = cell.loc[cell["candidate"] == cand, "diverged_lag"]
                if len(div) and not math.isnan(div.iloc[0]):
                    ax.plot(line["lag"].iloc[-1], line["mean"].iloc[-1], marker="X", ms=10, color=color, ls="",
                            label=f"{cand} diverged (lag {int(div.iloc[0])})")
            probe = cell["probe_lag"].dropna()
            if len(probe):
                ax.axvline(probe.iloc[0], color="0.3", ls="--", lw=1, label=f"probe lag {int(probe.iloc[0])}")
            ax.legend(fontsize=7, loc="upper right")
        label = f"{exp}: " if multi else ""
        fig.suptitle(f"Eval-loss curves after growth, {label}seed {seed}, growth step {step}")
        paths.append(_save(fig, out_dir / f"curves_{_slug(exp)}_seed{seed}_step{step}.png"))
    return paths


def _heat_label(row: pd.Series | None) -> str:
    """Annotation of one heat-map square."""
    if row is None or row["status"] not in (OK, DIVERGED):
        return "n/a" if row is not None and row["status"] == NOT_APPLICABLE else "not\nrun"
    return f"{int(row['rank'])}\ndiv." if row["status"] == DIVERGED else f"{int(row['rank'])}"


def plot_rank_heatmap(ranks: pd.DataFrame, path: Path) -> Path:
    """Ranks as a heat map: candidates x cells, one panel per stage, each square annotated."""
    candidates = ordered_candidates(ranks["candidate"].unique())
    regimes = ordered_regimes(ranks["regime"].unique())
    multi = ranks["experiment"].nunique() > 1
    cells = ranks[["regime", *ROW]].drop_duplicates()
    cells = cells.assign(order=cells["regime"].map(regimes.index)).sort_values(["order", *ROW])
    labels = [f"{r[:4]}.\n{e + chr(10) if multi else ''}s{s} @ {g}" for r, e, s, g, _ in cells.itertuples(index=False)]
    vmax = max(2.0, float(np.nanmax(ranks["rank"].to_numpy(float))) if ranks["rank"].notna().any() else 2.0)
    fig = _new_figure(max(6.0, 1.6 + 0.95 * len(cells)), 1.2 + len(STAGES) * (0.45 * len(candidates) + 0.8))
    axes = fig.subplots(len(STAGES), 1, squeeze=False)[:, 0]
    image = None
    for ax, stage in zip(axes, STAGES):
        part = ranks[ranks["stage"] == stage.name]
        grid = np.full((len(candidates), len(cells)), np.nan)
        for j, (regime, exp, seed, step, _) in enumerate(cells.itertuples(index=False)):
            col = part[(part["regime"] == regime) & (part["experiment"] == exp) & (part["seed"] == seed)
                       & (part["growth_step"] == step)]
            for i, cand in enumerate(candidates):
                hit = col[col["candidate"] == cand]
                row = hit.iloc[0] if len(hit) else None
                if row is not None and not math.isnan(row["rank"]):
                    grid[i, j] = row["rank"]
                text = _heat_label(row)
                bold = row is not None and bool(row["winner"])
                ax.text(j, i, text, ha="center", va="center", fontsize=8, weight="bold" if bold else "normal",
                        color="white" if not math.isnan(grid[i, j]) and grid[i, j] > (1 + vmax) / 2 else "black")
        cmap = colormaps["viridis_r"].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=1, vmax=vmax, aspect="auto")
        ax.set_yticks(range(len(candidates)), candidates, fontsize=8)
        ax.set_xticks(range(len(cells)), labels, fontsize=7)
        lag = part["lag"].dropna()
        lag_text = f"lag {int(lag.iloc[0])}" if len(lag) else "not run"
        ax.set_title(f"{stage.name} ({lag_text}): rank by {stage.label} (1 = best, bold = winner)", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="rank (1 = best)", shrink=0.6)
    fig.suptitle("Candidate ranks per cell")
    return _save(fig, path)


def _scatter_panels(summary: pd.DataFrame, panels: tuple[tuple[str, str], ...], path: Path, title: str,
                    floors: dict[str, float]) -> Path | None:
    """Scatter each signal (x) against the 128-step AUC (y): a point per candidate per cell."""
    has_auc = summary[np.isfinite(summary["auc"])]
    if not any(np.isfinite(has_auc[col]).any() for col, _ in panels):
        return None
    candidates = ordered_candidates(has_auc["candidate"].unique())
    regimes = [r for r in ordered_regimes(has_auc["regime"].unique()) if (has_auc["regime"] == r).any()]
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(5.0 * ncols + 1.8, 4.0 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (column, label) in zip(axes, panels):
        values = has_auc[column].abs() if column == "loss_gap" else has_auc[column]
        floor = floors.get(column)
        x = values.clip(lower=floor) if floor else values
        ok = np.isfinite(x)
        ax.set_ylabel("eval-loss AUC at continuation lag (lower = better)")
        ax.grid(alpha=0.3)
        if not ok.any():
            ax.set_title(f"{label}: not run")
            ax.set_xlabel(label)
            continue
        for cand in candidates:
            for regime in regimes:
                sel = ok & (has_auc["candidate"] == cand) & (has_auc["regime"] == regime)
                if sel.any():
                    ax.scatter(x[sel], has_auc.loc[sel, "auc"], color=candidate_color(cand),
                               marker=REGIME_MARKERS.get(regime, "s"), s=36, alpha=0.85, edgecolor="k", lw=0.4)
        if _use_log(x[ok].to_numpy(float)):
            ax.set_xscale("log")
        suffix = f" (values < {floor:g} drawn at {floor:g})" if floor else ""
        ax.set_xlabel(label + suffix)
        ax.set_title(f"{label} vs AUC")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.legend(handles=_legend_handles(candidates, regimes), loc="outside right center", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_probe_vs_auc(summary: pd.DataFrame, path: Path) -> Path | None:
    """Each probe-lag signal against the 128-step AUC; None when no cell has both."""
    return _scatter_panels(summary, PROBE_PANELS, path, "Probe signals vs continuation utility", {})


def plot_preservation_vs_auc(summary: pd.DataFrame, path: Path) -> Path | None:
    """Zero-step token KL and |loss gap| against the 128-step AUC; None when no cell has both."""
    panels = (("token_kl", "zero-step token KL(small || wide)"), ("loss_gap", "zero-step |loss gap|"))
    return _scatter_panels(summary, panels, path, "Zero-step preservation vs continuation utility",
                           {"token_kl": KL_FLOOR, "loss_gap": KL_FLOOR})
