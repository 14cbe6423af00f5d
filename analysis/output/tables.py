"""Turn the tidy rank table into the ranking tables of the report: CSV, Markdown and LaTeX."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis.loading.cells import ordered_candidates, ordered_regimes
from analysis.ranking.rankings import DIVERGED, NOT_APPLICABLE, NOT_RUN, OK, STAGES, RankIndex
from growth.measure import metric_registry

STAGE_SHORT = {"zero_step": "L0", "probe": "probe", "continuation": "cont"}
TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def fmt_number(metric: str, value: float) -> str:
    """One number in the style of its metric (growth/measure/metric_registry.py)."""
    return metric_registry.fmt(metric, value)


def fmt_stat(metric: str, mean: float, std: float, n: float) -> str:
    """'mean' or 'mean ± std' when several runs back the number."""
    text = fmt_number(metric, mean)
    if n is not None and n > 1 and std is not None and not math.isnan(std):
        text += f" ± {fmt_number(metric, std).lstrip('+')}"
    return text


def _has_ci(row: Mapping[str, Any]) -> bool:
    low = row.get("ci_low", math.nan)
    return low is not None and not (isinstance(low, float) and math.isnan(low))


def metric_text(row: Mapping[str, Any]) -> str:
    """The numbers behind a rank: mean [95% CI] where there is one (else mean ± std), plus the gap at lag 0."""
    if _has_ci(row):
        m = row["metric"]
        lo, hi = fmt_number(m, row["ci_low"]), fmt_number(m, row["ci_high"])
        return f"{fmt_number(m, row['value'])} [{lo}, {hi}]"
    text = fmt_stat(row["metric"], row["value"], row["value_std"], row["value_n"])
    if row["stage"] == "zero_step":
        gap = fmt_stat("loss_gap", row["aux_value"], row["aux_std"], row["value_n"])
        return f"kl {text}, gap {gap}"
    return text


def status_text(row: Mapping[str, Any]) -> str:
    """The label of a candidate that has no rankable number."""
    if row["status"] == DIVERGED:
        where = "" if math.isnan(row["diverged_lag"]) else f" at lag {int(row['diverged_lag'])}"
        runs = f" in {row['n_diverged']}/{row['n_runs']} runs" if row["n_runs"] > 1 else ""
        return f"diverged{where}{runs}"
    return row["status"]


def cell_text(row: Mapping[str, Any], markup: str = "plain") -> str:
    """One table cell: rank with the winner marked, and the metric behind it (or the status)."""
    if row["status"] in (NOT_RUN, NOT_APPLICABLE):
        return {"tex": "--" if row["status"] == NOT_RUN else "n/a"}.get(markup, row["status"])
    rank = int(row["rank"])
    if row["status"] == DIVERGED:
        return {"tex": f"{rank} (div.)"}.get(markup, f"{rank} ({status_text(row)})")
    numbers = metric_text(row)
    # `=1`: statistically tied with the leader (paired CI of the difference contains 0).
    shown = f"={rank}" if row.get("tied_with_leader", False) else str(rank)
    if markup == "md":
        return f"**{shown}** ({numbers})" if row["winner"] else f"{shown} ({numbers})"
    if markup == "tex":
        numbers = tex_escape(numbers).replace("±", r"$\pm$")
        return rf"\textbf{{{shown}}} ({numbers})" if row["winner"] else f"{shown} ({numbers})"
    return f"{shown}{'*' if row['winner'] else ''} ({numbers})"


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters (underscores above all)."""
    return "".join(TEX_SPECIAL.get(ch, ch) for ch in str(text))


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table, without the optional tabulate dependency."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(idx: RankIndex, regime: str, row: tuple, stage: str, candidate: str, markup: str) -> str:
    """The formatted cell, 'not run' (or '--' in LaTeX) when the analysis never saw the candidate there."""
    rec = idx.get(regime, row, stage, candidate)
    if rec is None:
        return "--" if markup == "tex" else NOT_RUN
    return cell_text(rec, markup)


