"""Export the project's model as a Hugging Face `save_pretrained` directory: the import rules run backwards.

`export(cfg, params, out, tokenizer)` writes `config.json` (the family record's `hf_config`, the inverse
of its `model_config`), `model.safetensors` (every tensor from the same per-parameter rules the import
uses, inverted) and the tokenizer. Before anything is written the result is imported again
(growth/interop/hf_import.py) and must give back the same ModelConfig and bit-identical parameters, so
export stays the inverse of import by construction, not a second copy of the layout.

What transformers cannot represent is refused in one line naming it: msg's growth masks below 1, a
ModelConfig field the architecture's config.json has no value for (RMSNorm in a GPT-2, ...), nonzero
q/k/v biases in a GPT-Neo. A tied model whose logits are scaled (width growth divides a tied head's
logit_scale by k) is written untied, with the scale folded into lm_head.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from growth.config import AttentionKind, Family, ModelConfig
from growth.interop.hf_families import FAMILIES
from growth.interop.hf_files import HFImportError
from growth.interop.hf_import import TOKENIZER_FILES, convert, model_config
from growth.interop.hf_rules import Part, same, transpose, zeros_of_rows
from growth.models import gpt as model_lib
from growth.models import masks
from growth.widen.trees import flatten, unflatten_like

# Fields that change how a model trains or is stored, not the function it computes.
_TRAINING_ONLY = ("dropout", "init_std", "dtype", "compute_dtype")
HEAD = "lm_head."
EOT = "<|endoftext|>"  # the harness's document separator (growth.data.corpus.EOT)  # the head's keys sit outside the body's prefix ("model.", "transformer.")


class HFExportError(HFImportError):
    """A model that transformers cannot represent; the message names what and why."""


def architecture(cfg: ModelConfig) -> str:
    """The HF architecture a ModelConfig is written as: GPT-2 unless GPT-Neo's options are in use; Qwen2
    for a llama with q/k/v biases."""
    if cfg.family == Family.llama:
        return "qwen2" if cfg.qkv_bias else "llama"
    local = AttentionKind.local in cfg.attention_layers
    return "gpt_neo" if local or not cfg.attn_scale else "gpt2"


def without_masks(cfg: ModelConfig, params: dict) -> tuple[ModelConfig, dict]:
    """msg's masks dropped once every one is 1 (the plain model then computes the same function)."""
    if not cfg.growth_masks:
        return cfg, params
    flat = flatten(params)
    below = [
        f"{path} ({int((np.asarray(v) < 1).sum())} of {np.asarray(v).size} units below 1)"
        for path, v in flat.items()
        if masks.is_mask(path) and not path.endswith(masks.RAMP) and (np.asarray(v) < 1).any()
    ]
    if below:
        raise HFExportError(
            f"msg's growth masks are not yet at 1: {', '.join(below[:4])}{' ...' if len(below) > 4 else ''};"
            " transformers has no masked units: export after the ramp has finished (growth.msg.ramp_steps"
            " continuation steps) or another candidate"
        )
    plain = dataclasses.replace(cfg, growth_masks=False)
    return plain, unflatten_like(model_lib.abstract(plain)[1], flat)


def untied(cfg: ModelConfig, params: dict) -> tuple[ModelConfig, dict]:
    """A tied model with logit_scale != 1 as an untied one whose lm_head holds the scaled embedding."""
    if not cfg.tie_embeddings or cfg.logit_scale == 1.0:
        return cfg, params
    head = np.asarray(params["tok_embed"]["embedding"]).T * np.float32(cfg.logit_scale)
    return dataclasses.replace(cfg, tie_embeddings=False, logit_scale=1.0), params | {"lm_head": {"kernel": head}}


def _normal(cfg: ModelConfig) -> dict:
    """The fields that fix the function a ModelConfig computes, with equivalent spellings made equal."""
    c = dataclasses.asdict(cfg)
    for name in _TRAINING_ONLY:
        c.pop(name)
    if not cfg.tie_embeddings:
        c["logit_scale"] = 1.0  # read by the tied head only
    if cfg.family == Family.llama:
        c["n_kv_heads"] = cfg.n_kv_heads or cfg.n_heads
        c["mlp_hidden"] = cfg.mlp_hidden or cfg.mlp_ratio * cfg.d_model
        for name in ("mlp_ratio", "activation", "attn_scale"):  # the llama family ignores them
            c.pop(name)
    else:
        for name in ("n_kv_heads", "mlp_hidden", "rope_theta", "qkv_bias"):
            c.pop(name)
    if AttentionKind.local not in cfg.attention_layers:
        c["attention_layers"], c["window_size"] = [], 0
    return c


