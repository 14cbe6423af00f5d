"""Verdicts on the claims of SPEC section 1, each from a stated operational test (docs/analysis.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis.rankings import DIVERGED, OK
from analysis.selectors import TauDraws, scope_draws, signals
from analysis.stats import clearly_above_zero, clearly_below_zero

HOLDS, FAILS, NOT_RUN, INCONCLUSIVE = "holds", "does not hold", "not run", "inconclusive"
CI_LEVEL = 0.95
# A candidate's standing in one cell, from the paired CIs of its rivals' differences to it.
STRICT, BEATEN, NOISE = "strictly first", "beaten", "inside the noise"
PAPER_STOCHASTIC_CELLS = ((0, 1000), (0, 2000), (1, 2000))  # (seed, growth_step), SPEC section 1
ZERO_STEP_TAU_MAX = 0.5  # claim 4: a zero-step signal "ranks" candidates if its mean tau reaches this
REGIMES = ("deterministic", "stochastic")

CLAIM_TEXT = {
    1: "exact-copy ranks first in every 16-step probe",
    2: "exact-copy ranks first in stochastic 128-step continuations (seed 0 at growth steps 1000 and 2000, "
    "and a reduced candidate pool at seed 1, step 2000)",
    3: "the structured non-clone candidate wins deterministic 128-step continuation",
    4: "zero-step preservation alone does not rank candidates",
    5: "a cheap probe (KL-based) was the most robust selector",
    6: '"escape from the inherited cloned subspace" helps long deterministic continuation but misleads at '
    "short lag and under stochastic continuation",
}


@dataclass(frozen=True)
class Claim:
    """One row of claims.csv."""

    claim_id: int
    claim: str
    verdict: str  # statistical: holds / does not hold / inconclusive (not run: no data)
    test: str
    evidence: str
    cells: str
    point_verdict: str = ""  # the same test on point estimates (means), ignoring the noise
    effect: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    stat_test: str = ""


def cell_name(
    experiment: str, seed: int, growth_step: int, regime: str | None = None, with_experiment: bool = False
) -> str:
    """Short human label of a cell."""
    name = f"seed {seed} @ {growth_step}"
    if regime:
        name = f"{regime} {name}"
    return f"{experiment}: {name}" if with_experiment else name


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


def _mean_tau(agreement: pd.DataFrame, signal: str, regimes: tuple[str, ...] = REGIMES) -> tuple[float, int]:
    """Mean tau of a signal over the cells of the given regimes, and the cell count."""
    rows = agreement[(agreement["signal"] == signal) & agreement["regime"].isin(regimes)]
    return (float(rows["tau"].mean()) if len(rows) else math.nan), len(rows)


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
        mean, n = _mean_tau(agreement, signal)
        if n:
            verdicts.append(mean < ZERO_STEP_TAU_MAX)
            parts.append(f"{signal} tau {_fmt(mean)} over {n} cells")
    if not verdicts:
        return Claim(4, CLAIM_TEXT[4], NOT_RUN, test, "no cell has token_kl/loss_gap and auc for 2+ candidates", "")
    kl_mean, kl_n = _mean_tau(agreement, "probe_kl")
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
        per_regime = [_mean_tau(agreement, signal, (r,))[0] for r in REGIMES]
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
    det, n_det = _mean_tau(agreement, "probe_escape", ("deterministic",))
    sto, n_sto = _mean_tau(agreement, "probe_escape", ("stochastic",))
    short, n_short = _mean_tau(probe_agreement, "probe_escape")
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


# ---------------------------------------------------------------- statistical verdicts


def _fmt_ci(effect: float, low: float, high: float) -> str:
    """'+0.0500 [+0.0400, +0.0600]', or 'CI n/a'."""
    if math.isnan(effect):
        return "n/a"
    if math.isnan(low):
        return f"{effect:+.4f} (CI n/a)"
    return f"{effect:+.4f} [{low:+.4f}, {high:+.4f}]"


def _percentile(draws: np.ndarray) -> tuple[float, float]:
    alpha = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.percentile(draws, [alpha, 100 - alpha])
    return float(lo), float(hi)


def cell_standing(cell: pd.DataFrame, pairs: dict, candidate: str) -> tuple[str, float, float, float, str]:
    """X's standing in one (cell, stage): strictly first, beaten or inside the noise, and the deciding margin.

    margin = rival - X (lower is better, so > 0 = X better). Strictly first: X ok and every ok rival's
    margin has a CI entirely > 0 (diverged rivals count as beaten by X). Beaten: X diverged, or some rival's
    margin has a CI entirely < 0. Otherwise inside the noise (including: no CI available).
    Returns (standing, margin, ci_low, ci_high, rival) with the deciding rival: the most clearly ahead one
    when beaten, else the one with the smallest margin.
    """
    mine = cell[cell["candidate"] == candidate].iloc[0]
    if mine["status"] != OK:
        return BEATEN, math.nan, math.nan, math.nan, "(diverged)"
    rivals = cell[(cell["candidate"] != candidate) & (cell["status"] == OK)]
    margins = []
    for r in rivals.itertuples():
        key = (r.experiment, r.seed, r.growth_step, r.regime, r.stage, r.candidate, candidate)
        hit = pairs.get(key)
        diff, low, high = (
            (math.nan, math.nan, math.nan) if hit is None else (hit["diff"], hit["ci_low"], hit["ci_high"])
        )
        if hit is None:
            diff = float(r.value - mine["value"])
        margins.append((diff, low, high, r.candidate))
    if not margins:
        return STRICT, math.nan, math.nan, math.nan, "(all rivals diverged)"
    ahead = [m for m in margins if clearly_below_zero(m[2])]
    if ahead:
        return BEATEN, *min(ahead, key=lambda m: m[2])
    smallest = min(margins, key=lambda m: m[0])
    if all(clearly_above_zero(m[1]) for m in margins):
        return STRICT, *smallest
    return NOISE, *smallest


def stat_first_place(
    ranks: pd.DataFrame,
    pairs: pd.DataFrame,
    stage: str,
    regime: str | None,
    candidate: str,
    cells: tuple[tuple[int, int], ...] | None,
) -> tuple[str, float, float, float, str]:
    """Statistical verdict of 'candidate ranks first at stage' over the evaluated cells, effect, CI, evidence.

    Holds: strictly first in every cell; does not hold: beaten in at least one; else inconclusive.
    The effect is the deciding margin (rival - candidate, > 0 = candidate better): the most clearly ahead
    rival of a cell where it was beaten, else the smallest margin over all cells.
    """
    lookup = {
        (r["experiment"], r["seed"], r["growth_step"], r["regime"], r["stage"], r["candidate"], r["other"]): r
        for r in pairs.to_dict("records")
    }
    rows = ranks[(ranks["stage"] == stage) & ranks["status"].isin([OK, DIVERGED])]
    if regime:
        rows = rows[rows["regime"] == regime]
    multi = ranks["experiment"].nunique() > 1
    results = []
    for (exp, seed, step, reg), cell in rows.groupby(["experiment", "seed", "growth_step", "regime"], sort=True):
        if cells is not None and (seed, step) not in cells:
            continue
        if (cell["candidate"] == candidate).sum() == 0 or len(cell) < 2:
            continue
        results.append((cell_name(exp, seed, step, reg, multi), *cell_standing(cell, lookup, candidate)))
    if not results:
        return NOT_RUN, math.nan, math.nan, math.nan, ""
    beaten = [r for r in results if r[1] == BEATEN]
    if beaten:
        verdict = FAILS
        decisive = [r for r in beaten if not math.isnan(r[2])]
        pick = min(decisive, key=lambda r: r[4]) if decisive else beaten[0]
    else:
        verdict = HOLDS if all(r[1] == STRICT for r in results) else INCONCLUSIVE
        finite = [r for r in results if not math.isnan(r[2])]
        pick = min(finite, key=lambda r: r[2]) if finite else results[0]
    counts = {k: sum(r[1] == k for r in results) for k in (STRICT, BEATEN, NOISE)}
    evidence = (
        f"{candidate}: strictly first in {counts[STRICT]}/{len(results)} cells, beaten in {counts[BEATEN]}, "
        f"inside the noise in {counts[NOISE]}; margin (rival - {candidate}) per cell: "
        + "; ".join(f"{r[0]}: {r[1]}, vs {r[5]} {_fmt_ci(r[2], r[3], r[4])}" for r in results)
    )
    return verdict, pick[2], pick[3], pick[4], evidence


def _draws_ci(draws: np.ndarray | None) -> tuple[float, float]:
    return (math.nan, math.nan) if draws is None else _percentile(draws)


def stat_claim4(agreement: pd.DataFrame, draws: TauDraws | None) -> tuple[str, float, float, float, str]:
    """Both zero-step signals' mean tau (all cells) has a CI entirely < ZERO_STEP_TAU_MAX: holds; one has a
    CI entirely >= it: does not hold; else inconclusive. Effect: the larger of the two mean taus."""
    parts = []
    for signal in ("token_kl", "abs_loss_gap"):
        mean, n = _mean_tau(agreement, signal)
        if n:
            parts.append((signal, mean, *_draws_ci(scope_draws(agreement, draws, signal, REGIMES))))
    if not parts:
        return NOT_RUN, math.nan, math.nan, math.nan, ""
    below = [p for p in parts if p[3] < ZERO_STEP_TAU_MAX]
    above = [p for p in parts if p[2] >= ZERO_STEP_TAU_MAX]
    verdict = FAILS if above else HOLDS if len(below) == len(parts) else INCONCLUSIVE
    pick = max(parts, key=lambda p: p[1])
    evidence = "; ".join(f"{p[0]} mean tau {_fmt_ci(p[1], p[2], p[3])}" for p in parts)
    return verdict, pick[1], pick[2], pick[3], evidence


def stat_claim5(agreement: pd.DataFrame, draws: TauDraws | None) -> tuple[str, float, float, float, str]:
    """Paired: robustness(probe_kl) - robustness(other) per draw, for each other primary signal measured in
    both regimes. Holds: every such difference has a CI entirely > 0; does not hold: one has a CI entirely
    < 0; else inconclusive (exact ties included). Effect: the smallest difference."""
    robust: dict[str, tuple[float, np.ndarray | None]] = {}
    for signal in (s.name for s in signals() if s.primary):
        per_regime = [_mean_tau(agreement, signal, (r,))[0] for r in REGIMES]
        if any(math.isnan(v) for v in per_regime):
            continue
        regime_draws = [scope_draws(agreement, draws, signal, (r,)) for r in REGIMES]
        both = None if any(d is None for d in regime_draws) else np.minimum(*regime_draws)
        robust[signal] = (min(per_regime), both)
    if "probe_kl" not in robust or len(robust) < 2:
        return NOT_RUN, math.nan, math.nan, math.nan, ""
    kl, kl_draws = robust.pop("probe_kl")
    diffs = []
    for signal, (value, d) in robust.items():
        low, high = (math.nan, math.nan) if d is None or kl_draws is None else _percentile(kl_draws - d)
        diffs.append((signal, kl - value, low, high))
    if any(d[3] < 0 for d in diffs):
        verdict = FAILS
    else:
        verdict = HOLDS if all(d[2] > 0 for d in diffs) else INCONCLUSIVE
    pick = min(diffs, key=lambda d: d[1])
    evidence = "robustness(probe_kl) - robustness(other): " + ", ".join(
        f"{d[0]} {_fmt_ci(d[1], d[2], d[3])}" for d in diffs
    )
    return verdict, pick[1], pick[2], pick[3], evidence


def stat_claim6(
    agreement: pd.DataFrame, probe_agreement: pd.DataFrame, draws: TauDraws | None, probe_draws: TauDraws | None
) -> tuple[str, float, float, float, str]:
    """(a) deterministic AUC tau > 0, (b) stochastic AUC tau <= 0, (c) probe-lag loss tau <= 0 (escape high =
    better). A part is established when its CI lies entirely on its side ((a) low > 0; (b), (c) high <= 0)
    and refuted when it lies entirely on the other ((a) high <= 0; (b), (c) low > 0). Holds: all three
    established; does not hold: one refuted; else inconclusive. Effect: the refuted, else the first
    undecided, else part (a)'s mean tau."""
    parts = []
    for name, frame, d, regimes, positive in (
        ("(a) deterministic AUC", agreement, draws, ("deterministic",), True),
        ("(b) stochastic AUC", agreement, draws, ("stochastic",), False),
        ("(c) probe-lag loss", probe_agreement, probe_draws, REGIMES, False),
    ):
        mean, n = _mean_tau(frame, "probe_escape", regimes)
        if not n:
            return NOT_RUN, math.nan, math.nan, math.nan, ""
        low, high = _draws_ci(scope_draws(frame, d, "probe_escape", regimes))
        if positive:
            state = "established" if low > 0 else "refuted" if high <= 0 else "undecided"
        else:
            state = "established" if high <= 0 else "refuted" if low > 0 else "undecided"
        parts.append((name, mean, low, high, state))
    states = [p[4] for p in parts]
    verdict = FAILS if "refuted" in states else HOLDS if set(states) == {"established"} else INCONCLUSIVE
    pick = next((p for p in parts if p[4] == "refuted"), None) or next(
        (p for p in parts if p[4] == "undecided"), parts[0]
    )
    evidence = "probe_escape mean tau: " + "; ".join(f"{p[0]} {_fmt_ci(p[1], p[2], p[3])} {p[4]}" for p in parts)
    return verdict, pick[1], pick[2], pick[3], evidence