def _row_columns(row: tuple, multi: bool, step_name: str = "growth_step") -> dict:
    """The leading (experiment,) seed, growth step columns of a table row."""
    exp, seed, step = row
    return {**({"experiment": exp} if multi else {}), "seed": seed, step_name: step}


def rankings_wide(ranks: pd.DataFrame) -> pd.DataFrame:
    """rankings.csv: per regime, one row per (seed, growth step), one column per candidate."""
    idx = RankIndex(ranks)
    records = []
    for regime in idx.regimes:
        for row in idx.rows:
            rec = {"regime": regime, **_row_columns(row, True)}
            for stage in STAGES:
                rec[f"{stage.name}_lag"] = idx.lag(regime, stage.name, [row])
            for cand in idx.candidates:
                rec[cand] = " | ".join(
                    f"{STAGE_SHORT[s.name]}: {_cell(idx, regime, row, s.name, cand, 'plain')}" for s in STAGES
                )
            for stage in STAGES:
                rec[f"winner_{stage.name}"] = idx.winners(regime, row, stage.name)
            records.append(rec)
    return pd.DataFrame.from_records(records)


def rankings_markdown(ranks: pd.DataFrame) -> str:
    """Markdown: for each regime, one table per stage (rows = seed x growth step, columns = candidates)."""
    idx = RankIndex(ranks)
    out = []
    for regime in idx.regimes:
        out.append(f"### Regime: {regime}\n")
        for stage in STAGES:
            out.append(
                f"**{stage.name}** (lag {idx.lag(regime, stage.name)}; ranked by {stage.label}; bold = winner; "
                "=1 = tied with the leader)\n"
            )
            records = []
            for row in idx.rows:
                rec = {**_row_columns(row, idx.multi, "growth step"), "lag": idx.lag(regime, stage.name, [row])}
                rec.update({c: _cell(idx, regime, row, stage.name, c, "md") for c in idx.candidates})
                rec["winner"] = idx.winners(regime, row, stage.name)
                records.append(rec)
            out.append(markdown_table(pd.DataFrame.from_records(records)) + "\n")
    return "\n".join(out)


def rankings_latex(ranks: pd.DataFrame, policy: str | None = None) -> str:
    """rankings.tex: one booktabs table per regime (per policy, when named), one row per (seed, growth step)."""
    idx = RankIndex(ranks)
    pol = f", policy {tex_escape(policy)}" if policy else ""
    pol_label = "-" + re.sub(r"[^A-Za-z0-9-]", "-", policy) if policy else ""
    lead = ["experiment", "seed", "step"] if idx.multi else ["seed", "step"]
    out = ["% Generated by `python -m analysis.report`; needs \\usepackage{booktabs,graphicx}."]
    for regime in idx.regimes:
        lags = [idx.lag(regime, s.name) for s in STAGES]
        first = len(lead) + 1
        spans = [rf"\multicolumn{{3}}{{c}}{{{tex_escape(c)}}}" for c in idx.candidates]
        rules = [rf"\cmidrule(lr){{{first + 3 * i}-{first + 3 * i + 2}}}" for i in range(len(idx.candidates))]
        sub = [f"lag {lag}" for lag in lags] * len(idx.candidates)
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{Candidate ranks, {tex_escape(regime)} regime{pol}: rank (metric) at lag {lags[0]} "
            rf"(zero-step token KL; loss gap), lag {lags[1]} (eval loss) and lag {lags[2]} (eval-loss AUC). "
            r"Bold: winner; =1: tied with the leader (95\% CI). div.: diverged (ranked last). --: not run.}",
            rf"\label{{tab:rankings-{re.sub(r'[^A-Za-z0-9-]', '-', regime)}{pol_label}}}",
            r"\resizebox{\textwidth}{!}{%",
            r"\begin{tabular}{" + "l" * len(lead) + "ccc" * len(idx.candidates) + "}",
            r"\toprule",
            " & ".join([""] * len(lead) + spans) + r" \\",
            " ".join(rules),
            " & ".join([tex_escape(h) for h in lead] + sub) + r" \\",
            r"\midrule",
        ]
        for row in idx.rows:
            cells = [tex_escape(v) for v in _row_columns(row, idx.multi).values()]
            cells += [_cell(idx, regime, row, s.name, c, "tex") for c in idx.candidates for s in STAGES]
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(out)


