"""Verdicts on the claims of SPEC section 1, each from a stated operational test (docs/analysis.md).

One path per claim: the point test here gives a `Claim`; analysis/claim_stats.py gives its statistical
`Verdict`, which `with_statistics` puts in front.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import pandas as pd

from analysis.claim_stats import with_statistics
from analysis.claim_text import (
    CLAIM_TEXT,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_RUN,
    PAPER_STOCHASTIC_CELLS,
    REGIMES,
    ZERO_STEP_TAU_MAX,
    Claim,
    cell_name,
    mean_tau,
)
from analysis.rankings import DIVERGED, OK
from analysis.selectors import TauDraws, signals

__all__ = ["FAILS", "HOLDS", "INCONCLUSIVE", "NOT_RUN", "Claim", "evaluate_claims"]


def _first_place(
    ranks: pd.DataFrame,
    stage: str,
    regime: str | None,
    candidate: str,
    cells: tuple[tuple[int, int], ...] | None,
    multi: bool,
) -> tuple[list[str], list[str], list[str]]:
    """Cells where `candidate` was ranked at `stage` (with a rival), and the subsets where it was / was not first."""
    rows = ranks[(ranks["stage"] == stage) & ranks["status"].isin([OK, DIVERGED])]
    if regime:
        rows = rows[rows["regime"] == regime]
    evaluated, first, not_first = [], [], []
    for (exp, seed, step, reg), cell in rows.groupby(["experiment", "seed", "growth_step", "regime"], sort=True):
        if cells is not None and (seed, step) not in cells:
            continue
        mine = cell[cell["candidate"] == candidate]
        if mine.empty or len(cell) < 2:
            continue
        name = cell_name(exp, seed, step, None if regime else reg, multi)
        evaluated.append(name)
        # Point leader: rank 1 of the means *and* not diverged (when all diverge, all "tie" at rank 1).
        flag = "leader" if "leader" in cell.columns else "winner"
        if mine[flag].iloc[0]:
            first.append(name)
        else:
            best = cell[cell[flag]]
            who = ", ".join(best["candidate"]) or "none"
            not_first.append(f"{name} (rank {int(mine['rank'].iloc[0])}, {mine['status'].iloc[0]}; winner {who})")
    return evaluated, first, not_first


def _first_place_claim(
    cid: int,
    ranks: pd.DataFrame,
    stage: str,
    regime: str | None,
    candidate: str,
    cells: tuple[tuple[int, int], ...] | None,
    test: str,
    multi: bool,
    note: str = "",
) -> Claim:
    """A claim of the form 'candidate ranks first at stage in every evaluated cell'."""
    evaluated, first, not_first = _first_place(ranks, stage, regime, candidate, cells, multi)
    if not evaluated:
        return Claim(cid, CLAIM_TEXT[cid], NOT_RUN, test, f"no cell ranks {candidate} against a rival at {stage}", "")
    verdict = HOLDS if not not_first else FAILS
    evidence = f"{candidate} first in {len(first)}/{len(evaluated)} cells"
    if not_first:
        evidence += "; not first in: " + "; ".join(not_first)
    return Claim(cid, CLAIM_TEXT[cid], verdict, test, evidence + note, "; ".join(evaluated))


def _claim2(ranks: pd.DataFrame, multi: bool) -> Claim:
    """exact_copy first in stochastic continuation, on the paper's cells when any exist."""
    test = (
        "exact_copy wins (AUC rank 1, ties count, not diverged) in every stochastic cell of the paper grid "
        "(seed 0 @ 1000, seed 0 @ 2000, seed 1 @ 2000) that exists; all stochastic cells if none does"
    )
    paper, _, _ = _first_place(ranks, "continuation", "stochastic", "exact_copy", PAPER_STOCHASTIC_CELLS, multi)
    if paper:
        rows = ranks[
            (ranks["stage"] == "continuation")
            & (ranks["regime"] == "stochastic")
            & (ranks["candidate"] == "exact_copy")
            & ranks["status"].isin([OK, DIVERGED])
        ]
        present = set(zip(rows["seed"], rows["growth_step"], strict=True))
        missing = [f"seed {s} @ {g}" for s, g in PAPER_STOCHASTIC_CELLS if (s, g) not in present]
        note = f" (paper cells missing: {', '.join(missing)})" if missing else " (all paper cells present)"
        return _first_place_claim(
            2, ranks, "continuation", "stochastic", "exact_copy", PAPER_STOCHASTIC_CELLS, test, multi, note
        )
    return _first_place_claim(
        2,
        ranks,
        "continuation",
        "stochastic",
        "exact_copy",
        None,
        test,
        multi,
        " (no paper-grid cell present: evaluated on every stochastic cell)",
    )


def _fmt(value: float) -> str:
    """A tau for the evidence column."""
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def _claim4(agreement: pd.DataFrame) -> Claim:
    """Zero-step signals' tau with the 128-step ranking stays below the threshold."""
    test = (
        f"mean Kendall tau (over all cells, both regimes) with the AUC ranking is < {ZERO_STEP_TAU_MAX} "
        "for both zero-step signals, token_kl and |loss_gap| (lower = predicted better)"
    )
    parts, verdicts = [], []
    for signal in ("token_kl", "abs_loss_gap"):
        mean, n = mean_tau(agreement, signal)
        if n:
            verdicts.append(mean < ZERO_STEP_TAU_MAX)
            parts.append(f"{signal} tau {_fmt(mean)} over {n} cells")
    if not verdicts:
        return Claim(4, CLAIM_TEXT[4], NOT_RUN, test, "no cell has token_kl/loss_gap and auc for 2+ candidates", "")
    kl_mean, kl_n = mean_tau(agreement, "probe_kl")
    parts.append(f"(probe_kl tau {_fmt(kl_mean)} over {kl_n} cells, for comparison)")
    cells = _cells_of(agreement, ("token_kl", "abs_loss_gap"))
    return Claim(4, CLAIM_TEXT[4], HOLDS if all(verdicts) else FAILS, test, "; ".join(parts), cells)


