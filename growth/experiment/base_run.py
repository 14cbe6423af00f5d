"""Growing from an existing run directory (`runner.base_dir`): its model and, for an import, its tokenizer.

A base run is either one this project pretrained or one written by the Hugging Face import
(growth/interop/hf_import.py), which marks it with SOURCE_FILE and copies the checkpoint's tokenizer
files into it. The pipeline reads both kinds here, so it never imports growth/interop.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from growth.config import Config, ConfigValueError, ModelConfig
from growth.data import pipeline as data_lib
from growth.store import checkpoint

log = logging.getLogger(__name__)

SOURCE_FILE = "hf_source.json"  # written by an import: where the checkpoint came from, which tokenizer files


def base_tokenizer(run_dir: str | Path) -> Path | None:
    """The tokenizer saved in a base run (tokenizer.json, or the directory with vocab.json + merges.txt)."""
    run_dir = Path(run_dir)
    if (run_dir / "tokenizer.json").is_file():
        return run_dir / "tokenizer.json"
    if (run_dir / "vocab.json").is_file() and (run_dir / "merges.txt").is_file():
        return run_dir
    return None


def with_base_run(cfg: Config) -> Config:
    """A growth config for `runner.base_dir`: its model from the base run's checkpoint at growth_step.

    For an imported base run the corpus is tokenized with the checkpoint's own tokenizer:
    `data.tokenizer_path` if given, else the tokenizer saved in the run; with neither this refuses.
    `data.context` is capped at the model's context. A base run pretrained by this project keeps the
    runner's own BPE (the same data config retrains the same tokenizer).
    """
    assert cfg.runner.base_dir is not None
    base = Path(cfg.runner.base_dir)
    saved = checkpoint.read_config(base / "checkpoints", cfg.growth_step)
    model_cfg = ModelConfig(**saved["model"])
    trained = saved.get("optim", {}).get("name", "adamw")  # runs saved before Muon existed: AdamW
    if trained != cfg.optim.name and not (base / SOURCE_FILE).is_file():  # an import's moments are all zero
        raise ConfigValueError(
            f"the base run {str(base)!r} was trained with optim.name={trained} but this run asks for"
            f" optim.name={cfg.optim.name}; its optimizer state holds the other optimizer's moments. Set"
            f" optim.name={trained}, or pretrain a base run with optim.name={cfg.optim.name}"
        )
    data = cfg.data
    if (base / SOURCE_FILE).is_file() or data.tokenizer_path:
        tok = data.tokenizer_path or base_tokenizer(base)
        if tok is None:
            raise data_lib.DataError(
                f"the base run {str(base)!r} is an imported checkpoint without a tokenizer, so its token ids are"
                " unknown; give the tokenizer it was trained with: data.tokenizer_path=PATH/tokenizer.json (or a"
                " directory with vocab.json + merges.txt), or re-import from a directory that holds it"
            )
        n = data_lib.load_pretrained_tokenizer(tok).get_vocab_size()
        if n > model_cfg.vocab_size:
            raise data_lib.DataError(
                f"tokenizer {str(tok)!r} has {n} tokens but the base model's vocab_size is {model_cfg.vocab_size};"
                " give the tokenizer the model was trained with (data.tokenizer_path=...)"
            )
        data = dataclasses.replace(data, tokenizer_path=str(tok), vocab_size=model_cfg.vocab_size)
    if data.context > model_cfg.context:
        log.info("data.context=%d capped at the base model's context %d", data.context, model_cfg.context)
        data = dataclasses.replace(data, context=model_cfg.context)
    return dataclasses.replace(cfg, model=model_cfg, data=data)
