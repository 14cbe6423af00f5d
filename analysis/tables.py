"""Turn the tidy rank table into the ranking tables of the report: CSV, Markdown and LaTeX."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.cells import ordered_candidates, ordered_regimes
from analysis.rankings import DIVERGED, NOT_APPLICABLE, NOT_RUN, OK, STAGES

ROW_KEYS = ["experiment", "seed", "growth_step"]
SCIENTIFIC = {"token_kl", "loss_gap", "max_logit_diff", "probe_kl"}
STAGE_SHORT = {"zero_step": "L0", "probe": "probe", "continuation": "cont"}
TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def fmt_number(metric: str, value: float) -> str:
    """One number in the style of its metric."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if metric == "loss_gap":
        return f"{value:+.2e}"
    if metric in SCIENTIFIC:
        return f"{value:.2e}"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def fmt_stat(metric: str, mean: float, std: float, n: float) -> str:
    """'mean' or 'mean ± std' when several runs back the number."""
    text = fmt_number(metric, mean)
    if n is not None and n > 1 and std is not None and not math.isnan(std):
        text += f" ± {fmt_number(metric, std).lstrip('+')}"
    return text


def metric_text(row: pd.Series) -> str:
    """The numbers behind a rank: the stage metric, plus the loss gap at lag 0."""
    text = fmt_stat(row["metric"], row["value"], row["value_std"], row["value_n"])
    if row["stage"] == "zero_step":
        gap = fmt_stat("loss_gap", row["aux_value"], row["aux_std"], row["value_n"])
        return f"kl {text}, gap {gap}"
    return text


def status_text(row: pd.Series) -> str:
    """The label of a candidate that has no rankable number."""
    if row["status"] == DIVERGED:
        where = "" if math.isnan(row["diverged_lag"]) else f" at lag {int(row['diverged_lag'])}"
        runs = f" in {row['n_diverged']}/{row['n_runs']} runs" if row["n_runs"] > 1 else ""
        return f"diverged{where}{runs}"
    return row["status"]


def cell_text(row: pd.Series, markup: str = "plain") -> str:
    """One table cell: rank with the winner marked, and the metric behind it (or the status)."""
    if row["status"] in (NOT_RUN, NOT_APPLICABLE):
        return {"tex": "--" if row["status"] == NOT_RUN else "n/a"}.get(markup, row["status"])
    rank = int(row["rank"])
    if row["status"] == DIVERGED:
        return {"tex": f"{rank} (div.)"}.get(markup, f"{rank} ({status_text(row)})")
    numbers = metric_text(row)
    if markup == "md":
        return f"**{rank}** ({numbers})" if row["winner"] else f"{rank} ({numbers})"
    if markup == "tex":
        numbers = tex_escape(numbers).replace("±", r"$\pm$")
        return rf"\textbf{{{rank}}} ({numbers})" if row["winner"] else f"{rank} ({numbers})"
    return f"{rank}{'*' if row['winner'] else ''} ({numbers})"


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters (underscores above all)."""
    return "".join(TEX_SPECIAL.get(ch, ch) for ch in str(text))


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table, without the optional tabulate dependency."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _row_frame(ranks: pd.DataFrame) -> pd.DataFrame:
    """The (experiment, seed, growth_step) rows of the ranking tables, sorted."""
    return ranks[ROW_KEYS].drop_duplicates().sort_values(ROW_KEYS).reset_index(drop=True)


def _winners(part: pd.DataFrame) -> str:
    """Space-separated winners of one (row, stage), or '-'."""
    names = part.loc[part["winner"], "candidate"].tolist()
    return " ".join(names) if names else "-"


def _lag_text(values: pd.Series) -> str:
    """A stage's lag for a header or cell: the number, several numbers, or 'not run'."""
    lags = sorted({int(v) for v in values if not math.isnan(v)})
    return "/".join(str(v) for v in lags) if lags else "not run"


def rankings_wide(ranks: pd.DataFrame) -> pd.DataFrame:
    """rankings.csv: per regime, one row per (seed, growth step), one column per candidate."""
    candidates = ordered_candidates(ranks["candidate"].unique())
    records = []
    for regime in ordered_regimes(ranks["regime"].unique()):
        for _, key in _row_frame(ranks).iterrows():
            sel = (ranks["regime"] == regime) & (ranks[ROW_KEYS] == key.values).all(axis=1)
            part = ranks[sel]
            rec = {"regime": regime, **key.to_dict()}
            for stage in STAGES:
                rec[f"{stage.name}_lag"] = _lag_text(part.loc[part["stage"] == stage.name, "lag"])
            for cand in candidates:
                cells = []
                for stage in STAGES:
                    hit = part[(part["stage"] == stage.name) & (part["candidate"] == cand)]
                    text = cell_text(hit.iloc[0]) if len(hit) else NOT_RUN
                    cells.append(f"{STAGE_SHORT[stage.name]}: {text}")
                rec[cand] = " | ".join(cells)
            for stage in STAGES:
                rec[f"winner_{stage.name}"] = _winners(part[part["stage"] == stage.name])
            records.append(rec)
    return pd.DataFrame.from_records(records)


