"""Shared fixtures: the tiny preset and paths. Tests never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The default suite is bound by XLA compilation of tiny programs, not by running them: compiling without
# XLA's expensive optimisation passes cuts its time by about a quarter. The properties tested (preservation
# to float tolerance, moments, resume) do not depend on them; `make test-slow` runs fully optimised
# (JAX_DISABLE_MOST_OPTIMIZATIONS=0). Set before jax is imported; worker subprocesses inherit it.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

from growth import presets
from growth.config import Config
from growth.store import compile_cache

REPO = Path(__file__).resolve().parents[1]
compile_cache.enable(REPO / ".cache" / "jax-tests")

# The in-tree TinyStories sample (xz-compressed; data/tinystories/README.md).
TINYSTORIES = REPO / "data" / "tinystories"
TRAIN_SAMPLE = TINYSTORIES / "TinyStories-train-sample.txt.xz"
VALID_SAMPLE = TINYSTORIES / "TinyStories-valid-sample.txt.xz"


# The pretraining tests train longer than the tiny preset (2 layers, 30 steps, two growth checkpoints), and
# evaluate in chunks of 8 (the schema's default); every test that grows from this config sets its own
# growth_step, lags and runner batch.
PRETRAIN_LONGER = [
    "name=test",
    "model.n_layers=2",
    "data.synthetic_train_docs=300",
    "data.synthetic_valid_docs=40",
    "optim.warmup_steps=5",
    "optim.decay_steps=60",
    "pretrain.steps=30",
    "pretrain.batch_size=8",
    "pretrain.checkpoint_steps=[10,30]",
    "runner.eval_chunk=8",
]


def tiny_config(tmp_path: Path) -> Config:
    """The `tiny` experiment preset (configs/experiment/tiny.yaml), pretraining a 2-layer model for 30 steps."""
    return presets.tiny(tmp_path, PRETRAIN_LONGER)


@pytest.fixture
def tiny_cfg(tmp_path) -> Config:
    return tiny_config(tmp_path)
