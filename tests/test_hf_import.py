"""HF import: layout rules and clear errors (numpy only), parity with transformers (marked torch)."""

import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from growth import widen
from growth.config import DataConfig, GrowthConfig, OptimConfig
from growth.data import pipeline as data_lib
from growth.experiment import base_run, runner
from growth.interop import hf_import
from growth.models import gpt as model_lib
from growth.store import checkpoint
from growth.store.files import read_jsonl
from growth.training import optimizer, train
from growth.validate import to_config
from tests.conftest import REPO, TRAIN_SAMPLE, VALID_SAMPLE

D, F, V, T, L = 16, 64, 40, 12, 2


def _gpt2_config(**kw) -> dict:
    base = dict(model_type="gpt2", n_embd=D, n_head=2, n_layer=L, n_positions=T, vocab_size=V)
    return base | kw


def _fake_gpt2_state(seed: int = 0) -> dict[str, np.ndarray]:
    """A GPT-2 state dict in HF layout (Conv1D weights (in, out)) with random values."""
    rng = np.random.default_rng(seed)
    shapes = {"transformer.wte.weight": (V, D), "transformer.wpe.weight": (T, D)}
    shapes |= {"transformer.ln_f.weight": (D,), "transformer.ln_f.bias": (D,)}
    for i in range(L):
        h = f"transformer.h.{i}."
        shapes |= {h + f"ln_{n}.{p}": (D,) for n in (1, 2) for p in ("weight", "bias")}
        shapes |= {h + "attn.c_attn.weight": (D, 3 * D), h + "attn.c_attn.bias": (3 * D,)}
        shapes |= {h + "attn.c_proj.weight": (D, D), h + "attn.c_proj.bias": (D,)}
        shapes |= {h + "mlp.c_fc.weight": (D, F), h + "mlp.c_fc.bias": (F,)}
        shapes |= {h + "mlp.c_proj.weight": (F, D), h + "mlp.c_proj.bias": (D,)}
    return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in shapes.items()}


