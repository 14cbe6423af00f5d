"""Import a local Hugging Face GPT-2 or GPT-Neo causal LM into the project's model.

`load(path) -> (ModelConfig, params)` reads `config.json` and the weights (`model.safetensors`,
`pytorch_model.bin`, or their sharded `*.index.json`) of a directory written by `save_pretrained`.
`write_base_checkpoint` saves the result as a step-0 pretraining checkpoint (fresh optimizer state)
that the growth runner can widen; `load_tokenizer` loads the checkpoint's own tokenizer, and
`with_base_run` makes a growth config read the model and that tokenizer from the base run.

Layout rules (docs/surgery.md): a torch Linear weight (out, in) becomes a kernel (in, out); GPT-2's
Conv1D is already (in, out) and its fused c_attn splits into q, k, v; GPT-Neo's bias-free q/k/v get
zero biases; embeddings and norms keep their layout; both tie lm_head to wte.
Safetensors files need only the `safetensors` package; `.bin` files need torch (the `torch` extra).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from growth import checkpoint, optimizer, train
from growth import data as data_lib
from growth import model as model_lib
from growth.config import Activation, Config, DataConfig, ModelConfig, Norm, OptimConfig, as_dict

log = logging.getLogger(__name__)

ARCHITECTURES = ("gpt2", "gpt_neo")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# The defaults of transformers' GPT2Config / GPTNeoConfig, for config.json files that omit a field
# (tests/test_hf_import.py checks them against the installed transformers).
HF_DEFAULTS = {
    "gpt2": {
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "tie_word_embeddings": True,
    },
    "gpt_neo": {
        "intermediate_size": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "attention_types": [[["global", "local"], 12]],
        "window_size": 256,
        "tie_word_embeddings": True,
    },
}
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
# Non-persistent attention-mask buffers that old checkpoints still hold; they carry no weights.
_BUFFERS = re.compile(r"(^|\.)attn\.(attention\.)?(bias|masked_bias)$")


class HFImportError(ValueError):
    """A checkpoint that cannot be imported; the message names the file or key and the fix."""


# ---------------------------------------------------------------- config


def read_hf_config(path: str | Path) -> dict:
    """The `config.json` next to the weights, with HF's defaults filled in."""
    directory = _directory(path)
    file = directory / "config.json"
    if not file.is_file():
        raise HFImportError(
            f"no config.json in {str(directory)!r}; save the model with model.save_pretrained(DIR) so"
            " that DIR holds config.json and the weights"
        )
    raw = json.loads(file.read_text())
    arch = raw.get("model_type")
    if arch not in ARCHITECTURES:
        raise HFImportError(
            f"{str(file)!r}: model_type={arch!r} (architectures={raw.get('architectures')}) is not"
            f" supported; only {list(ARCHITECTURES)} causal LMs can be imported"
        )
    return HF_DEFAULTS[arch] | raw


def model_config(hf: dict) -> ModelConfig:
    """The project's ModelConfig for a (defaults-filled) HF GPT-2 or GPT-Neo config."""
    arch = hf["model_type"]
    act = hf["activation_function"]
    if act not in HF_ACTIVATIONS:
        raise HFImportError(f"activation_function={act!r} is not supported; known: {sorted(HF_ACTIVATIONS)}")
    if arch == "gpt2":
        if hf["scale_attn_by_inverse_layer_idx"]:
            raise HFImportError("scale_attn_by_inverse_layer_idx=true is not supported by the project model")
        d, inner = hf["n_embd"], hf["n_inner"]
        fields = dict(
            vocab_size=hf["vocab_size"], d_model=d, n_heads=hf["n_head"], n_layers=hf["n_layer"],
            context=hf["n_positions"], attn_scale=bool(hf["scale_attn_weights"]),
        )  # fmt: skip
    else:
        d, inner = hf["hidden_size"], hf["intermediate_size"]
        layers = [t for kinds, n in hf["attention_types"] for _ in range(n) for t in kinds]
        fields = dict(
            vocab_size=hf["vocab_size"], d_model=d, n_heads=hf["num_heads"], n_layers=hf["num_layers"],
            context=hf["max_position_embeddings"], attn_scale=False,
            attention_layers=layers, window_size=hf["window_size"] if "local" in layers else 0,
        )  # fmt: skip
    inner = inner or 4 * d
    if inner % d:
        raise HFImportError(
            f"MLP width {inner} is not a multiple of the model width {d}; model.mlp_ratio must be an integer"
        )
    tied = bool(hf["tie_word_embeddings"])
    cfg = ModelConfig(
        **fields,
        mlp_ratio=inner // d,
        norm=Norm.layernorm,
        norm_eps=float(hf["layer_norm_epsilon"]),
        tie_embeddings=tied,
        logit_scale=1.0,
        dropout=0.0,
        activation=Activation(HF_ACTIVATIONS[act]),
    )
    model_lib.validate_model_config(cfg)
    return cfg


