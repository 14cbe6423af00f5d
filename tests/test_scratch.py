"""The shared scratch_wide budget, log-spaced lags, cell costs, and the study report on a tiny grid."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pandas as pd
import pytest

from analysis.study.report import StudySettings, write_study
from growth import widen
from growth.config import BudgetConfig, GridCell, ModelConfig
from growth.experiment import grid, results, scratch
from growth.measure import cost
from growth.measure.lags import log_spaced
from growth.store import files
from tests.conftest import tiny_config


def test_log_spaced_lags_are_sparse_sorted_and_end_at_the_budget():
    lags = log_spaced(5000, 12)
    assert lags == sorted(set(lags)) and lags[0] == 1 and lags[-1] == 5000 and len(lags) <= 12
    assert all(b / a > 1.5 for a, b in itertools.pairwise(lags[3:]))  # log-spaced, not linear
    assert log_spaced(100, 0) == []


def test_flops_count_every_matrix_once():
    m = ModelConfig(vocab_size=100, d_model=8, n_heads=2, n_layers=2, context=16)
    per_block = 4 * 8 * 8 + 2 * 8 * 32  # q, k, v, o and the two MLP matrices
    assert cost.matmul_params(m) == 2 * per_block + 8 * 100  # + the unembedding; embeddings are lookups
    assert cost.train_flops_per_token(m) == 6 * (2 * per_block + 800 + 2 * 16 * 8)
    tied = dataclasses.replace(m, tie_embeddings=True)
    assert cost.matmul_params(tied) == cost.matmul_params(m)  # the tied table still multiplies once


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    """Two growth steps of one seed in one regime, sharing one scratch run; log-spaced lags."""
    cfg = tiny_config(tmp_path_factory.mktemp("study"))
    cfg = dataclasses.replace(
        cfg,
        pool=["exact_copy", "perturbative", "scratch_wide", "continue_small"],
        regimes=["deterministic"],
        probe_lag=4,
        continuation_lag=12,
        budget=BudgetConfig(log_eval_lags=4, scratch_steps=30, scratch_log_eval_lags=6),
        grid=[GridCell(growth_step=10), GridCell(growth_step=30)],
    )
    cfg.runner.eval_every = 12
    cfg.runner.batch_size = 8
    grid.reproduce(cfg)
    return cfg


def test_scratch_runs_once_per_key_and_resumes(tiny_grid):
    cfg = tiny_grid
    rows = files.read_jsonl(scratch.store_path(cfg))
    markers = [r for r in rows if r["candidate"] == scratch.MARKER]
    assert len(markers) == 1  # two growth steps, one shared scratch run
    assert sorted(r["lag"] for r in rows if r["metric"] == "eval_loss") == scratch.eval_lags(cfg)
    assert grid.reproduce(cfg) and len(files.read_jsonl(scratch.store_path(cfg))) == len(rows)  # nothing redone
    lags = {r["lag"] for r in files.read_jsonl(results.results_path(cfg)) if r["metric"] == "eval_loss"}
    assert lags == {0, 4, 12, *log_spaced(12, 4)} == {0, 1, 2, 4, 5, 12}  # eval_every 12, probe 4, log-spaced
    pool_row = next(r for r in files.read_jsonl(results.results_path(cfg)) if r["candidate"] == "_pool")
    assert (
        pool_row["k"] == 2 and pool_row["cost"]["flops_per_token_wide"] > 2 * pool_row["cost"]["flops_per_token_small"]
    )


def test_study_report_from_the_tiny_grid(tiny_grid):
    out = write_study([results.results_path(tiny_grid).parent], None, StudySettings(n_resamples=50))
    text = (out / "study.md").read_text()
    for section in (
        "Winner per (regime, policy, budget)",
        "Speedup against scratch_wide",
        "Claims of arXiv 2605.13405",
        "Claims 1-3 of arXiv 2604.04281 pooled over seeds",
    ):
        assert section in text
    assert "0 (seed, k, policy, regime, growth step) run(s) missing against the grid plan" in text
    assert "Does the speedup change with the growth step" in text and "vs earliest step" in text  # steps 10, 30
    plan = json.loads((results.results_path(tiny_grid).parent / grid.PLAN).read_text())
    assert [(p["growth_step"], p["regime"]) for p in plan] == [(10, "deterministic"), (30, "deterministic")]
    pooled = pd.read_csv(out / "claims_2604.04281_pooled.csv")
    assert list(pooled["claim_id"]) == [1, 2, 3] and pooled["verdict"].notna().all()
    assert "not run" in text  # claims A and B: no zero_pad, shrink_perturb, msg or ligo in this pool
    speed = (out / "speedup.csv").read_text()
    assert "exact_copy" in speed and "scratch run" in speed
    assert len(list((out / "figures").glob("budget_winner_*.png"))) == 2
    assert len(list((out / "figures").glob("speedup_ladder_*.png"))) == 2  # the ladder figure of each group


def test_study_preset_covers_what_section_6b_asks():
    from tests.test_config import _compose

    cfg = _compose(["experiment=study_cpu"])
    cells = grid.cells(cfg)
    assert len({c.seed for c in cells}) >= 5 and {c.growth.k for c in cells} >= {2, 3}
    assert {(str(c.growth.lr_correction), str(c.optim.clip_mode)) for c in cells} == {
        ("none", "global"),
        ("fan_in", "clone_consistent"),
    }
    assert {str(r) for r in cfg.regimes} == {"deterministic", "stochastic"}
    width = {c.name for c in widen.registry.entries() if c.widens}  # every width candidate of the registry
    assert set(cfg.pool) >= width, f"add {sorted(width - set(cfg.pool))} to configs/experiment/study_cpu.yaml pool"
    assert cfg.budget.log_eval_lags > 0 and cfg.budget.scratch_steps >= 2 * cfg.continuation_lag


def test_long_part_continues_the_warm_starts_as_long_as_scratch_and_shares_the_pretraining():
    from growth.experiment.pretrain import trajectory_identity
    from tests.test_config import _compose

    main, long = _compose(["experiment=study_cpu"]), _compose(["experiment=study_cpu_long"])
    assert "scratch_wide" in long.pool and long.budget.scratch_steps == 0  # scratch runs in the pool, as long
    assert long.continuation_lag == main.budget.scratch_steps  # a missed rung is missed at scratch's budget
    assert {c.growth.k for c in grid.cells(long)} >= {2, 3} and len({c.seed for c in grid.cells(long)}) >= 5
    for a, b in zip(grid.cells(main)[:5], grid.cells(long)[:5], strict=True):
        assert trajectory_identity(a) == trajectory_identity(b)  # same out_dir: one pretraining per seed


def test_coverage_takes_a_pool_scratch_as_finished_and_a_missing_shared_run_as_missing(tmp_path):
    from analysis.study.report import _coverage_md, coverage

    plan = {"lr_policy": "none/global", "k": 2, "regime": "deterministic", "growth_step": 10, "replicates": 1}
    for name, seeds, steps in (("long", [0, 1], 0), ("main", [0], 3000)):
        (tmp_path / name).mkdir()
        records = [plan | {"seed": s, "scratch_steps": steps} for s in seeds]
        (tmp_path / name / grid.PLAN).write_text(json.dumps(records))
    rows = [plan | {"experiment": e, "seed": 0, "metric": "wall_time"} for e in ("long", "main")]
    table = coverage([tmp_path], pd.DataFrame(rows), pd.DataFrame()).set_index(["experiment", "seed"])
    assert table.loc[("long", 0), "scratch_run"] == "in pool" and table.loc[("long", 0), "grow_cell"] == "done"
    assert table.loc[("long", 1), "grow_cell"] == "missing"  # planned, not run
    assert table.loc[("main", 0), "scratch_run"] == "missing"  # a shared scratch run was planned
    assert _coverage_md(table.reset_index()).startswith("2 (seed, k, policy, regime, growth step) run(s) missing")
