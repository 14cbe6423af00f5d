"""docs/extending.md, as a test: a new candidate and a new metric defined here only, registered through
the public registries, run through a tiny grow and the report, found ranked and tabled."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import pandas as pd
import pytest

from analysis.report.paper import write_report
from growth import widen
from growth.config import Config, RunnerConfig
from growth.experiment import pretrain, results, runner
from growth.measure import metric_registry as mr
from growth.store.files import read_jsonl
from growth.widen import registry


def halved_head(small, small_cfg, spec, optim_cfg, key):
    """exact_copy with the unembedding halved: a warm start that is not function-preserving."""
    grown = widen.grow("exact_copy", small, small_cfg, spec, optim_cfg, key)
    params = dict(grown.state.params)
    params["lm_head"] = jax.tree.map(lambda w: w * 0.5, params["lm_head"])
    return dataclasses.replace(grown, state=grown.state.replace(params=params))


def _top1(o: mr.Outputs) -> dict[str, jax.Array]:
    return {"top1_agree": jnp.sum(o.logits.argmax(-1) == o.small_logits.argmax(-1)).astype(jnp.float32)}


@pytest.fixture
def extended(monkeypatch):
    """The registries with one more candidate and one more metric, restored after the test."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    for name in ("PARTS", "METRICS", "SIGNALS"):
        monkeypatch.setattr(mr, name, dict(getattr(mr, name)))
    widen.register(
        widen.Candidate(
            name="halved_head", build=halved_head, order=45, color="C9", preserving=False,
            description="exact_copy with the unembedding halved (a test-only candidate)",
        )
    )  # fmt: skip
    mr.register_part(mr.Part("top1_agree", _top1))
    mr.register_metric(
        mr.Metric(
            "probe_top1", mr.Stage.probe, "probe top-1 agreement with the small model", "fraction of tokens",
            parts=("top1_agree",), value=lambda s, c: s["top1_agree"] / c.n_tokens,
        ),
        signal=mr.Direction.higher_better,
    )  # fmt: skip


def test_a_new_candidate_and_metric_reach_results_and_report(extended, tmp_path):
    cfg = Config(
        name="ext",
        out_dir=str(tmp_path / "runs"),
        growth_step=6,
        pool=["exact_copy", "halved_head", "continue_small"],
        regimes=["deterministic"],
        replicates=2,
        probe_lag=2,
        continuation_lag=4,
        runner=RunnerConfig(eval_every=2, batch_size=4, eval_chunk=4),
    )
    cfg.data = dataclasses.replace(
        cfg.data, vocab_size=300, context=16, synthetic_train_docs=200, synthetic_valid_docs=20,
        eval_sequences=4, cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    cfg.model = dataclasses.replace(cfg.model, vocab_size=300, d_model=16, n_heads=2, n_layers=1, context=16)
    cfg.optim = dataclasses.replace(cfg.optim, warmup_steps=2, decay_steps=40)
    cfg.pretrain = dataclasses.replace(cfg.pretrain, steps=6, batch_size=4, checkpoint_steps=[6], save_every=6)
    cfg.logger.wandb.mode = "disabled"
    cfg.logger.progress = False
    pretrain.run(cfg)
    path = runner.run(cfg)

    rows = read_jsonl(path)
    top1 = [r for r in rows if r["metric"] == "probe_top1"]
    assert {r["candidate"] for r in top1} == {"exact_copy", "halved_head"} and all(r["lag"] == 2 for r in top1)
    assert all(0.0 <= r["value"] <= 1.0 for r in top1)
    measured = [r["measured"] for r in rows if r["metric"] == "wall_time"]
    assert measured and all("probe_top1" in m["metrics"] and "halved_head" in m["candidates"] for m in measured)

    out = write_report(path.parent, figures=False, n_resamples=50)
    ranks = pd.read_csv(out / "rankings_long.csv")
    mine = ranks[
        (ranks["candidate"] == "halved_head")
        & (ranks["stage"] == "continuation")
        & (ranks["regime"] == "deterministic")
    ]
    assert len(mine) == 1 and mine["rank"].iloc[0] >= 1 and mine["status"].iloc[0] == "ok"
    selectors = pd.read_csv(out / "selectors.csv")
    assert "probe_top1" in set(selectors["signal"])
    report = (out / "report.md").read_text()
    assert "halved_head" in report and "probe_top1" in report
    # Candidate order comes from the entry: halved_head (45) sits between exact_copy (10) and continue_small.
    header = next(line for line in report.splitlines() if line.startswith("| seed |") and "halved_head" in line)
    assert header.index("exact_copy") < header.index("halved_head") < header.index("continue_small")


def test_a_finished_cell_lacking_a_new_metric_is_run_again(extended, tmp_path, caplog):
    from growth.experiment.results import CellKey

    cfg = Config(name="m", out_dir=str(tmp_path), pool=["exact_copy"])
    key = CellKey(0, 1, "deterministic", 0)
    path = results.results_path(cfg)
    chash = results.cell_hash(cfg)
    path.parent.mkdir(parents=True)
    base = {"seed": 0, "growth_step": 1, "regime": "deterministic", "replicate": 0, "config_hash": chash}
    old = {**base, "metric": "wall_time", "measured": {"candidates": ["exact_copy"], "metrics": ["auc"]}}
    path.write_text(json.dumps(old) + "\n")
    with caplog.at_level("WARNING", logger="growth.experiment.runner"):
        assert results.unfinished(cfg, path, [key]) == [key]
    assert "lacks" in caplog.text and "probe_top1" in caplog.text
    path.write_text(json.dumps({**base, "metric": "wall_time"}) + "\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="growth.experiment.runner"):
        assert results.unfinished(cfg, path, [key]) == []
    assert "predates" in caplog.text