def _stage_table(part: pd.DataFrame, candidates: list[str], multi: bool) -> pd.DataFrame:
    """One regime x stage as a frame of Markdown cells."""
    records = []
    for _, key in _row_frame(part).iterrows():
        rows = part[(part[ROW_KEYS] == key.values).all(axis=1)]
        rec = {"experiment": key["experiment"]} if multi else {}
        rec.update({"seed": key["seed"], "growth step": key["growth_step"], "lag": _lag_text(rows["lag"])})
        for cand in candidates:
            hit = rows[rows["candidate"] == cand]
            rec[cand] = cell_text(hit.iloc[0], "md") if len(hit) else NOT_RUN
        rec["winner"] = _winners(rows)
        records.append(rec)
    return pd.DataFrame.from_records(records)


def rankings_markdown(ranks: pd.DataFrame) -> str:
    """Markdown: for each regime, one table per stage (rows = seed x growth step, columns = candidates)."""
    candidates = ordered_candidates(ranks["candidate"].unique())
    multi = ranks["experiment"].nunique() > 1
    out = []
    for regime in ordered_regimes(ranks["regime"].unique()):
        out.append(f"### Regime: {regime}\n")
        for stage in STAGES:
            part = ranks[(ranks["regime"] == regime) & (ranks["stage"] == stage.name)]
            out.append(f"**{stage.name}** (lag {_lag_text(part['lag'])}; ranked by {stage.label}; "
                       "bold = winner)\n")
            out.append(markdown_table(_stage_table(part, candidates, multi)) + "\n")
    return "\n".join(out)


def rankings_latex(ranks: pd.DataFrame) -> str:
    """rankings.tex: one booktabs table per regime, exactly one row per (seed, growth step)."""
    candidates = ordered_candidates(ranks["candidate"].unique())
    multi = ranks["experiment"].nunique() > 1
    lead = ["experiment", "seed", "step"] if multi else ["seed", "step"]
    out = ["% Generated by `python -m analysis.report`; needs \\usepackage{booktabs,graphicx}."]
    for regime in ordered_regimes(ranks["regime"].unique()):
        part = ranks[ranks["regime"] == regime]
        lags = [_lag_text(part.loc[part["stage"] == s.name, "lag"]) for s in STAGES]
        first = len(lead) + 1
        spans = [rf"\multicolumn{{3}}{{c}}{{{tex_escape(c)}}}" for c in candidates]
        rules = [rf"\cmidrule(lr){{{first + 3 * i}-{first + 3 * i + 2}}}" for i in range(len(candidates))]
        sub = [f"lag {lag}" for lag in lags] * len(candidates)
        out += [
            r"\begin{table}[t]", r"\centering",
            rf"\caption{{Candidate ranks, {tex_escape(regime)} regime: rank (metric) at lag {lags[0]} "
            rf"(zero-step token KL; loss gap), lag {lags[1]} (eval loss) and lag {lags[2]} (eval-loss AUC). "
            r"Bold: winner. div.: diverged (ranked last). --: not run.}",
            rf"\label{{tab:rankings-{tex_escape(regime).replace(chr(92), '')}}}",
            r"\resizebox{\textwidth}{!}{%",
            r"\begin{tabular}{" + "l" * len(lead) + "ccc" * len(candidates) + "}",
            r"\toprule",
            " & ".join([""] * len(lead) + spans) + r" \\",
            " ".join(rules),
            " & ".join([tex_escape(h) for h in lead] + sub) + r" \\",
            r"\midrule",
        ]
        for _, key in _row_frame(part).iterrows():
            rows = part[(part[ROW_KEYS] == key.values).all(axis=1)]
            cells = [tex_escape(key["experiment"])] if multi else []
            cells += [str(key["seed"]), str(key["growth_step"])]
            for cand in candidates:
                for stage in STAGES:
                    hit = rows[(rows["candidate"] == cand) & (rows["stage"] == stage.name)]
                    cells.append(cell_text(hit.iloc[0], "tex") if len(hit) else "--")
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(out)


def aggregate_by_step(ranks: pd.DataFrame) -> pd.DataFrame:
    """Over seeds, per (experiment, regime, growth step, stage, candidate): rank and metric mean, std, count."""
    keys = ["experiment", "regime", "growth_step", "stage", "candidate"]
    ranked = ranks[ranks["status"].isin([OK, DIVERGED])]
    ok = ranked[ranked["status"] == OK]
    agg = ranked.groupby(keys).agg(rank_mean=("rank", "mean"), rank_std=("rank", "std"), n_seeds=("seed", "nunique"),
                                   n_diverged=("status", lambda s: int((s == DIVERGED).sum())))
    metric = ok.groupby(keys).agg(metric=("metric", "first"), value_mean=("value", "mean"),
                                  value_std=("value", "std"))
    return agg.join(metric, how="left").reset_index()


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
                if hit.empty:
                    rec[cand] = NOT_RUN
                    continue
                r = hit.iloc[0]
                rank = f"{r['rank_mean']:.2f}".rstrip("0").rstrip(".")
                if r["n_seeds"] > 1:
                    rank += f" ± {r['rank_std']:.2f}"
                value = ("diverged" if pd.isna(r["metric"])
                         else fmt_stat(r["metric"], r["value_mean"], r["value_std"], r["n_seeds"]))
                div = f", {r['n_diverged']} diverged" if r["n_diverged"] and not pd.isna(r["metric"]) else ""
                rec[cand] = f"{rank} ({value}), n={r['n_seeds']}{div}"
            records.append(rec)
        out.append(f"### Regime: {regime}\n")
        out.append(markdown_table(pd.DataFrame.from_records(records)) + "\n")
    return "\n".join(out)


def round_frame(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats rounded for display."""
    return frame.apply(lambda col: col.round(digits) if np.issubdtype(col.dtype, np.floating) else col)
