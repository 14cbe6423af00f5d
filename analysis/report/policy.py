"""Everything the report computes for one learning-rate policy: summary, CIs, tie-aware rankings,
selector taus with CIs and the claim verdicts (`analyse_policy`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.claims.verdicts import evaluate_claims
from analysis.loading.cells import summarize
from analysis.output.tables import (
    aggregate_by_step,
)
from analysis.ranking.rankings import apply_ties, rank_all
from analysis.ranking.selectors import add_tau_ci, cell_agreement, selector_table
from analysis.ranking.stats import (
    CI_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_cells,
    candidate_table,
    collect_cells,
    pair_table,
    tau_draws,
)
from growth.widen import registry

REFERENCE_CANDIDATE = registry.reference()


@dataclass
class PolicyAnalysis:
    """Everything the report shows for one learning-rate policy."""

    policy: str
    frame: pd.DataFrame
    summary: pd.DataFrame
    ranks: pd.DataFrame  # all candidates, ties applied
    claim_ranks: pd.DataFrame  # without continue_small, ties applied
    candidate_ci: pd.DataFrame
    pairs: pd.DataFrame
    agreement: pd.DataFrame  # with tau CIs
    selectors: pd.DataFrame
    claims: pd.DataFrame
    agg: pd.DataFrame


def analyse_policy(
    frame: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> PolicyAnalysis:
    """Summary, CIs, tie-aware rankings, selector taus with CIs and claim verdicts of one policy's rows."""
    policies = frame["policy"].unique()
    if len(policies) != 1:
        raise ValueError(f"analyse_policy needs the rows of exactly one policy, got {sorted(policies)}")
    summary = summarize(frame)
    boots = bootstrap_cells(collect_cells(frame), n_resamples, seed)
    cand_ci, pairs = candidate_table(boots, CI_LEVEL), pair_table(boots, CI_LEVEL)
    ranks = apply_ties(rank_all(summary), cand_ci, pairs)
    # The claims are about which warm start of the *wide* model wins: the small model continued is the
    # reference the candidates are compared with, so it is left out of the claims' rankings.
    claim_ranks = apply_ties(rank_all(summary[summary["candidate"] != REFERENCE_CANDIDATE]), cand_ci, pairs)
    draws = {k[1:]: v for k, v in tau_draws(boots, "auc").items()}
    probe_draws = {k[1:]: v for k, v in tau_draws(boots, "probe_eval_loss").items()}
    agreement = cell_agreement(summary, "auc")
    probe_agreement = cell_agreement(summary, "probe_eval_loss")
    claims = evaluate_claims(claim_ranks, agreement, probe_agreement, pairs, draws, probe_draws)
    return PolicyAnalysis(
        policy=str(policies[0]),
        frame=frame,
        summary=summary,
        ranks=ranks,
        claim_ranks=claim_ranks,
        candidate_ci=cand_ci,
        pairs=pairs,
        agreement=add_tau_ci(agreement, draws, CI_LEVEL),
        selectors=selector_table(agreement, draws),
        claims=claims,
        agg=aggregate_by_step(ranks),
    )