STAT_TESTS = {
    "first": "paired 95% bootstrap CI of every rival's difference to the candidate; holds iff the candidate is "
    "strictly first (every difference's CI > 0) in every cell, does not hold iff beaten (a CI < 0, or the "
    "candidate diverged) in some cell, else inconclusive",
    4: "holds iff both zero-step signals' mean tau has a 95% CI entirely below the threshold; does not hold iff "
    "one has a CI entirely at or above it; else inconclusive",
    5: "paired CI of robustness(probe_kl) - robustness(other) per primary signal; holds iff all > 0, does not "
    "hold iff one < 0, else inconclusive",
    6: "each part's mean-tau CI on its side (established) or on the other (refuted); holds iff all three "
    "established, does not hold iff one refuted, else inconclusive",
}


def with_statistics(
    claims: list[Claim],
    ranks: pd.DataFrame,
    agreement: pd.DataFrame,
    probe_agreement: pd.DataFrame,
    pairs: pd.DataFrame | None,
    draws: TauDraws | None,
    probe_draws: TauDraws | None,
) -> list[Claim]:
    """The point claims with the statistical verdict, effect and CI put in front of them."""
    pairs = pairs if pairs is not None else pd.DataFrame(columns=["experiment", "candidate", "other"])
    stat = {
        1: stat_first_place(ranks, pairs, "probe", None, "exact_copy", None),
        3: stat_first_place(ranks, pairs, "continuation", "deterministic", "structured_non_clone", None),
        4: stat_claim4(agreement, draws),
        5: stat_claim5(agreement, draws),
        6: stat_claim6(agreement, probe_agreement, draws, probe_draws),
    }
    paper = stat_first_place(ranks, pairs, "continuation", "stochastic", "exact_copy", PAPER_STOCHASTIC_CELLS)
    stat[2] = (
        paper
        if paper[0] != NOT_RUN
        else stat_first_place(ranks, pairs, "continuation", "stochastic", "exact_copy", None)
    )
    out = []
    for c in claims:
        verdict, effect, low, high, evidence = stat[c.claim_id]
        if c.verdict == NOT_RUN:
            verdict = NOT_RUN
        test = STAT_TESTS.get(c.claim_id, STAT_TESTS["first"])
        evidence = f"{evidence} | point estimates: {c.evidence}" if evidence else c.evidence
        out.append(Claim(c.claim_id, c.claim, verdict, c.test, evidence, c.cells, c.verdict, effect, low, high, test))
    return out
