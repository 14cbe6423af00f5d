"""The study's optimizer and growth-step sections (analysis/axes/optimizer_axis.py, analysis/axes/growth_step_axis.py)
on synthetic inputs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.axes import growth_step_axis, optimizer_axis, speedup
from analysis.axes.curves import Curves

SEEDS = range(5)


def _rows(experiment, optimizer, metric, lag, values, rng, noise):
    """One row per (candidate, seed): values[candidate] + noise."""
    return [
        {"experiment": experiment, "optimizer": optimizer, "regime": "deterministic", "lr_policy": "none/global",
         "k": 2, "growth_step": 1000, "candidate": c, "seed": s, "lag": lag, "metric": metric,
         "value": v + noise * rng.standard_normal()}
        for c, v in values.items() for s in SEEDS
    ]  # fmt: skip


def _frame():
    rng = np.random.default_rng(0)
    rows = []
    for exp, opt, horizon, loss, clone in (
        ("long", "adamw", 3000, {"exact_copy": 3.0, "msg": 3.2}, {"exact_copy": 0.01, "msg": 0.3}),
        ("muon", "muon", 3000, {"exact_copy": 3.3, "msg": 3.1}, {"exact_copy": 0.2, "msg": 0.3}),
        ("main", "adamw", 500, {"exact_copy": 3.9, "msg": 3.5}, {}),  # another horizon: never matched
    ):
        rows += _rows(exp, opt, "final_loss", horizon, loss, rng, 0.01)
        rows += _rows(exp, opt, "clone_escape", horizon, clone, rng, 0.005)
        rows += _rows(exp, opt, "probe_escape", 16, {"exact_copy": 0.05, "msg": 0.1}, rng, 0.005)
    return pd.DataFrame(rows)


def test_the_winner_change_and_the_escape_difference_are_found_with_their_cis():
    frame = _frame()
    win = optimizer_axis.winners(frame, 400, 0)
    assert len(win) == 1  # the 500-step horizon has no Muon twin
    row = win.iloc[0]
    assert (row["adamw_winner"], row["muon_winner"], row["winner_changes"]) == ("exact_copy", "msg", "yes")
    assert row["adamw_support"] == 1.0 and row["adamw_seeds"] == 5 and row["horizon"] == 3000
    esc = optimizer_axis.escape(frame, 400, 0).set_index(["metric", "candidate"])
    clone = esc.loc[("clone_escape", "exact_copy")]
    assert clone["verdict"] == "higher under muon" and clone["diff_low"] < 0.19 < clone["diff_high"]
    assert clone["diff_low"] > 0.15  # 5 seeds of noise 0.005: a tight interval around the true 0.19
    for key in (("clone_escape", "msg"), ("probe_escape", "exact_copy"), ("probe_escape", "msg")):
        assert esc.loc[key, "verdict"] == "no change detected", key  # equal on both sides
        assert esc.loc[key, "diff_low"] < 0 < esc.loc[key, "diff_high"]
    text = optimizer_axis.markdown(win, esc.reset_index())
    assert "higher under muon" in text and "exact_copy (1.00, 5 seeds)" in text


def test_a_tie_or_a_weak_winner_is_not_called_a_change():
    frame = _frame()
    loss = frame["metric"] == "final_loss"
    frame.loc[loss & (frame["optimizer"] == "muon") & (frame["candidate"] == "msg"), "value"] += 0.2  # msg ~3.3
    frame.loc[loss & (frame["optimizer"] == "muon"), "value"] += np.random.default_rng(1).normal(
        0, 0.3, loss.sum() // 3
    )
    win = optimizer_axis.winners(frame, 400, 0).iloc[0]
    assert win["winner_changes"] in ("no", "unresolved") and win["muon_support"] < 0.95


def _curves(step: int, start: float, pretrain_tokens: float, rng) -> Curves:
    """exact_copy: start - 0.01 lag; scratch_wide: 5 - 0.03 lag (bottom 2.0 at lag 100); noise 1e-4."""
    lags = np.arange(0, 101, 10, dtype=float)
    x = np.stack([start - 0.01 * lags, 5 - 0.03 * lags])  # (C, L)
    x = x[None, None, None] + 1e-4 * rng.standard_normal((5, 1, 8, 2, len(lags)))
    cost = {"tokens_per_step": 1.0, "flops_per_token_small": 1.0, "flops_per_token_wide": 1.0,
            "pretrain_tokens": pretrain_tokens}  # fmt: skip
    return Curves(("timing", "none/global", step, "deterministic"), 2, "none/global", list(SEEDS),
                  [[0]] * 5, ["exact_copy", "scratch_wide"], lags, x, np.ones((5, 1), bool), cost)  # fmt: skip


@pytest.mark.parametrize("charged,ratio", [(0.0, 2.0), (50.0, 1.0)])
def test_the_speedup_by_growth_step_at_a_shared_target(charged, ratio):
    """Step 250 reaches the target 2.0 at lag 100 (speedup 1), step 500 at lag 50 (2, or 1 once its 50
    pretraining tokens are charged)."""
    rng = np.random.default_rng(0)
    groups = [speedup.group_speedup(_curves(250, 3.0, 0.0, rng), None, 4, 200, 0),
              speedup.group_speedup(_curves(500, 2.5, charged, rng), None, 4, 200, 0)]  # fmt: skip
    table = growth_step_axis.compare(groups, {}, 200, 0).set_index("growth_step")
    assert table["target_loss"].iloc[0] == pytest.approx(2.0, abs=1e-3)
    assert table.loc[250, "speedup_flops"] == pytest.approx(1.0, rel=0.02) and table.loc[250, "verdict"] == "reference"
    late = table.loc[500]
    assert late["speedup_flops"] == pytest.approx(ratio, rel=0.02)
    assert late["ratio_to_first"] == pytest.approx(ratio, rel=0.02) and late["ratio_low"] <= ratio <= late["ratio_high"]
    assert late["verdict"] == ("higher" if ratio > 1.5 else "no change detected")
    assert "vs earliest step" in growth_step_axis.markdown(table.reset_index())