def _write(directory, config: dict, state: dict | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if state is not None:
        from safetensors.numpy import save_file

        save_file(state, str(directory / "model.safetensors"))


@pytest.fixture
def fake_gpt2(tmp_path):
    pytest.importorskip("safetensors")
    state = _fake_gpt2_state()
    _write(tmp_path / "gpt2", _gpt2_config(), state)
    return tmp_path / "gpt2", state


def test_gpt2_layout_rules(fake_gpt2):
    path, state = fake_gpt2
    cfg, params = hf_import.load(path)
    assert (cfg.d_model, cfg.n_layers, cfg.mlp_ratio, cfg.context) == (D, L, F // D, T)
    assert cfg.tie_embeddings and cfg.logit_scale == 1.0 and "lm_head" not in params
    c_attn = state["transformer.h.1.attn.c_attn.weight"]
    attn = params["blocks"][1]["attn"]
    for part, name in enumerate("qkv"):  # the fused Conv1D (in, 3 out) splits in q, k, v order
        np.testing.assert_array_equal(attn[name]["kernel"], c_attn[:, part * D : (part + 1) * D])
    proj = state["transformer.h.0.mlp.c_proj.weight"]  # Conv1D: (in, out) already
    np.testing.assert_array_equal(params["blocks"][0]["mlp"]["proj"]["kernel"], proj)
    np.testing.assert_array_equal(params["blocks"][0]["ln2"]["scale"], state["transformer.h.0.ln_2.weight"])
    assert model_lib.param_count(params) == model_lib.count_params(cfg)
    graphdef, _ = model_lib.abstract(cfg)
    assert bool(jnp.isfinite(model_lib.apply(graphdef, params, jnp.zeros((1, T), jnp.int32))).all())


def test_untied_head_is_transposed(tmp_path, fake_gpt2):
    _, state = fake_gpt2
    head = np.random.default_rng(3).normal(size=(V, D)).astype(np.float32)  # torch Linear (out, in)
    _write(tmp_path / "untied", _gpt2_config(tie_word_embeddings=False), state | {"lm_head.weight": head})
    cfg, params = hf_import.load(tmp_path / "untied")
    assert not cfg.tie_embeddings
    np.testing.assert_array_equal(params["lm_head"]["kernel"], head.T)


def test_clear_errors(tmp_path, fake_gpt2):
    _, state = fake_gpt2
    with pytest.raises(hf_import.HFImportError, match="does not exist"):
        hf_import.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(hf_import.HFImportError, match="no config.json"):
        hf_import.load(tmp_path / "empty")
    _write(tmp_path / "bert", {"model_type": "bert", "architectures": ["BertForMaskedLM"]}, None)
    with pytest.raises(hf_import.HFImportError, match="model_type='bert'.*not supported.*'llama', 'qwen2'"):
        hf_import.load(tmp_path / "bert")
    _write(tmp_path / "noweights", _gpt2_config(), None)
    with pytest.raises(hf_import.HFImportError, match="no weights.*model.safetensors"):
        hf_import.load(tmp_path / "noweights")
    _write(tmp_path / "wrongvocab", _gpt2_config(vocab_size=V + 1), state)
    shapes = r"tok_embed/embedding: HF tensor 'wte.weight' gives shape \(40, 16\).*expects \(41, 16\)"
    with pytest.raises(hf_import.HFImportError, match=shapes):
        hf_import.load(tmp_path / "wrongvocab")
    _write(tmp_path / "extra", _gpt2_config(), state | {"score.weight": np.zeros((2, D), np.float32)})
    with pytest.raises(hf_import.HFImportError, match="score.weight"):
        hf_import.load(tmp_path / "extra")
    partial = {k: v for k, v in state.items() if "h.1.mlp.c_fc.bias" not in k}
    _write(tmp_path / "missing", _gpt2_config(), partial)
    missing = r"'h.1.mlp.c_fc.bias' \(for blocks/1/mlp/fc/bias\) is missing"
    with pytest.raises(hf_import.HFImportError, match=missing):
        hf_import.load(tmp_path / "missing")


def test_import_cli_writes_restorable_base_run(tmp_path, fake_gpt2, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    path, _ = fake_gpt2
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False)
    tok.train_from_iterator(["a cat sat on the mat"] * 4, trainer)
    tok.save(str(path / "tokenizer.json"))
    assert hf_import.load_tokenizer(path).encode("the cat").ids

    from experiments import import_hf

    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["import_hf", "--path", str(path), "--out", str(run_dir)])
    import_hf.main()
    assert checkpoint.steps(run_dir / "checkpoints") == [0]
    assert (run_dir / "tokenizer.json").is_file()
    cfg = to_config(OmegaConf.create(checkpoint.read_config(run_dir / "checkpoints", 0)))
    assert cfg.model.tie_embeddings and cfg.data.vocab_size == V
    _, _, state = train.load_state(run_dir, 0, cfg)
    _, params = hf_import.load(path)
    jax.tree.map(np.testing.assert_array_equal, state.params, params)
    assert int(state.step) == 0
    with pytest.raises(hf_import.HFImportError, match="no tokenizer"):
        hf_import.load_tokenizer(tmp_path / "run" / "checkpoints")


# ---------------------------------------------------------------- against PyTorch / transformers


@pytest.mark.torch
def test_torch_linear_weight_transposed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5)
    flat = lin.weight.detach().numpy().reshape(-1)  # a flattened (features, in) weight
    layer = hf_import.torch_linear(flat.reshape(3, 5), lin.bias.detach().numpy())
    got = np.asarray(jnp.asarray(x.numpy()) @ layer["kernel"] + layer["bias"])
    want = lin(x).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    np.testing.assert_allclose(want, x.numpy() @ w.T + b, atol=1e-6)


@pytest.mark.torch
def test_hf_defaults_match_transformers():
    transformers = pytest.importorskip("transformers")
    classes = {"gpt2": transformers.GPT2Config, "gpt_neo": transformers.GPTNeoConfig}
    classes |= {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}
    assert set(classes) == set(hf_import.FAMILIES)
    for arch, cls in classes.items():
        default = cls()
        declared = getattr(cls, "__dataclass_fields__", {})  # transformers 5's field defaults
        for name, value in hf_import.FAMILIES[arch].defaults.items():
            want = getattr(default, name)
            if want is None and name in declared:  # nulled by __post_init__ (Qwen2's sliding_window when off)
                want = declared[name].default
            assert want == value, (arch, name)


