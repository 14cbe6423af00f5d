"""HF Llama / Qwen2 import (growth/interop/hf_llama.py): refusals in one line (config only), logit parity
with transformers' own models at 72 positions (marked torch), and growth of an imported model."""

import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from growth import widen
from growth.config import DataConfig, GrowthConfig, OptimConfig
from growth.data import pipeline as data_lib
from growth.experiment import base_run, runner
from growth.interop import hf_import
from growth.models import gpt as model_lib
from growth.store.files import read_jsonl
from growth.training import optimizer, train
from tests.conftest import VALID_SAMPLE
from tests.test_hf_import import _compose, _grow_overrides

V, T = 96, 72  # vocabulary, positions compared (>= 64)
BASE = dict(
    vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=80, rms_norm_eps=1e-6, tie_word_embeddings=False,
)  # fmt: skip


def _config_json(tmp_path, model_type: str, **kw):
    path = tmp_path / model_type
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type} | BASE | kw))
    return path


def test_config_mapping_without_weights(tmp_path):
    hf = hf_import.read_hf_config(_config_json(tmp_path, "qwen2", rope_theta=1e6, tie_word_embeddings=True))
    cfg = hf_import.model_config(hf)
    assert (cfg.family, cfg.norm, cfg.d_model, cfg.n_heads, cfg.n_kv_heads) == ("llama", "rmsnorm", 32, 4, 2)
    assert (cfg.mlp_hidden, cfg.context, cfg.rope_theta, cfg.norm_eps) == (48, 80, 1e6, 1e-6)
    assert cfg.qkv_bias and cfg.tie_embeddings and cfg.logit_scale == 1.0 and cfg.vocab_size == V
    v5 = {"rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}  # transformers 5's layout
    llama = hf_import.model_config(hf_import.read_hf_config(_config_json(tmp_path, "llama", **v5)))
    assert llama.rope_theta == 500.0 and not llama.qkv_bias and not llama.tie_embeddings


REFUSALS = [
    ("llama", {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling={'type': 'linear', 'factor': 2.0}"),
    (
        "llama",
        {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
        "rope_parameters={'rope_type': 'llama3'",
    ),
    ("llama", {"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
    ("llama", {"attention_bias": True}, "attention_bias=True"),
    ("llama", {"mlp_bias": True}, "mlp_bias=True"),
    ("llama", {"head_dim": 16}, "head_dim=16"),
    ("llama", {"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1}, "use_sliding_window=True"),
    ("qwen2", {"num_key_value_heads": 3}, "model.n_kv_heads=3 must divide model.n_heads=4"),
]


@pytest.mark.parametrize("model_type,bad,says", REFUSALS)
def test_unsupported_config_is_refused_in_one_line(tmp_path, model_type, bad, says):
    with pytest.raises(hf_import.HFImportError) as e:
        hf_import.load(_config_json(tmp_path, model_type, **bad))  # refused before any weights are read
    msg = str(e.value)
    assert says in msg and "\n" not in msg and model_type in msg, msg
    assert "support" in msg or "use one of" in msg  # says what is supported


def test_a_sliding_window_that_no_layer_uses_imports(tmp_path):
    # Qwen2 applies the window to layers >= max_window_layers only: none of the two here
    hf = hf_import.read_hf_config(_config_json(tmp_path, "qwen2", use_sliding_window=True, max_window_layers=2))
    assert hf_import.model_config(hf).window_size == 0


# ---------------------------------------------------------------- against transformers


def _hf_model(kind: str, seed: int = 0, **kw):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fields = BASE | {"rope_theta": 500.0, "bos_token_id": 0, "eos_token_id": 0} | kw
    if kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**fields))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # weights large enough that attention is sharp and layout errors show
        for name, p in model.named_parameters():
            base = 1.0 if "norm" in name else 0.0
            p.copy_(base + (0.1 if name.endswith("bias") else 0.25) * torch.randn(p.shape, generator=gen))
    return model.eval()


def _hf_logits(model, tokens: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.float().numpy()


def _ours(cfg, params, tokens) -> np.ndarray:
    graphdef, _ = model_lib.abstract(cfg)
    return np.asarray(model_lib.apply(graphdef, params, jnp.asarray(tokens, jnp.int32)))


TOKENS = np.random.default_rng(1).integers(0, V, (2, T))
PEERS = {
    "llama_gqa": ("llama", {}),  # 4 heads, 2 kv heads
    "llama_mqa": ("llama", {"num_key_value_heads": 1}),
    "llama_tied": ("llama", {"tie_word_embeddings": True}),
    "qwen2_bias": ("qwen2", {}),  # q/k/v biases
}


@pytest.mark.torch
@pytest.mark.parametrize("name", list(PEERS))
def test_logits_match_transformers(tmp_path, name):
    kind, kw = PEERS[name]
    model = _hf_model(kind, **kw)
    model.save_pretrained(tmp_path)
    want = _hf_logits(model, TOKENS)
    cfg, params = hf_import.load(tmp_path)
    assert cfg.n_kv_heads == model.config.num_key_value_heads and cfg.qkv_bias == (kind == "qwen2")
    assert ("lm_head" in params) != cfg.tie_embeddings
    got = _ours(cfg, params, TOKENS)
    assert np.abs(want).max() > 1.0  # the comparison is not between near-zero logits
    diff = float(np.abs(got - want).max())
    print(f"{name}: max |logit diff| {diff:.1e} over {T} positions")
    assert diff <= 1e-4
    # the mapping is exercised: another RoPE base, or dropping Qwen2's biases, changes the late logits
    other = _ours(dataclasses.replace(cfg, rope_theta=10000.0), params, TOKENS)
    assert np.abs(other - want).max() > 1e-2
    if cfg.qkv_bias:
        zeroed = jax.tree_util.tree_map_with_path(lambda p, x: 0 * x if p[-1].key == "bias" else x, params)
        assert np.abs(_ours(cfg, zeroed, TOKENS) - want).max() > 1e-2


@pytest.mark.torch
@pytest.mark.parametrize("name", ["llama_gqa", "llama_mqa", "qwen2_bias"])
def test_imported_model_grown_by_exact_copy_keeps_its_function(tmp_path, name):
    kind, kw = PEERS[name]
    model = _hf_model(kind, **kw)
    model.save_pretrained(tmp_path)
    cfg, params = hf_import.load(tmp_path)
    state = train.init_state(params, optimizer.make_optimizer(OptimConfig()), jax.random.PRNGKey(0))
    g = widen.grow("exact_copy", state, cfg, GrowthConfig(k=2), OptimConfig(), jax.random.PRNGKey(1))
    assert (g.model_cfg.d_model, g.model_cfg.n_heads, g.model_cfg.mlp_hidden) == (64, 8, 96)
    assert g.model_cfg.n_kv_heads == (1 if cfg.n_kv_heads == 1 else 4)  # MQA keeps its one kv head
    wide = _ours(g.model_cfg, g.state.params, TOKENS)
    small = _ours(cfg, params, TOKENS)
    kept, diff = float(np.abs(wide - small).max()), float(np.abs(wide - _hf_logits(model, TOKENS)).max())
    scale = float(np.abs(small).max())
    print(f"{name}: grown k=2, max |logit diff| {kept:.1e} vs the import, {diff:.1e} vs transformers")
    # float32 rounding: the same order as between the import and transformers (about 1e-5 here)
    assert scale > 1.0 and kept <= 1e-4 and diff <= 1e-4


@pytest.mark.torch
def test_grow_an_imported_qwen2_through_the_runner(tmp_path, monkeypatch):
    """import_hf, then the runner with runner.base_dir: the imported tokenizer, lag-0 preservation, and
    continue_small's lag-0 loss equal to what transformers scores on the same tokens."""
    import torch

    docs = data_lib.read_local_documents(VALID_SAMPLE, DataConfig(cache_dir=str(tmp_path / "c")), 200, "valid")
    tok = data_lib.train_tokenizer(docs, 320, 2)
    model = _hf_model(
        "qwen2", seed=2, vocab_size=tok.get_vocab_size(), hidden_size=16, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=24, max_position_embeddings=24, tie_word_embeddings=True,
    )  # fmt: skip
    hf_dir, run_dir, out = tmp_path / "hf", tmp_path / "run", tmp_path / "out"
    model.save_pretrained(hf_dir)
    tok.save(str(hf_dir / "tokenizer.json"))

    from experiments import import_hf

    monkeypatch.setattr(sys, "argv", ["import_hf", "--path", str(hf_dir), "--out", str(run_dir)])
    import_hf.main()
    cfg = _compose(_grow_overrides(run_dir, out, "[exact_copy,perturbative,continue_small]"))
    grown = base_run.with_base_run(cfg)
    assert grown.model.family == "llama" and grown.model.qkv_bias and grown.model.n_kv_heads == 1
    assert grown.data.tokenizer_path == str(run_dir / "tokenizer.json") and grown.data.context == 24

    rows = read_jsonl(runner.run(cfg))
    v = {(r["candidate"], r["lag"], r["metric"]): r["value"] for r in rows}
    for name in ("exact_copy", "perturbative"):
        assert v[(name, 0, "max_logit_diff")] <= 1e-4, (name, v[(name, 0, "max_logit_diff")])
    data = data_lib.load(grown.data)
    with torch.no_grad():
        batch = torch.as_tensor(data.eval_BxT1.astype(np.int64))
        logits = model(batch[:, :-1]).logits
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
    assert float(logits.abs().max()) > 1.0
    assert abs(v[("continue_small", 0, "eval_loss")] - float(ce)) < 1e-4