def hf_config(cfg: ModelConfig, arch: str) -> dict:
    """config.json for `cfg` as `arch`; refuses a field that architecture cannot hold, naming it."""
    fam = FAMILIES[arch]
    hf = fam.hf_config(cfg)
    try:
        back = model_config(fam.defaults | hf)
    except HFImportError as e:
        raise HFExportError(f"the model cannot be written as {fam.head_class}: {e}") from None
    ours, theirs = _normal(cfg), _normal(back)
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ:
        said = ", ".join(f"model.{k}={ours[k]!r}" for k in differ)
        read = ", ".join(f"{k}={theirs.get(k)!r}" for k in differ)
        raise HFExportError(f"{fam.head_class}'s config.json cannot represent {said} (it would read back {read})")
    return hf


def state_dict(cfg: ModelConfig, params: dict, arch: str) -> dict[str, np.ndarray]:
    """The HF tensors of `params`: each import rule inverted (a transpose back, GPT-2's q/k/v parts
    concatenated; GPT-Neo's bias-free q/k/v must hold zero biases)."""
    fam = FAMILIES[arch]
    flat = {tuple(p.split("/")): np.asarray(v, np.float32) for p, v in flatten(params).items()}
    by_key: dict[str, list] = defaultdict(list)
    for path, key, fn in fam.rules(cfg):
        by_key[key].append((tuple(map(str, path)), fn))
    out: dict[str, np.ndarray] = {}
    for key, uses in by_key.items():
        name = key if key.startswith(HEAD) else fam.prefix + key
        parts = sorted((fn.index, flat[path]) for path, fn in uses if isinstance(fn, Part))
        if parts:
            out[name] = np.concatenate([v for _, v in parts], axis=-1)
        for path, fn in uses:
            value = flat[path]
            if fn is same:
                out[name] = value
            elif fn is transpose:
                out[name] = np.ascontiguousarray(value.T)
            elif fn is zeros_of_rows and np.any(value != 0):
                raise HFExportError(
                    f"{'/'.join(path)} holds nonzero biases but {fam.head_class} has no bias there; the model"
                    " cannot be written as that architecture"
                )
            elif not isinstance(fn, Part) and fn not in (same, transpose, zeros_of_rows):
                raise HFExportError(f"{key!r}: the {arch} rule {fn!r} has no inverse; add one in hf_export.py")
    return out


def check_inverse(cfg: ModelConfig, params: dict, tensors: dict[str, np.ndarray], arch: str) -> None:
    """Importing `tensors` must give back `params` exactly (else export and import disagree: a bug)."""
    back = flatten(convert(tensors, arch, cfg))
    ours = {p: np.asarray(v, np.float32) for p, v in flatten(params).items()}
    bad = sorted(p for p in ours if p not in back or not np.array_equal(ours[p], back[p]))
    if bad or set(back) != set(ours):
        raise AssertionError(f"export is not the inverse of the {arch} import for {bad or set(back) ^ set(ours)}")


def export(cfg: ModelConfig, params: dict, out: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write `params` of a `cfg` model to `out` as a transformers save_pretrained directory."""
    from safetensors.numpy import save_file

    cfg, params = untied(*without_masks(cfg, params))
    arch = architecture(cfg)
    hf = hf_config(cfg, arch)
    tensors = state_dict(cfg, params, arch)
    check_inverse(cfg, params, tensors, arch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    eot = None
    if tokenizer is not None:
        write_tokenizer(Path(tokenizer), out)
        eot = _vocab(out).get(EOT)
    # the document separator is the harness's only special token; without a tokenizer none is known
    hf |= {"bos_token_id": eot, "eos_token_id": eot, "torch_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(hf, indent=1) + "\n")
    return out


def write_tokenizer(source: Path, out: Path) -> None:
    """The tokenizer files of `source` (a tokenizer.json or a directory of TOKENIZER_FILES) into `out`,
    with a tokenizer_config.json so AutoTokenizer loads them."""
    folder = source.parent if source.is_file() else source
    copied = [n for n in TOKENIZER_FILES if (folder / n).is_file()]
    if source.is_file() and source.name not in copied:
        copied.append(source.name)
    if not copied:
        raise HFExportError(f"no tokenizer files in {str(folder)!r} (looked for {', '.join(TOKENIZER_FILES)})")
    for name in copied:
        if folder / name != out / name:
            shutil.copy(folder / name, out / name)
    if "tokenizer_config.json" not in copied:
        config = {"tokenizer_class": "PreTrainedTokenizerFast" if "tokenizer.json" in copied else "GPT2Tokenizer"}
        if EOT in _vocab(out):
            config |= {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")


def _vocab(out: Path) -> dict:
    if (out / "tokenizer.json").is_file():
        return json.loads((out / "tokenizer.json").read_text()).get("model", {}).get("vocab", {})
    if (out / "vocab.json").is_file():
        return json.loads((out / "vocab.json").read_text())
    return {}
