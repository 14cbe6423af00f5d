"""Claims 1-3 of arXiv 2604.04281 pooled over seeds, on synthetic curves with known orderings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.axes.curves import Curves
from analysis.claims import claims_seeds
from analysis.claims.claim_text import FAILS, HOLDS, INCONCLUSIVE, NOT_RUN

LAGS = np.array([0, 16, 100, 150, 400])
NAMES = ["exact_copy", "structured_non_clone", "perturbative"]
FRAME = pd.DataFrame({"metric": ["probe_kl", "probe_kl", "eval_loss"], "lag": [16, 16, 400]})


def curves(regime: str, offsets: dict[str, np.ndarray], seeds: int = 5, seed_sd: float = 0.05, rng_seed: int = 0):
    """x = 3 + per-candidate offset (C, L) + a seed effect shared by all candidates + small noise."""
    rng = np.random.default_rng(rng_seed)
    base = np.stack([offsets.get(n, np.zeros(len(LAGS))) for n in NAMES]) + 3.0  # (C, L)
    x = base[None, None, None] + rng.normal(0, seed_sd, (seeds, 1, 1, 1, 1))
    x = x + rng.normal(0, 0.01, (seeds, 2, 8, len(NAMES), len(LAGS)))
    return Curves(
        key=("synthetic", "none/global", 1000, regime), k=2, lr_policy="none/global", seeds=list(range(seeds)),
        replicates=[[0, 1]] * seeds, candidates=NAMES, lags=LAGS, x=x, valid=np.ones((seeds, 2), bool),
    )  # fmt: skip


def by_id(table: pd.DataFrame) -> dict[int, pd.Series]:
    return {int(r.claim_id): r for _, r in table.iterrows()}


def test_known_orderings_give_each_verdict_with_the_right_lag():
    ahead = np.array([0.0, -0.1, 0.0, 0.0, 0.0])  # exact_copy 0.1 nats ahead at the probe lag only
    snc_behind = np.array([0.0, 0.0, 0.0, 0.1, 0.0])  # structured_non_clone 0.1 behind at lag 150
    groups = [
        curves("deterministic", {"exact_copy": ahead, "structured_non_clone": snc_behind}),
        curves("stochastic", {"exact_copy": ahead}, rng_seed=1),
    ]
    claims = by_id(claims_seeds.pooled_claims(FRAME, groups, n_resamples=400, seed=0))
    assert claims[1].verdict == HOLDS and claims[1].n_groups == 2
    assert claims[1].ci_low > 0 and abs(claims[1].effect - 0.1) < 0.02
    assert claims[3].verdict == FAILS and claims[3].ci_high < 0 and "lag 150" in claims[3].evidence  # nearest 128
    assert claims[2].verdict == INCONCLUSIVE and claims[2].ci_low < 0 < claims[2].ci_high  # a three-way tie


def test_a_seed_spread_wider_than_the_effect_is_inconclusive():
    ahead = np.array([0.0, -0.1, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(3)
    group = curves("deterministic", {"exact_copy": ahead})
    # exact_copy's advantage flips sign from seed to seed: pooled, the CI must straddle zero.
    group.x[:, :, :, 0, 1] += rng.choice([-0.25, 0.25], size=5)[:, None, None]
    claims = by_id(claims_seeds.pooled_claims(FRAME, [group], n_resamples=400, seed=0))
    assert claims[1].verdict == INCONCLUSIVE and claims[1].ci_low < 0 < 0.1 < claims[1].effect  # 4 of 5 seeds ahead


def test_without_the_winner_or_a_probe_metric_the_claims_are_not_run():
    group = curves("deterministic", {})
    group.candidates = ["a", "b", "c"]
    assert set(claims_seeds.pooled_claims(FRAME, [group], 100, 0)["verdict"]) == {NOT_RUN}
    no_probe = FRAME[FRAME["metric"] != "probe_kl"]
    assert set(claims_seeds.pooled_claims(no_probe, [curves("stochastic", {})], 100, 0)["verdict"]) == {NOT_RUN}