def _claim5(agreement: pd.DataFrame) -> Claim:
    """probe_kl has the best worst-regime mean tau among the primary signals."""
    test = (
        "robustness = the worse of the two per-regime mean taus with the AUC ranking; holds if probe_kl's "
        "is >= every other primary signal's (token_kl, |loss_gap|, probe_rms low, probe_escape high, "
        "probe eval loss) that was measured in both regimes"
    )
    scores = {}
    for signal in (s.name for s in signals() if s.primary):
        per_regime = [mean_tau(agreement, signal, (r,))[0] for r in REGIMES]
        if not any(math.isnan(v) for v in per_regime):
            scores[signal] = min(per_regime)
    if "probe_kl" not in scores:
        return Claim(5, CLAIM_TEXT[5], NOT_RUN, test, "probe_kl vs auc not available in both regimes", "")
    best = max(scores.values())
    evidence = "worst-regime mean tau: " + ", ".join(
        f"{k} {_fmt(v)}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1])
    )
    cells = _cells_of(agreement, ("probe_kl",))
    return Claim(5, CLAIM_TEXT[5], HOLDS if scores["probe_kl"] >= best else FAILS, test, evidence, cells)


def _claim6(agreement: pd.DataFrame, probe_agreement: pd.DataFrame) -> Claim:
    """Escape agrees with deterministic AUC, but not with stochastic AUC nor with the probe-lag loss."""
    test = (
        "probe_escape ranked higher = better: mean tau with the AUC ranking > 0 in deterministic cells, "
        "<= 0 in stochastic cells, and mean tau with the probe-lag eval-loss ranking <= 0 over all cells"
    )
    det, n_det = mean_tau(agreement, "probe_escape", ("deterministic",))
    sto, n_sto = mean_tau(agreement, "probe_escape", ("stochastic",))
    short, n_short = mean_tau(probe_agreement, "probe_escape")
    evidence = (
        f"deterministic AUC tau {_fmt(det)} ({n_det} cells); stochastic AUC tau {_fmt(sto)} "
        f"({n_sto} cells); probe-lag loss tau {_fmt(short)} ({n_short} cells)"
    )
    if not (n_det and n_sto and n_short):
        return Claim(6, CLAIM_TEXT[6], NOT_RUN, test, evidence, "")
    holds = det > 0 and sto <= 0 and short <= 0
    cells = _cells_of(agreement, ("probe_escape",))
    return Claim(6, CLAIM_TEXT[6], HOLDS if holds else FAILS, test, evidence, cells)


def _cells_of(agreement: pd.DataFrame, signals: tuple[str, ...]) -> str:
    """The cells a tau-based verdict used."""
    rows = agreement[agreement["signal"].isin(signals)][["experiment", "seed", "growth_step", "regime"]]
    rows = rows.drop_duplicates().sort_values(["regime", "experiment", "seed", "growth_step"])
    multi = rows["experiment"].nunique() > 1
    return "; ".join(cell_name(e, s, g, r, multi) for e, s, g, r in rows.itertuples(index=False))


CLAIM_COLUMNS = [
    "claim_id",
    "claim",
    "verdict",
    "effect",
    "ci_low",
    "ci_high",
    "evidence",
    "point_verdict",
    "test",
    "stat_test",
    "cells",
]


def evaluate_claims(
    ranks: pd.DataFrame,
    agreement: pd.DataFrame,
    probe_agreement: pd.DataFrame,
    pairs: pd.DataFrame | None = None,
    draws: TauDraws | None = None,
    probe_draws: TauDraws | None = None,
) -> pd.DataFrame:
    """The claims table: statistical verdict, effect and CI, evidence, point verdict, the tests, the cells used.

    `pairs` (analysis.stats.pair_table) and the tau draws (analysis.stats.tau_draws, keyed without the policy)
    must come from the same policy as `ranks`. Without them every verdict that exists is inconclusive.
    """
    multi = ranks["experiment"].nunique() > 1
    claims = [
        _first_place_claim(
            1,
            ranks,
            "probe",
            None,
            "exact_copy",
            None,
            "exact_copy wins (probe-lag eval-loss rank 1, ties count, not diverged) in every cell, "
            "both regimes, where it was ranked against at least one other candidate",
            multi,
        ),
        _claim2(ranks, multi),
        _first_place_claim(
            3,
            ranks,
            "continuation",
            "deterministic",
            "structured_non_clone",
            None,
            "structured_non_clone wins (AUC rank 1, ties count, not diverged) in every "
            "deterministic cell where it was ranked against at least one other candidate",
            multi,
        ),
        _claim4(agreement),
        _claim5(agreement),
        _claim6(agreement, probe_agreement),
    ]
    claims = with_statistics(claims, ranks, agreement, probe_agreement, pairs, draws, probe_draws)
    return pd.DataFrame.from_records([asdict(c) for c in claims], columns=CLAIM_COLUMNS)
