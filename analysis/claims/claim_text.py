"""The claims of SPEC section 1 and the named records both of a claim's verdicts are built from.

`Inputs`: what every claim reads. `FirstPlace`: the scope of a claim 'X ranks first at a stage'.
`Point` and `Verdict`: a claim's test on point estimates and on paired CIs. `Claim`: one row of claims.csv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.ranking.rankings import DIVERGED, OK
from analysis.ranking.selectors import TauDraws

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
class Inputs:
    """What the claims are judged on: rankings and signal agreement of one policy, with their draws."""

    ranks: pd.DataFrame  # analysis.ranking.rankings: one row per (cell, stage, candidate)
    agreement: pd.DataFrame  # Kendall tau of each signal with the AUC ranking, per cell
    probe_agreement: pd.DataFrame  # the same with the probe-lag eval-loss ranking
    pairs: pd.DataFrame  # analysis.ranking.stats.pair_table: paired differences and CIs (empty: none)
    draws: TauDraws | None  # bootstrap draws of the taus of `agreement` (None: no CIs)
    probe_draws: TauDraws | None  # the same for `probe_agreement`

    @property
    def multi(self) -> bool:
        """More than one experiment: cell names carry the experiment."""
        return self.ranks["experiment"].nunique() > 1


@dataclass(frozen=True)
class FirstPlace:
    """The scope of a claim 'candidate ranks first at stage': both of its verdicts judge these cells."""

    stage: str  # the rankings' stage: probe or continuation
    regime: str | None  # one regime, or None for both
    candidate: str
    cells: tuple[tuple[int, int], ...] | None  # the (seed, growth_step) cells judged; None = every cell
    note: str = ""  # appended to the point evidence (which cells were meant and which exist)


@dataclass(frozen=True)
class Point:
    """A claim's test on point estimates (means), ignoring the noise."""

    verdict: str
    evidence: str
    cells: str  # the cells the verdict used


@dataclass(frozen=True)
class Verdict:
    """A claim's statistical test: the verdict, the deciding effect and its CI, and the numbers behind it."""

    verdict: str
    effect: float
    ci_low: float
    ci_high: float
    evidence: str


NO_VERDICT = Verdict(NOT_RUN, math.nan, math.nan, math.nan, "")


@dataclass(frozen=True)
class Claim:
    """One row of claims.csv: a claim, the cells behind it, its statistical verdict with effect and CI, and
    its point verdict."""

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


def mean_tau(agreement: pd.DataFrame, signal: str, regimes: tuple[str, ...] = REGIMES) -> tuple[float, int]:
    """Mean tau of a signal over the cells of the given regimes, and the cell count."""
    rows = agreement[(agreement["signal"] == signal) & agreement["regime"].isin(regimes)]
    return (float(rows["tau"].mean()) if len(rows) else math.nan), len(rows)


@dataclass(frozen=True)
class ScopedCell:
    """One cell of a FirstPlace scope where its candidate was ranked against at least one rival."""

    experiment: str
    seed: int
    growth_step: int
    regime: str
    rows: pd.DataFrame  # the cell's ranking rows at the scope's stage (ok or diverged)


def scope_cells(ranks: pd.DataFrame, scope: FirstPlace) -> list[ScopedCell]:
    """Every cell in `scope` where its candidate was ranked against a rival, in (experiment, seed, step, regime) order."""
    rows = ranks[(ranks["stage"] == scope.stage) & ranks["status"].isin([OK, DIVERGED])]
    if scope.regime:
        rows = rows[rows["regime"] == scope.regime]
    out = []
    for (exp, seed, step, reg), cell in rows.groupby(["experiment", "seed", "growth_step", "regime"], sort=True):
        if scope.cells is not None and (seed, step) not in scope.cells:
            continue
        if (cell["candidate"] == scope.candidate).sum() == 0 or len(cell) < 2:
            continue
        out.append(ScopedCell(exp, seed, step, reg, cell))
    return out
