"""experiment=paper_gpu composes, and runs a few steps on the CPU with tiny overrides and local data."""

from hydra import compose, initialize_config_dir

from growth.config import register_configs
from growth.experiment import pretrain, runner
from growth.validate import to_config
from tests.conftest import REPO, TRAIN_SAMPLE, VALID_SAMPLE

TINY = [
    "data=local",
    f"data.train_path={TRAIN_SAMPLE}",
    f"data.valid_path={VALID_SAMPLE}",
    "data.max_train_docs=200",
    "data.max_valid_docs=40",
    "data.vocab_size=300",
    "data.context=16",
    "data.eval_sequences=8",
    "model.d_model=16",
    "model.n_heads=2",
    "model.n_layers=1",
    "pretrain.batch_size=4",
    "pretrain.steps=3",
    "pretrain.checkpoint_steps=[3]",
    "pretrain.save_every=3",
    "pretrain.eval_every=3",
    "pretrain.log_every=3",
    "runner.batch_size=4",
    "runner.eval_chunk=8",
    "runner.eval_every=2",
    "growth_step=3",
    "pool=[exact_copy,continue_small]",
    "regimes=[deterministic]",
    "replicates=1",
    "probe_lag=2",
    "continuation_lag=2",
    "logger.wandb.mode=disabled",
]


def _compose(overrides):
    register_configs()
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        return to_config(compose("config", overrides=overrides))


def test_paper_gpu_composes_to_the_gpu_preset():
    cfg = _compose(["experiment=paper_gpu"])
    assert cfg.name == "paper_gpu" and cfg.data.source == "tinystories" and cfg.data.max_train_docs is None
    assert cfg.model.compute_dtype == "bfloat16" and cfg.model.d_model == 256 and cfg.model.n_layers == 6
    assert cfg.pretrain.batch_size == cfg.runner.batch_size == 128 and len(cfg.grid) == 3


def test_paper_gpu_runs_a_few_steps_on_the_cpu(tmp_path):
    cfg = _compose(["experiment=paper_gpu", f"out_dir={tmp_path}", f"data.cache_dir={tmp_path / 'c'}"] + TINY)
    assert cfg.model.compute_dtype == "bfloat16"
    run_dir = pretrain.run(cfg)
    assert (run_dir / "checkpoints").is_dir()
    rows = runner.run(cfg).read_text().splitlines()
    assert any('"final_loss"' in r and '"exact_copy"' in r for r in rows)
