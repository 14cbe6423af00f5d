"""The hierarchical bootstrap: nested means, replicate masks, and the coverage of its 95% CI."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.axes import hierarchical as h


def simulate(rng: np.random.Generator, n_studies: int, seeds: int, reps: int, seqs: int, sd: dict) -> np.ndarray:
    """Studies (M, S, R, N, 1) with a known true mean 0: seed, replicate, sequence and residual effects."""
    shape = (n_studies, seeds, reps, seqs, 1)
    a = rng.normal(0, sd["seed"], (n_studies, seeds, 1, 1, 1))
    b = rng.normal(0, sd["rep"], (n_studies, seeds, reps, 1, 1))
    e = rng.normal(0, sd["seq"], (n_studies, 1, 1, seqs, 1))
    return a + b + e + rng.normal(0, sd["noise"], shape)


@pytest.mark.parametrize(
    "sd",
    [
        {"seed": 1.0, "rep": 0.3, "seq": 0.2, "noise": 0.3},  # the seed level dominates
        {"seed": 0.4, "rep": 0.4, "seq": 0.3, "noise": 0.5},  # every level matters
    ],
)
def test_ci_coverage_with_known_between_seed_variance(sd):
    rng = np.random.default_rng(0)
    studies = simulate(rng, 240, seeds=5, reps=3, seqs=12, sd=sd)
    covered = []
    for x in studies:
        _, low, high = h.mean_ci(h.nested(x), 400, rng)
        covered.append(low[0] <= 0.0 <= high[0])
    coverage = float(np.mean(covered))
    print(f"coverage {coverage:.3f} for {sd}")
    assert 0.90 <= coverage <= 0.99, coverage


def test_without_widening_the_percentile_interval_undercovers_at_five_seeds():
    """Why the widening exists: the plain percentile interval over 5 seeds covers clearly less than 95%."""
    rng = np.random.default_rng(1)
    studies = simulate(rng, 240, seeds=5, reps=2, seqs=8, sd={"seed": 1.0, "rep": 0.1, "seq": 0.1, "noise": 0.1})
    covered = []
    for x in studies:
        d = h.draws(h.nested(x), 400, rng)[:, 0]
        low, high = np.percentile(d, [2.5, 97.5])
        covered.append(low <= 0.0 <= high)
    assert np.mean(covered) < 0.9


def test_estimate_is_the_nested_mean_and_masks_missing_replicates():
    x = np.zeros((2, 3, 2, 1))
    x[0, :, :, 0] = [[1, 1], [3, 3], [99, 99]]  # seed 0 has replicates 0, 1 only
    x[1, :, :, 0] = 10
    valid = np.array([[True, True, False], [True, True, True]])
    data = h.nested(x, valid)
    assert data.estimate()[0] == pytest.approx((2 + 10) / 2)
    d = h.draws(data, 300, np.random.default_rng(0))
    assert d.max() <= 10 + 1e-9 and d.min() >= 1 - 1e-9  # the masked 99 never enters a draw
    assert set(np.round(np.unique(d), 6)) <= {1.0, 1.5, 2.0, 2.5, 3.0, 5.5, 6.0, 6.5, 10.0}


def test_draws_are_paired_across_quantities():
    """A quantity and a shifted copy differ by the shift in every draw: the resample is shared."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=(4, 2, 6, 1))
    data = h.nested(np.concatenate([base, base + 0.25], axis=3))
    d = h.draws(data, 200, rng)
    np.testing.assert_allclose(d[:, 1] - d[:, 0], 0.25)


def test_one_seed_is_not_widened_and_bad_shapes_fail_in_one_line():
    assert h.widening(1) == 1.0
    assert h.widening(5) == pytest.approx(1.58, abs=0.01)
    with pytest.raises(ValueError, match="x\\[seed, replicate, sequence, quantity\\]"):
        h.nested(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="every seed one"):
        h.nested(np.zeros((2, 2, 1, 1)), np.array([[True, True], [False, False]]))


def test_infinite_draws_give_an_infinite_end_not_nan():
    boot = np.concatenate([np.linspace(1, 2, 90), np.full(10, np.inf)])[:, None]
    low, high = h.interval(np.array([1.5]), boot, 1, skip_nan=True)
    assert np.isfinite(low[0]) and high[0] == np.inf
