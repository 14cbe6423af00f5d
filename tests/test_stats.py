"""Paired bootstrap statistics: synthetic results dirs (rows + per-sequence npz files) with known noise."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from analysis.claims.verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_RUN
from analysis.loading.load import load_results
from analysis.ranking.stats import (
    NUMERICAL_TOLERANCE,
    bootstrap_mean_ci,
    collect_cells,
    draw_weights,
    kendall_tau_b,
    per_sequence_auc,
    read_seq_losses,
    weighted_means,
)
from analysis.report.paper import analyse_policy, main, write_report
from growth.widen import registry

E, P, A, S, W, C = registry.default_pool()
LAGS = np.array([0, 8, 16, 24, 32], dtype=np.int64)
PROBE_LAG, CONT_LAG = 16, 32
RESAMPLES = 500  # enough for stable percentiles, fast on a shared CPU


def write_cell(
    root: Path,
    seed: int,
    step: int,
    regime: str,
    probe: dict[str, float],
    auc: dict[str, float],
    *,
    n_rep: int = 3,
    n_seq: int = 40,
    sd: float = 0.01,
    policy: tuple[str, str] = ("none", "global"),
    probe_kl: dict[str, float] | None = None,
    rng_seed: int = 0,
    with_npz: bool = True,
) -> None:
    """One cell: per replicate, rows of docs/results_schema.md and (optionally) the per-sequence npz.

    Per-sequence loss = candidate mean + sequence difficulty + replicate shift + N(0, sd) noise; the curve is
    flat at the probe value up to the probe lag and then linear to the value that makes its AUC the target.
    """
    rng = np.random.default_rng(rng_seed)
    lr, clip = policy
    config_hash = f"h-{lr}-{clip}"
    cands = list(probe)
    difficulty = rng.normal(0, 0.3, n_seq)
    rows = []
    for r in range(n_rep):
        shift = rng.normal(0, 0.02)
        p = np.array([[probe[c] for c in cands]]).T + difficulty + shift + rng.normal(0, sd, (len(cands), n_seq))
        a = np.array([[auc[c] for c in cands]]).T + difficulty + shift + rng.normal(0, sd, (len(cands), n_seq))
        # loss = p at lags 0, 8, 16, then (p + y) / 2 at 24 and y at 32: trapezoid area = 24 p + 8 y = 32 a.
        y = (32 * a - 24 * p) / 8
        flat = np.stack([p, p, p], axis=1)
        loss = np.concatenate([flat, ((p + y) / 2)[:, None], y[:, None]], axis=1).astype(np.float32)
        name = f"seed{seed}-g{step}-{regime}-r{r}-{config_hash}.npz"
        if with_npz:
            (root / "seq_losses").mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                root / "seq_losses" / name,
                candidates=np.array(cands),
                lags=LAGS,
                loss=loss,
                seed=np.array(seed),
                growth_step=np.array(step),
                regime=np.array(regime),
                replicate=np.array(r),
                config_hash=np.array(config_hash),
                lr_correction=np.array(lr),
                clip_mode=np.array(clip),
                probe_lag=np.array(PROBE_LAG),
                continuation_lag=np.array(CONT_LAG),
            )
        base = {
            "experiment": "t",
            "seed": seed,
            "growth_step": step,
            "regime": regime,
            "config_hash": config_hash,
            "versions": {},
            "replicate": r,
            "lr_correction": lr,
            "clip_mode": clip,
        }
        for i, cand in enumerate(cands):
            curve = loss[i].astype(float).mean(axis=-1)
            for lag, value in zip(LAGS, curve, strict=True):
                rows.append({**base, "candidate": cand, "lag": int(lag), "metric": "eval_loss", "value": value})
            seq_auc = per_sequence_auc(LAGS, loss[i].astype(float))
            rows.append({**base, "candidate": cand, "lag": CONT_LAG, "metric": "auc", "value": seq_auc.mean()})
            rows.append({**base, "candidate": cand, "lag": CONT_LAG, "metric": "final_loss", "value": curve[-1]})
            if cand != C:
                kl = (probe_kl or {}).get(cand, 0.1) + rng.normal(0, 0.002)
                rows.append({**base, "candidate": cand, "lag": PROBE_LAG, "metric": "probe_kl", "value": kl})
                rows.append({**base, "candidate": cand, "lag": 0, "metric": "token_kl", "value": 1e-13})
                rows.append({**base, "candidate": cand, "lag": 0, "metric": "loss_gap", "value": 0.0})
        pool = {**base, "candidate": "_pool", "lag": CONT_LAG, "metric": "wall_time", "value": 1.0}
        if with_npz:
            pool["seq_losses"] = f"seq_losses/{name}"
        rows.append(pool)
    with (root / "results.jsonl").open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


# Known truth. Probe: exact_copy 0.05 better than perturbative, structured and asymmetric further behind.
# Deterministic AUC: structured_non_clone and exact_copy equal (true difference 0) -> tied at rank 1.
# Stochastic AUC: structured_non_clone clearly (0.1) better than exact_copy -> claim 2 contradicted.
PROBE = {E: 3.00, P: 3.05, A: 3.10, S: 3.10}
AUC = {
    "deterministic": {S: 2.90, E: 2.90, P: 2.95, A: 2.97},
    "stochastic": {S: 2.85, E: 2.95, P: 2.97, A: 2.99},
}


def known_dir(root: Path, policy: tuple[str, str] = ("none", "global"), **kw) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k, regime in enumerate(("deterministic", "stochastic")):
        write_cell(root, 0, 1000, regime, PROBE, AUC[regime], policy=policy, rng_seed=k, **kw)
    return root


def analysed(root: Path):
    frame = load_results(root).frame
    return analyse_policy(frame, n_resamples=RESAMPLES)


def pair(a, stage: str, regime: str, cand: str, other: str) -> pd.Series:
    p = a.pairs
    sel = p[(p["stage"] == stage) & (p["regime"] == regime) & (p["candidate"] == cand) & (p["other"] == other)]
    assert len(sel) == 1
    return sel.iloc[0]


def rank_row(ranks: pd.DataFrame, stage: str, regime: str, cand: str) -> pd.Series:
    sel = ranks[(ranks["stage"] == stage) & (ranks["regime"] == regime) & (ranks["candidate"] == cand)]
    assert len(sel) == 1
    return sel.iloc[0]


# ---------------------------------------------------------------- pure functions


def test_bootstrap_ci_covers_known_mean_and_shrinks_with_sequences() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n_seq in (20, 320):
        d = 0.05 + rng.normal(0, 0.01, (4, n_seq))
        mean, low, high = bootstrap_mean_ci(d, n_resamples=1000, seed=0)
        assert low < 0.05 < high and low < mean < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5  # ~ 1 / sqrt(16) with sequence noise only
    assert all(math.isnan(v) for v in bootstrap_mean_ci(np.array([[0.3]]))[1:])  # nothing to resample


def test_bootstrap_coverage_near_nominal() -> None:
    # d[r, n] = mu + replicate effect + sequence effect + noise: the crossed design of the runner.
    rng = np.random.default_rng(2)
    hits = 0
    trials = 150
    for t in range(trials):
        d = 0.05 + rng.normal(0, 0.01, (5, 1)) + rng.normal(0, 0.01, (1, 30)) + rng.normal(0, 0.01, (5, 30))
        _, low, high = bootstrap_mean_ci(d, n_resamples=400, seed=t)
        hits += low <= 0.05 <= high
    assert hits / trials >= 0.85


def test_weighted_means_equal_index_resampling() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 2, 7))
    w_rows, w_cols = draw_weights(np.random.default_rng(0), 3, 7, 5)
    out = weighted_means(x, w_rows, w_cols)
    for b in range(5):
        rows = np.repeat(np.arange(3), w_rows[b].astype(int))
        cols = np.repeat(np.arange(7), w_cols[b].astype(int))
        assert np.allclose(out[b], x[rows][:, :, cols].mean(axis=(0, 2)))


def test_kendall_tau_b_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        x, y = rng.integers(0, 3, 6).astype(float), rng.normal(size=6)
        expected = 0.0 if len(set(x)) < 2 else kendalltau(x, y).statistic
        assert kendall_tau_b(x, y) == pytest.approx(expected)
    assert np.allclose(kendall_tau_b(np.ones((2, 4)), np.arange(8.0).reshape(2, 4)), 0.0)


def test_per_sequence_auc_matches_the_auc_row() -> None:
    from growth.measure.metrics import trapezoid_auc

    loss = np.random.default_rng(5).normal(3, 0.1, (len(LAGS), 4))
    seq = per_sequence_auc(LAGS, loss)
    for n in range(4):
        assert seq[n] == pytest.approx(trapezoid_auc(LAGS.tolist(), loss[:, n].tolist()))


# ---------------------------------------------------------------- synthetic results dirs


def test_npz_is_read_and_means_match_rows(tmp_path: Path) -> None:
    root = known_dir(tmp_path / "res")
    data = read_seq_losses(next((root / "seq_losses").glob("*.npz")))
    assert data["probe_lag"] == PROBE_LAG and data["lr_correction"] == "none" and data["loss"].shape == (4, 5, 40)
    cells = collect_cells(load_results(root).frame)
    assert len(cells) == 2 and all(c.per_sequence and c.n_replicates == 3 and c.n_sequences == 40 for c in cells)
    a = analysed(root)
    ci = a.candidate_ci.merge(a.summary[["regime", "candidate", "auc"]], on=["regime", "candidate"])
    cont = ci[ci["stage"] == "continuation"]
    assert np.allclose(cont["mean"], cont["auc"], atol=1e-5)  # mean of per-sequence AUC = the auc row
    assert (cont["ci_low"] < cont["mean"]).all() and (cont["mean"] < cont["ci_high"]).all()
    assert set(cont["ci_method"]) == {"replicates x sequences"}


def test_clear_effect_excludes_zero_and_ranks_strictly_first(tmp_path: Path) -> None:
    a = analysed(known_dir(tmp_path / "res"))
    d = pair(a, "probe", "deterministic", P, E)  # perturbative - exact_copy, true +0.05
    assert d["ci_low"] > 0 and d["ci_low"] < 0.05 < d["ci_high"]
    lead = rank_row(a.ranks, "probe", "deterministic", E)
    other = rank_row(a.ranks, "probe", "deterministic", P)
    assert lead["rank"] == 1 and lead["leader"] and not lead["tied_with_leader"]
    assert other["rank"] == 2 and not other["winner"] and other["diff_ci_low"] > 0


def test_zero_difference_is_tied_and_inconclusive(tmp_path: Path) -> None:
    root = known_dir(tmp_path / "res")
    a = analysed(root)
    d = pair(a, "continuation", "deterministic", S, E)  # true difference 0
    assert d["ci_low"] < 0 < d["ci_high"]
    rows = [rank_row(a.ranks, "continuation", "deterministic", c) for c in (S, E)]
    assert [r["rank"] for r in rows] == [1, 1] and all(r["winner"] for r in rows)
    assert sorted(bool(r["tied_with_leader"]) for r in rows) == [False, True]
    claims = a.claims.set_index("claim_id")
    assert claims.loc[3, "verdict"] == INCONCLUSIVE  # structured_non_clone wins deterministic continuation
    assert claims.loc[1, "verdict"] == HOLDS  # exact_copy strictly first at the probe, both regimes
    assert claims.loc[1, "effect"] == pytest.approx(0.05, abs=0.01) and claims.loc[1, "ci_low"] > 0
    out = write_report(root, figures=False, n_resamples=RESAMPLES)
    md = (out / "report.md").read_text()
    assert "**=1** (" in md
    assert re.search(r"\| 1 \| exact-copy ranks first in every 16-step probe \| holds \| \+0\.0[45]\d+ \[\+0\.0", md)
    wide = pd.read_csv(out / "rankings.csv")
    det = wide[wide["regime"] == "deterministic"].iloc[0]
    assert "cont: =1*" in det[S] + det[E]


def test_contradicted_claim_does_not_hold(tmp_path: Path) -> None:
    a = analysed(known_dir(tmp_path / "res"))
    c2 = a.claims.set_index("claim_id").loc[2]  # exact_copy first in stochastic continuation: S is 0.1 better
    assert c2["verdict"] == FAILS
    assert c2["effect"] == pytest.approx(-0.1, abs=0.02) and c2["ci_high"] < 0
    assert "beaten in 1" in c2["evidence"] and c2["point_verdict"] == FAILS


def test_tau_ci_contains_point_estimate(tmp_path: Path) -> None:
    a = analysed(known_dir(tmp_path / "res"))
    cells = a.agreement.dropna(subset=["tau_ci_low"])
    assert len(cells) >= 4
    assert ((cells["tau_ci_low"] <= cells["tau"] + 1e-12) & (cells["tau"] <= cells["tau_ci_high"] + 1e-12)).all()
    sel = a.selectors.set_index(["signal", "regime"])
    row = sel.loc[("probe_eval_loss", "overall")]
    assert row["mean_tau_ci_low"] <= row["mean_tau"] <= row["mean_tau_ci_high"]
    v = dict(zip(a.claims["claim_id"], a.claims["verdict"], strict=True))
    assert v[6] == NOT_RUN  # no probe_escape rows in this grid
    assert {v[i] for i in range(1, 6)} <= {HOLDS, FAILS, INCONCLUSIVE}


def test_policies_are_never_mixed(tmp_path: Path) -> None:
    # Opposite truths: exact_copy wins the probe under none/global, perturbative under fan_in/clone_consistent.
    flipped = {E: 3.05, P: 3.00, A: 3.10, S: 3.10}
    none_dir = known_dir(tmp_path / "paper_cpu")
    fan_dir = tmp_path / "paper_cpu_fanin"
    fan_dir.mkdir()
    for k, regime in enumerate(("deterministic", "stochastic")):
        write_cell(fan_dir, 0, 1000, regime, flipped, AUC[regime], policy=("fan_in", "clone_consistent"), rng_seed=k)
    assert (
        main([str(none_dir), str(fan_dir), "--out", str(tmp_path / "rep"), "--no-figures", "--resamples", "300"]) == 0
    )
    out = tmp_path / "rep"
    ranks = pd.read_csv(out / "rankings_long.csv")
    leaders = ranks[(ranks["stage"] == "probe") & ranks["leader"]].groupby("policy")["candidate"].agg(set)
    assert leaders.to_dict() == {"fan_in/clone_consistent": {P}, "none/global": {E}}
    pairs = pd.read_csv(out / "pairs.csv")
    assert set(pairs["policy"]) == {"none/global", "fan_in/clone_consistent"}
    for policy, part in pairs.groupby("policy"):  # each difference is within one policy's candidates/rows
        probe = part[(part["stage"] == "probe") & (part["candidate"] == P) & (part["other"] == E)]
        assert (probe["diff"] > 0).all() if policy == "none/global" else (probe["diff"] < 0).all()
    claims = pd.read_csv(out / "claims.csv").set_index(["policy", "claim_id"])
    assert claims.loc[("none/global", 1), "verdict"] == HOLDS
    assert claims.loc[("fan_in/clone_consistent", 1), "verdict"] == FAILS
    winners = pd.read_csv(out / "policy_winners.csv")
    probe = winners[winners["stage"] == "probe"]
    assert (probe["none/global"] == E).all() and (probe["fan_in/clone_consistent"] == P).all()
    assert (probe["changes"] == "yes").all()
    md = (out / "report.md").read_text()
    assert "## What the learning-rate policy changes" in md and "### Policy: fan_in/clone_consistent" in md


def test_rows_without_npz_fall_back_to_replicates(tmp_path: Path) -> None:
    root = known_dir(tmp_path / "res", with_npz=False)
    a = analysed(root)
    assert set(a.candidate_ci["ci_method"]) == {"replicates"} and set(a.candidate_ci["n_sequences"]) == {1}
    d = pair(a, "probe", "deterministic", P, E)
    assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    single = known_dir(tmp_path / "one", with_npz=False, n_rep=1)
    b = analysed(single)
    assert b.pairs["ci_low"].isna().all()  # one replicate, no per-sequence data: CI n/a
    assert set(b.claims["verdict"]) <= {INCONCLUSIVE, NOT_RUN}
    md = (write_report(single, figures=False, n_resamples=100) / "report.md").read_text()
    assert "(CI n/a)" in md or "| n/a |" in md


def test_report_is_deterministic(tmp_path: Path) -> None:
    root = known_dir(tmp_path / "res")
    first = (write_report(root, tmp_path / "r1", figures=False, n_resamples=200) / "pairs.csv").read_text()
    second = (write_report(root, tmp_path / "r2", figures=False, n_resamples=200) / "pairs.csv").read_text()
    assert first == second


def test_differences_at_float_rounding_are_tied_not_ranked(tmp_path: Path) -> None:
    """A clone that follows the small model differs from it by float32 rounding: tied, not 'better'."""
    root = tmp_path / "res"
    for regime in ("deterministic", "stochastic"):
        write_cell(root, 0, 1000, regime, {E: 3.0 - 5e-7, S: 3.001, C: 3.0}, {E: 3.0 - 5e-7, S: 3.001, C: 3.0}, sd=0.0)
    a = analysed(root)
    d = pair(a, "continuation", "deterministic", C, E)
    assert 0 < d["ci_low"] <= d["ci_high"] < NUMERICAL_TOLERANCE  # excludes 0, but only by rounding
    rows = {c: rank_row(a.ranks, "continuation", "deterministic", c) for c in (E, S, C)}
    assert rows[E]["rank"] == rows[C]["rank"] == 1 and rows[S]["rank"] > 1  # 1e-3 is a real difference


def test_every_claim_is_one_record_judged_on_one_path():
    """analysis.claims.verdicts.CLAIMS: one ClaimTest per claim of SPEC section 1; no data gives 'not run' on both paths."""
    from analysis.claims.claim_text import CLAIM_TEXT, Inputs
    from analysis.claims.verdicts import CLAIMS

    assert [c.claim_id for c in CLAIMS] == sorted(CLAIM_TEXT)
    ranks = pd.DataFrame(columns=["experiment", "seed", "growth_step", "regime", "stage", "candidate", "status"])
    agreement = pd.DataFrame(columns=["experiment", "seed", "growth_step", "regime", "signal", "tau"])
    pairs = pd.DataFrame(columns=["experiment", "candidate", "other"])
    inputs = Inputs(ranks, agreement, agreement, pairs, None, None)
    for test in CLAIMS:
        claim = test.judge(inputs)
        assert (claim.claim_id, claim.claim, claim.test) == (test.claim_id, test.text, test.test)
        assert claim.verdict == claim.point_verdict == NOT_RUN and claim.cells == "" and math.isnan(claim.effect)