# ---------------------------------------------------------------- weights


def _directory(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise HFImportError(f"{str(path)!r} does not exist; give a directory written by save_pretrained")
    return path if path.is_dir() else path.parent


def weights_file(path: str | Path) -> Path:
    """The weights file of `path` (a weights file itself, or a directory holding one)."""
    path = Path(path)
    if path.is_file():
        return path
    directory = _directory(path)
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise HFImportError(
        f"no weights in {str(directory)!r}: looked for {', '.join(WEIGHT_FILES)}; save the model with"
        " model.save_pretrained(DIR) or pass the weights file itself"
    )


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors / .bin file (or sharded index) as a float32 numpy array."""
    file = weights_file(path)
    if file.name.endswith(".index.json"):
        shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        out: dict[str, np.ndarray] = {}
        for shard in shards:
            out |= read_state_dict(file.parent / shard)
        return out
    if file.suffix == ".safetensors":
        return _read_safetensors(file)
    if file.suffix in (".bin", ".pt", ".pth"):
        torch = _torch(file)
        tensors = torch.load(file, map_location="cpu", weights_only=True)
        return {k: v.detach().float().numpy() for k, v in tensors.items() if hasattr(v, "detach")}
    raise HFImportError(f"{str(file)!r}: unknown weights format; use .safetensors or .bin")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as f:
            return {k: np.asarray(f.get_tensor(k), dtype=np.float32) for k in f.keys()}  # noqa: SIM118 (safetensors handles have no __iter__)
    except (TypeError, ValueError):  # bfloat16 has no numpy dtype: read through torch
        _torch(file)
        with safe_open(str(file), framework="pt") as f:
            return {k: f.get_tensor(k).float().numpy() for k in f.keys()}  # noqa: SIM118 (safetensors handles have no __iter__)


def _torch(file: Path):
    try:
        import torch
    except ModuleNotFoundError as e:
        raise HFImportError(f"reading {str(file)!r} needs torch; install the extra: pip install -e '.[torch]'") from e
    return torch


def torch_linear(weight: np.ndarray, bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A torch Linear (weight (out, in), bias (out,)) as a kernel (in, out) and bias."""
    weight = np.asarray(weight)
    out = {"kernel": weight.T}
    if bias is not None:
        out["bias"] = np.asarray(bias)
    return out


# One rule per project parameter: (project path, HF key, transform of the HF tensor).
Rule = tuple[tuple, str, Callable[[np.ndarray], np.ndarray]]


def _same(x):
    return x


def _transpose(x):
    return x.T


def _split(part: int):
    return lambda x: np.split(x, 3, axis=-1)[part]


def _rules(arch: str, cfg: ModelConfig) -> list[Rule]:
    rules: list[Rule] = [
        (("tok_embed", "embedding"), "wte.weight", _same),
        (("pos_embed", "embedding"), "wpe.weight", _same),
        (("ln_f", "scale"), "ln_f.weight", _same),
        (("ln_f", "bias"), "ln_f.bias", _same),
    ]
    if not cfg.tie_embeddings:
        rules.append((("lm_head", "kernel"), "lm_head.weight", _transpose))
    for i in range(cfg.n_layers):
        b, h = ("blocks", i), f"h.{i}."
        rules += [
            ((*b, "ln1", "scale"), h + "ln_1.weight", _same),
            ((*b, "ln1", "bias"), h + "ln_1.bias", _same),
            ((*b, "ln2", "scale"), h + "ln_2.weight", _same),
            ((*b, "ln2", "bias"), h + "ln_2.bias", _same),
        ]
        if arch == "gpt2":  # Conv1D weights are (in, out) already
            for part, name in enumerate("qkv"):
                rules.append(((*b, "attn", name, "kernel"), h + "attn.c_attn.weight", _split(part)))
                rules.append(((*b, "attn", name, "bias"), h + "attn.c_attn.bias", _split(part)))
            rules += [
                ((*b, "attn", "o", "kernel"), h + "attn.c_proj.weight", _same),
                ((*b, "attn", "o", "bias"), h + "attn.c_proj.bias", _same),
                ((*b, "mlp", "fc", "kernel"), h + "mlp.c_fc.weight", _same),
                ((*b, "mlp", "fc", "bias"), h + "mlp.c_fc.bias", _same),
                ((*b, "mlp", "proj", "kernel"), h + "mlp.c_proj.weight", _same),
                ((*b, "mlp", "proj", "bias"), h + "mlp.c_proj.bias", _same),
            ]
        else:  # torch Linear weights are (out, in); q/k/v have no bias (zeros below)
            a = h + "attn.attention."
            for name in "qkv":
                rules.append(((*b, "attn", name, "kernel"), a + f"{name}_proj.weight", _transpose))
            rules += [
                ((*b, "attn", "o", "kernel"), a + "out_proj.weight", _transpose),
                ((*b, "attn", "o", "bias"), a + "out_proj.bias", _same),
                ((*b, "mlp", "fc", "kernel"), h + "mlp.c_fc.weight", _transpose),
                ((*b, "mlp", "fc", "bias"), h + "mlp.c_fc.bias", _same),
                ((*b, "mlp", "proj", "kernel"), h + "mlp.c_proj.weight", _transpose),
                ((*b, "mlp", "proj", "bias"), h + "mlp.c_proj.bias", _same),
            ]
    return rules


def convert(state_dict: dict[str, np.ndarray], arch: str, cfg: ModelConfig) -> dict:
    """Project params from an HF state dict; every shape is checked against the model for `cfg`."""
    sd = {k.removeprefix("transformer."): v for k, v in state_dict.items()}
    _, shapes = model_lib.abstract(cfg)
    params: dict = {}
    used = set()
    head = {"gpt2": "GPT2LMHeadModel", "gpt_neo": "GPTNeoForCausalLM"}[arch]
    for path, key, fn in _rules(arch, cfg):
        if key not in sd:
            raise HFImportError(
                f"tensor {key!r} (for {'/'.join(map(str, path))}) is missing from the checkpoint; save the"
                f" whole causal LM ({head}) with save_pretrained"
            )
        used.add(key)
        _put(params, path, np.asarray(fn(sd[key]), np.float32), shapes, key)
    if arch == "gpt_neo":
        zeros = np.zeros(cfg.d_model, np.float32)
        for i in range(cfg.n_layers):
            for name in "qkv":
                _put(params, ("blocks", i, "attn", name, "bias"), zeros, shapes, "(zeros)")
    extra = sorted(k for k in sd if k not in used and not _BUFFERS.search(k) and not _tied_head(k, cfg))
    if extra:
        raise HFImportError(
            f"tensors the {arch} layout does not use: {extra[:8]}{' ...' if len(extra) > 8 else ''}; import a"
            " plain causal LM (no extra heads), or extend growth/interop/hf_import.py for this variant"
        )
    missing = _paths(shapes) - _paths(params)
    if missing:
        raise HFImportError(f"no HF tensor maps to {sorted(missing)}; add rules to growth/interop/hf_import.py")
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
    """(ModelConfig, params as float32 jax arrays) of a local HF GPT-2 / GPT-Neo checkpoint."""
    hf = read_hf_config(path)
    cfg = model_config(hf)
    params = convert(read_state_dict(path), hf["model_type"], cfg)
    return cfg, jax.tree.map(jax.numpy.asarray, params)


# ---------------------------------------------------------------- tokenizer and base checkpoint


def load_tokenizer(path: str | Path):
    """The checkpoint's own tokenizer (`tokenizer.json`, or GPT-2's vocab.json + merges.txt)."""
    path = Path(path)
    _directory(path)
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
        if (_directory(path) / name).is_file():
            shutil.copy(_directory(path) / name, run_dir / name)
            copied.append(name)
    if copied:
        tok = load_tokenizer(run_dir)
        if tok.get_vocab_size() > model_cfg.vocab_size:
            raise HFImportError(
                f"the tokenizer in {str(_directory(path))!r} has {tok.get_vocab_size()} tokens but the model's"
                f" vocab_size is {model_cfg.vocab_size}; save the tokenizer the model was trained with"
            )
    else:
        log.warning("no tokenizer files in %s; growing needs data.tokenizer_path=...", _directory(path))
    source = {"path": str(Path(path).absolute()), "tokenizer_files": copied}
    (run_dir / "hf_source.json").write_text(json.dumps(source))
    return run_dir


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

    For an imported base run (one written by `import_to_run_dir`) the corpus is tokenized with the
    checkpoint's own tokenizer: `data.tokenizer_path` if given, else the tokenizer saved in the run; with
    neither this refuses. `data.context` is capped at the model's context. A base run pretrained by this
    project keeps the runner's own BPE (the same data config retrains the same tokenizer).
    """
    assert cfg.runner.base_dir is not None
    base = Path(cfg.runner.base_dir)
    saved = checkpoint.read_config(base / "checkpoints", cfg.growth_step)
    model_cfg = ModelConfig(**saved["model"])
    data = cfg.data
    if (base / "hf_source.json").is_file() or data.tokenizer_path:
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
