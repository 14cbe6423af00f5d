"""Import a local Hugging Face causal LM (GPT-2, GPT-Neo, Llama, Qwen2) into the project's model.

`load(path) -> (ModelConfig, params)` reads `config.json` and the weights of a directory written by
`save_pretrained` (growth/interop/hf_files.py); the architecture's record (growth/interop/hf_families.py)
maps the config and gives one rule per parameter, and `convert` checks every tensor against the
model. `write_base_checkpoint` saves the result as a step-0 pretraining checkpoint (fresh optimizer
state) that the growth runner can widen (`runner.base_dir`, read by growth/experiment/base_run.py);
`load_tokenizer` loads the checkpoint's own tokenizer. Layout rules: docs/surgery.md.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from growth.config import Config, DataConfig, ModelConfig, OptimConfig, as_dict
from growth.data import pipeline as data_lib
from growth.experiment.base_run import SOURCE_FILE
from growth.interop.hf_families import ARCHITECTURES, FAMILIES, family_of
from growth.interop.hf_files import HFImportError, directory, read_config_json, read_state_dict
from growth.interop.hf_rules import torch_linear
from growth.models import gpt as model_lib
from growth.store import checkpoint
from growth.training import optimizer, train

__all__ = ["ARCHITECTURES", "FAMILIES", "HFImportError", "read_state_dict", "torch_linear"]  # re-exported

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


# ---------------------------------------------------------------- config


def read_hf_config(path: str | Path) -> dict:
    """The `config.json` next to the weights, with transformers' defaults of its architecture filled in."""
    file, raw = read_config_json(path)
    fam = family_of(raw.get("model_type"))
    if fam is None:
        raise HFImportError(
            f"{str(file)!r}: model_type={raw.get('model_type')!r} (architectures={raw.get('architectures')}) is"
            f" not supported; only {list(ARCHITECTURES)} causal LMs can be imported"
        )
    return fam.defaults | raw


def model_config(hf: dict) -> ModelConfig:
    """The project's ModelConfig for a (defaults-filled) HF config; refuses what it cannot represent."""
    try:
        cfg = FAMILIES[hf["model_type"]].model_config(hf)
    except KeyError as e:
        raise HFImportError(
            f"{hf.get('model_type')} config.json has no {e.args[0]!r}; save the config with save_pretrained"
        ) from None
    try:
        model_lib.validate_model_config(cfg)
    except model_lib.ConfigError as e:
        raise HFImportError(f"{hf['model_type']} config.json maps to a model the project cannot build: {e}") from None
    return cfg


# ---------------------------------------------------------------- weights


def convert(state_dict: dict[str, np.ndarray], arch: str, cfg: ModelConfig) -> dict:
    """Project params from an HF state dict; every shape is checked against the model for `cfg`."""
    fam = FAMILIES[arch]
    sd = {k.removeprefix(fam.prefix): v for k, v in state_dict.items()}
    _, shapes = model_lib.abstract(cfg)
    params: dict = {}
    used = set()
    for path, key, fn in fam.rules(cfg):
        if key not in sd:
            raise HFImportError(
                f"tensor {key!r} (for {'/'.join(map(str, path))}) is missing from the checkpoint; save the"
                f" whole causal LM ({fam.head_class}) with save_pretrained"
            )
        used.add(key)
        _put(params, path, np.asarray(fn(sd[key]), np.float32), shapes, key)
    extra = sorted(k for k in sd if k not in used and not fam.buffers.search(k) and not _tied_head(k, cfg))
    if extra:
        raise HFImportError(
            f"tensors the {arch} layout does not use: {extra[:8]}{' ...' if len(extra) > 8 else ''}; import a"
            f" plain causal LM (no extra heads), or extend the {arch} record in growth/interop for this variant"
        )
    missing = _paths(shapes) - _paths(params)
    if missing:
        raise HFImportError(f"no HF tensor maps to {sorted(missing)}; add rules to the {arch} record in growth/interop")
    return jax.tree.map(np.asarray, params)


def _tied_head(key: str, cfg: ModelConfig) -> bool:
    return cfg.tie_embeddings and key == "lm_head.weight"


def _put(params: dict, path: tuple, value: np.ndarray, shapes: dict, key: str) -> None:
    want: Any = shapes
    for p in path:
        want = want[p]
    if tuple(value.shape) != tuple(want.shape):
        raise HFImportError(
            f"{'/'.join(map(str, path))}: HF tensor {key!r} gives shape {tuple(value.shape)} but the model"
            f" expects {tuple(want.shape)}; config.json does not match the weights"
        )
    node = params
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value


def _paths(tree: dict) -> set[str]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in leaves}


def load(path: str | Path) -> tuple[ModelConfig, dict]:
    """(ModelConfig, params as float32 jax arrays) of a local HF checkpoint of a registered architecture."""
    hf = read_hf_config(path)
    cfg = model_config(hf)
    params = convert(read_state_dict(path), hf["model_type"], cfg)
    return cfg, jax.tree.map(jax.numpy.asarray, params)


# ---------------------------------------------------------------- tokenizer and base checkpoint


def load_tokenizer(path: str | Path):
    """The checkpoint's own tokenizer (`tokenizer.json`, or GPT-2's vocab.json + merges.txt)."""
    path = Path(path)
    directory(path)
    try:
        return data_lib.load_pretrained_tokenizer(path if path.is_dir() or path.suffix == ".json" else path.parent)
    except data_lib.DataError as e:
        raise HFImportError(str(e)) from None


def base_config(model_cfg: ModelConfig, seed: int = 0, optim: OptimConfig | None = None) -> Config:
    """The run config saved with an imported checkpoint: the imported model, data sized to match."""
    data = DataConfig(vocab_size=model_cfg.vocab_size, context=min(DataConfig.context, model_cfg.context))
    return Config(name="hf_import", seed=seed, model=model_cfg, data=data, optim=optim or OptimConfig())


def write_base_checkpoint(run_dir: str | Path, cfg: Config, params: dict) -> Path:
    """Save `params` with a fresh optimizer state as step 0 under run_dir/checkpoints (pretrain layout)."""
    tx = optimizer.make_optimizer(cfg.optim)
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), train.DROPOUT_ROLE)
    state = train.init_state(params, tx, key)
    checkpoint.save(checkpoint.manager(Path(run_dir) / "checkpoints"), 0, state, as_dict(cfg))
    return Path(run_dir)


def import_to_run_dir(path: str | Path, run_dir: str | Path, seed: int = 0) -> Path:
    """Import a checkpoint and write it, with its tokenizer files (if any), as a step-0 base run."""
    model_cfg, params = load(path)
    run_dir = Path(run_dir)
    write_base_checkpoint(run_dir, base_config(model_cfg, seed), params)
    copied = []
    for name in TOKENIZER_FILES:
        if (directory(path) / name).is_file():
            shutil.copy(directory(path) / name, run_dir / name)
            copied.append(name)
    if copied:
        tok = load_tokenizer(run_dir)
        if tok.get_vocab_size() > model_cfg.vocab_size:
            raise HFImportError(
                f"the tokenizer in {str(directory(path))!r} has {tok.get_vocab_size()} tokens but the model's"
                f" vocab_size is {model_cfg.vocab_size}; save the tokenizer the model was trained with"
            )
    else:
        log.warning("no tokenizer files in %s; growing needs data.tokenizer_path=...", directory(path))
    source = {"path": str(Path(path).absolute()), "tokenizer_files": copied}
    (run_dir / SOURCE_FILE).write_text(json.dumps(source))
    return run_dir