def _randomise(model, torch, seed: int) -> None:
    """Weights large enough that attention is sharp and masking errors would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 if name.endswith("bias") else 0.25
            base = 1.0 if ("ln" in name and name.endswith("weight")) else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=gen))


def _hf_model(kind: str, torch, transformers):
    common = dict(vocab_size=100, bos_token_id=0, eos_token_id=0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, **common,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.GPTNeoConfig(
            hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=32,
            attention_types=[[["global", "local"], 1]], window_size=8, **common,
        )  # fmt: skip
        model = transformers.GPTNeoForCausalLM(cfg)
    _randomise(model, torch, seed=0)
    return model.eval()


@pytest.mark.torch
@pytest.mark.parametrize("kind,fmt", [("gpt2", "safetensors"), ("gpt_neo", "safetensors"), ("gpt_neo", "bin")])
def test_logits_match_transformers(tmp_path, kind, fmt):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = _hf_model(kind, torch, transformers)
    if fmt == "safetensors":
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").is_file()
    else:
        model.config.save_pretrained(tmp_path)
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # includes the tied lm_head
    tokens = np.random.default_rng(1).integers(0, 100, (2, 16))
    with torch.no_grad():
        want = model(torch.as_tensor(tokens)).logits.float().numpy()

    cfg, params = hf_import.load(tmp_path)
    graphdef, _ = model_lib.abstract(cfg)
    got = np.asarray(model_lib.apply(graphdef, params, jnp.asarray(tokens, jnp.int32)))
    assert np.abs(want).max() > 1.0  # the comparison is not between near-zero logits
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    if kind == "gpt_neo":
        assert cfg.attention_layers == ["global", "local"] and cfg.window_size == 8 and not cfg.attn_scale
        no_window = dataclasses.replace(cfg, attention_layers=[], window_size=0)
        no_window_graphdef, _ = model_lib.abstract(no_window)
        other = np.asarray(model_lib.apply(no_window_graphdef, params, jnp.asarray(tokens, jnp.int32)))
        assert np.abs(other[:, 8:] - want[:, 8:]).max() > 1e-2  # the window is exercised
        np.testing.assert_allclose(other[:, :8], want[:, :8], atol=1e-4, rtol=0)


# ---------------------------------------------------------------- growing an imported checkpoint


def _grow_overrides(run_dir, out, pool: str) -> list[str]:
    return [
        f"runner.base_dir={run_dir}",
        "growth_step=0",
        "data=local",
        f"data.train_path={TRAIN_SAMPLE}",
        f"data.valid_path={VALID_SAMPLE}",
        "data.max_train_docs=120",
        "data.max_valid_docs=40",
        "data.eval_sequences=4",
        f"data.cache_dir={out / 'cache'}",
        f"pool={pool}",
        "regimes=[deterministic]",
        f"out_dir={out}",
        "probe_lag=1",
        "continuation_lag=2",
        "runner.eval_every=1",
        "runner.batch_size=4",
        "logger.wandb.mode=disabled",
        "logger.progress=false",
    ]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from growth.config import register_configs

    register_configs()
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        return to_config(compose("config", overrides=overrides))


@pytest.mark.torch
def test_grow_imported_gpt_neo_with_its_own_tokenizer(tmp_path, monkeypatch):
    """TinyStories-1M's layout scaled down: tied, unscaled attention, global/local layers, its own BPE."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    docs = data_lib.read_local_documents(VALID_SAMPLE, DataConfig(cache_dir=str(tmp_path / "c")), 200, "valid")
    tok = data_lib.train_tokenizer(docs, 320, 2)
    eot = tok.token_to_id(data_lib.EOT)
    hf_cfg = transformers.GPTNeoConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, num_layers=2, num_heads=2, max_position_embeddings=24,
        attention_types=[[["global", "local"], 1]], window_size=6, bos_token_id=eot, eos_token_id=eot,
    )  # fmt: skip
    model = transformers.GPTNeoForCausalLM(hf_cfg)
    _randomise(model, torch, seed=1)
    hf_dir, run_dir, out = tmp_path / "hf", tmp_path / "run", tmp_path / "out"
    model.eval().save_pretrained(hf_dir)
    tok.save(str(hf_dir / "tokenizer.json"))

    from experiments import import_hf

    monkeypatch.setattr(sys, "argv", ["import_hf", "--path", str(hf_dir), "--out", str(run_dir)])
    import_hf.main()
    cfg = _compose(_grow_overrides(run_dir, out, "[exact_copy,perturbative,asymmetric_reset,continue_small]"))
    grown = base_run.with_base_run(cfg)  # model.* and the tokenizer come from the base run
    assert grown.model.attention_layers == ["global", "local"] and grown.model.window_size == 6
    assert grown.model.tie_embeddings and not grown.model.attn_scale and grown.model.activation == "gelu_tanh"
    assert grown.data.tokenizer_path == str(run_dir / "tokenizer.json") and grown.data.context == 24

    rows = read_jsonl(runner.run(cfg))
    v = {(r["candidate"], r["lag"], r["metric"]): r["value"] for r in rows}
    for name in ("exact_copy", "perturbative", "asymmetric_reset"):
        assert v[(name, 0, "max_logit_diff")] <= 1e-4, (name, v[(name, 0, "max_logit_diff")])

    # The eval tokens are the imported tokenizer's: the HF tokenizer gives the same ids for the text.
    data = data_lib.load(grown.data)
    assert data.tokenizer().to_str() == tok.to_str()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(hf_dir / "tokenizer.json"))
    valid = data_lib.read_local_documents(VALID_SAMPLE, grown.data, 40, "valid")
    want = [i for d in valid for i in [*fast(d)["input_ids"], eot]]
    flat = data.eval_BxT1.reshape(-1)
    np.testing.assert_array_equal(flat, want[: len(flat)])
    # ... and continue_small's lag-0 loss is what the HF model scores on them.
    with torch.no_grad():
        batch = torch.as_tensor(data.eval_BxT1.astype(np.int64))
        logits = model(batch[:, :-1]).logits
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
    assert float(logits.abs().max()) > 1.0  # the comparison is not between near-zero logits
    assert abs(v[("continue_small", 0, "eval_loss")] - float(ce)) < 1e-4


