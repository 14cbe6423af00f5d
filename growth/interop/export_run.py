"""The model of a run directory to export: a saved checkpoint as is, or one candidate grown from it.

A run directory is a pretraining run or an import (growth/interop/hf_import.py), both with
`checkpoints/<step>` and the run's config saved beside each step. A candidate is grown exactly as the
runner grows it for that seed (growth.experiment.pool.build_pool: the same key, options and state), so the
exported model is the one a cell's lag-0 rows measured.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from growth.config import Config, ModelConfig
from growth.data import token_cache
from growth.experiment import base_run, pool
from growth.interop.hf_files import HFImportError
from growth.store import checkpoint
from growth.training import train
from growth.validate import to_config

log = logging.getLogger(__name__)


def run_config(run_dir: Path, step: int | None, overrides: list[str]) -> tuple[Config, int]:
    """(the run's saved config with `overrides` (growth.k=3, ...) applied, the step read)."""
    ckpt_dir = run_dir / "checkpoints"
    steps = checkpoint.steps(ckpt_dir) if ckpt_dir.is_dir() else []
    if not steps:
        raise HFImportError(f"{str(run_dir)!r} holds no checkpoints/; give a pretraining or imported run directory")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise HFImportError(f"{str(run_dir)!r} has no checkpoint at step {step}; saved steps: {steps}")
    merged = OmegaConf.merge(
        OmegaConf.create(checkpoint.read_config(ckpt_dir, step)), OmegaConf.from_dotlist(overrides)
    )
    assert isinstance(merged, DictConfig)
    return to_config(merged), step


def tokenizer_of(run_dir: Path, cfg: Config) -> Path | None:
    """The run's tokenizer: an import's own files, else the BPE cached for its data config (if present)."""
    own = base_run.base_tokenizer(run_dir)
    if own is not None:
        return own
    if cfg.data.tokenizer_path:
        return Path(cfg.data.tokenizer_path)
    try:
        cached = Path(cfg.data.cache_dir) / "tokens" / token_cache.cache_key(cfg.data) / "tokenizer.json"
    except Exception:  # the corpus files moved: the key cannot be computed
        return None
    return cached if cached.is_file() else None


def load_model(
    run_dir: str | Path, step: int | None = None, candidate: str | None = None, overrides: list[str] | None = None
) -> tuple[ModelConfig, dict, Path | None]:
    """(model config, params, tokenizer path or None) of a run's checkpoint, or of `candidate` grown from it."""
    run_dir = Path(run_dir)
    cfg, step = run_config(run_dir, step, list(overrides or []))
    state = train.load_state(run_dir, step, cfg)[2]
    model_cfg, params = cfg.model, state.params
    if candidate and candidate != pool.REFERENCE:
        grow_cfg = dataclasses.replace(cfg, pool=[candidate], growth_step=step)
        pool.check_pool(grow_cfg)
        grown = pool.build_pool(grow_cfg, state)[candidate]
        model_cfg, params = grown.model_cfg, grown.state.params
    tok = tokenizer_of(run_dir, cfg)
    if tok is None:
        log.warning("no tokenizer found for %s; pass tokenizer=PATH to export one", run_dir)
    return model_cfg, params, tok