def aggregate_by_step(ranks: pd.DataFrame) -> pd.DataFrame:
    """Over seeds, per (experiment, regime, growth step, stage, candidate): rank and metric mean, std, count."""
    keys = ["experiment", "regime", "growth_step", "stage", "candidate"]
    ok = ranks[ranks["status"] == OK]
    agg = ranks.groupby(keys).agg(
        rank_mean=("rank", "mean"),
        rank_std=("rank", "std"),
        n_seeds=("rank", "count"),
        n_diverged=("status", lambda s: int((s == DIVERGED).sum())),
        n_not_applicable=("status", lambda s: int((s == NOT_APPLICABLE).sum())),
    )
    metric = ok.groupby(keys).agg(
        metric=("metric", "first"), value_mean=("value", "mean"), value_std=("value", "std"), n_ok=("value", "count")
    )
    out = agg.join(metric, how="left").reset_index()
    out["n_ok"] = out["n_ok"].fillna(0).astype(int)
    return out


def aggregate_markdown(agg: pd.DataFrame) -> str:
    """Markdown of the by-growth-step aggregate: cells 'rank mean ± std (metric mean ± std), n'."""
    if agg.empty:
        return "No ranked cells.\n"
    candidates = ordered_candidates(agg["candidate"].unique())
    multi = agg["experiment"].nunique() > 1
    stage_order = {s.name: i for i, s in enumerate(STAGES)}
    out = []
    for regime in ordered_regimes(agg["regime"].unique()):
        part = agg[agg["regime"] == regime]
        if part.empty:
            out.append(f"### Regime: {regime}\n\nnot run\n")
            continue
        records = []
        keys = part[["experiment", "growth_step", "stage"]].drop_duplicates()
        keys = keys.assign(order=keys["stage"].map(stage_order)).sort_values(["experiment", "growth_step", "order"])
        for exp, step, stage, _ in keys.itertuples(index=False):
            rows = part[(part["experiment"] == exp) & (part["growth_step"] == step) & (part["stage"] == stage)]
            rec = {"experiment": exp} if multi else {}
            rec.update({"growth step": step, "stage": stage})
            for cand in candidates:
                hit = rows[rows["candidate"] == cand]
                r = hit.iloc[0] if len(hit) else None
                if r is None or r["n_seeds"] == 0:
                    rec[cand] = NOT_APPLICABLE if r is not None and r["n_not_applicable"] else NOT_RUN
                    continue
                rank = f"{r['rank_mean']:.2f}".rstrip("0").rstrip(".")
                if r["n_seeds"] > 1:
                    rank += f" ± {r['rank_std']:.2f}"
                value = (
                    "diverged" if r["n_ok"] == 0 else fmt_stat(r["metric"], r["value_mean"], r["value_std"], r["n_ok"])
                )
                div = f", {r['n_diverged']} diverged" if r["n_diverged"] and r["n_ok"] else ""
                rec[cand] = f"{rank} ({value}), n={r['n_seeds']}{div}"
            records.append(rec)
        out.append(f"### Regime: {regime}\n")
        out.append(markdown_table(pd.DataFrame.from_records(records)) + "\n")
    return "\n".join(out)


def round_frame(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats rounded for display."""
    return frame.apply(lambda col: col.round(digits) if pd.api.types.is_float_dtype(col) else col)