def test_growing_an_import_without_tokenizer_is_a_clear_error(tmp_path, fake_gpt2):
    path, _ = fake_gpt2
    run_dir = hf_import.import_to_run_dir(path, tmp_path / "run")  # fake_gpt2 has no tokenizer files
    cfg = _compose(_grow_overrides(run_dir, tmp_path / "out", "[exact_copy,continue_small]"))
    with pytest.raises(data_lib.DataError, match="imported checkpoint without a tokenizer.*data.tokenizer_path="):
        runner.run(cfg)
    with pytest.raises(data_lib.DataError, match="no tokenizer in .*nowhere"):
        base_run.with_base_run(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, tokenizer_path="nowhere")))


def test_structured_non_clone_refuses_a_tied_import(tmp_path, fake_gpt2):
    path, _ = fake_gpt2
    model_cfg, params = hf_import.load(path)
    tx = optimizer.make_optimizer(OptimConfig())
    state = train.init_state(params, tx, jax.random.PRNGKey(0))
    with pytest.raises(widen.GrowthError, match="structured_non_clone does not support tied embeddings"):
        widen.grow("structured_non_clone", state, model_cfg, GrowthConfig(), OptimConfig(), jax.random.PRNGKey(1))


def test_gpt2_vocab_and_merges_tokenizer_is_read_and_copied(tmp_path, fake_gpt2):
    path, _ = fake_gpt2
    tok = data_lib.train_tokenizer(["once upon a time a cat sat on the mat."] * 8, 300, 2)
    tok.model.save(str(path))  # GPT-2's slow-tokenizer files: vocab.json + merges.txt
    text = "once upon a time, the cat sat."
    assert hf_import.load_tokenizer(path).encode(text).ids == tok.encode(text).ids
    assert base_run.base_tokenizer(path) == path
    assert data_lib.load_pretrained_tokenizer(path).encode(text).ids == tok.encode(text).ids
    with pytest.raises(hf_import.HFImportError, match="has [0-9]+ tokens but the model's vocab_size is 40"):
        hf_import.import_to_run_dir(path, tmp_path / "run")  # not the tokenizer this model was trained with
