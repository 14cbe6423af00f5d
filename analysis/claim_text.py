"""The claims of SPEC section 1, their record (`Claim`) and the helpers both verdict paths share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

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


def mean_tau(agreement: pd.DataFrame, signal: str, regimes: tuple[str, ...] = REGIMES) -> tuple[float, int]:
    """Mean tau of a signal over the cells of the given regimes, and the cell count."""
    rows = agreement[(agreement["signal"] == signal) & agreement["regime"].isin(regimes)]
    return (float(rows["tau"].mean()) if len(rows) else math.nan), len(rows)
