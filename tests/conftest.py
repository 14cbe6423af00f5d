"""Shared fixtures: tiny configs and paths. Tests never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from growth import compile_cache
from growth.config import Config, DataConfig, ModelConfig, OptimConfig, PretrainConfig

REPO = Path(__file__).resolve().parents[1]
compile_cache.enable(REPO / ".cache" / "jax-tests")

# The in-tree TinyStories sample (xz-compressed; data/tinystories/README.md).
TINYSTORIES = REPO / "data" / "tinystories"
TRAIN_SAMPLE = TINYSTORIES / "TinyStories-train-sample.txt.xz"
VALID_SAMPLE = TINYSTORIES / "TinyStories-valid-sample.txt.xz"


def tiny_config(tmp_path: Path) -> Config:
    """A whole config small enough for a CPU test: synthetic data, 2-layer d=16 model."""
    cfg = Config(
        name="test",
        seed=0,
        out_dir=str(tmp_path / "runs"),
        data=DataConfig(
            source="synthetic",
            vocab_size=320,
            context=16,
            synthetic_train_docs=300,
            synthetic_valid_docs=40,
            eval_sequences=8,
            cache_dir=str(tmp_path / "cache"),
        ),
        model=ModelConfig(vocab_size=320, d_model=16, n_heads=2, n_layers=2, context=16),
        optim=OptimConfig(lr=3e-3, warmup_steps=5, decay_steps=60),
        pretrain=PretrainConfig(
            steps=30, batch_size=8, checkpoint_steps=[10, 30], save_every=10, eval_every=10, log_every=5
        ),
    )
    cfg.logger.wandb.mode = "disabled"
    cfg.logger.progress = False
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path) -> Config:
    return tiny_config(tmp_path)
