"""HF export (growth/interop/hf_export.py): export -> transformers logits equal ours (fp32, <= 1e-4) for an
imported-then-grown Llama (GQA) and Qwen2 and a natively pretrained GPT; export -> import gives the same
state; what transformers cannot represent is refused in one line."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import export_hf
from growth import widen
from growth.config import GrowthConfig, ModelConfig, OptimConfig
from growth.experiment import pretrain
from growth.interop import hf_export, hf_import
from growth.models import gpt as model_lib
from growth.training import optimizer, train
from growth.widen.trees import flatten
from tests.test_hf_llama import TOKENS, _hf_logits, _hf_model, _ours

pytestmark = pytest.mark.torch


def _grown(tmp_path, kind: str, candidate: str, **kw):
    """(small HF model, grown ModelConfig, grown params) of an imported `kind` model widened by k=2."""
    model = _hf_model(kind, **kw)
    model.save_pretrained(tmp_path / "hf")
    cfg, params = hf_import.load(tmp_path / "hf")
    state = train.init_state(params, optimizer.make_optimizer(OptimConfig()), jax.random.PRNGKey(0))
    g = widen.grow(candidate, state, cfg, GrowthConfig(k=2), OptimConfig(), jax.random.PRNGKey(1))
    return model, g.model_cfg, g.state.params


def _trained(params, seed: int = 0):
    """Params moved as training would move them: the copies of a unit differ, so a layout error shows."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + jnp.asarray(0.05 * rng.standard_normal(x.shape), x.dtype), params)


def _reloaded(out):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(out, dtype="float32").eval()


def _same_state(out, cfg: ModelConfig, params) -> None:
    """Re-importing the export gives the same config (up to training-only fields) and identical tensors."""
    back_cfg, back = hf_import.load(out)
    assert hf_export._normal(back_cfg) == hf_export._normal(cfg)
    ours, theirs = flatten(params), flatten(back)
    assert set(ours) == set(theirs)
    for path, value in ours.items():
        np.testing.assert_array_equal(np.asarray(theirs[path]), np.asarray(value, np.float32), err_msg=path)


@pytest.mark.parametrize("kind,kv", [("llama", 2), ("qwen2", 2)])
def test_imported_then_grown_model_exports_to_transformers(tmp_path, kind, kv):
    small, cfg, params = _grown(tmp_path, kind, "perturbative", num_key_value_heads=kv)
    params = _trained(params)
    assert cfg.d_model == 64 and cfg.n_kv_heads == 4 and cfg.n_heads == 8  # GQA: 8 query heads over 4 kv heads
    out = hf_export.export(cfg, params, tmp_path / "export")
    model = _reloaded(out)
    assert type(model).__name__ == ("Qwen2ForCausalLM" if kind == "qwen2" else "LlamaForCausalLM")
    assert model.config.num_key_value_heads == 4 and model.config.hidden_size == 64
    want, theirs = _ours(cfg, params, TOKENS), _hf_logits(model, TOKENS)
    diff = float(np.abs(theirs - want).max())
    print(f"{kind} (GQA) grown k=2 by perturbative, then moved: max |logit diff| transformers vs ours {diff:.1e}")
    assert np.abs(want).max() > 1.0 and diff <= 1e-4
    # the wide model computes another function than the small one: its new units are all in use
    assert np.abs(want - _hf_logits(small, TOKENS)).max() > 1e-3
    _same_state(out, cfg, params)


def test_tied_model_with_scaled_logits_is_written_untied(tmp_path):
    _, cfg, params = _grown(tmp_path, "llama", "exact_copy", tie_word_embeddings=True)
    assert cfg.tie_embeddings and cfg.logit_scale == 0.5  # width growth of a tied head halves its scale
    out = hf_export.export(cfg, params, tmp_path / "export")
    model = _reloaded(out)
    assert not model.config.tie_word_embeddings
    diff = float(np.abs(_hf_logits(model, TOKENS) - _ours(cfg, params, TOKENS)).max())
    print(f"tied llama grown k=2 (logit_scale 0.5, exported untied): max |logit diff| {diff:.1e}")
    assert diff <= 1e-4


def test_pretrained_gpt_exports_through_the_cli(tmp_path, tiny_cfg):
    """A natively trained GPT: `experiments.export_hf run=... out=...` -> GPT2LMHeadModel and its tokenizer."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = dataclasses.replace(
        tiny_cfg, pretrain=dataclasses.replace(tiny_cfg.pretrain, steps=10, checkpoint_steps=[10])
    )
    run_dir = pretrain.run(cfg)
    out = tmp_path / "export"
    export_hf.main([f"run={run_dir}", f"out={out}"])
    model = _reloaded(out)
    assert type(model).__name__ == "GPT2LMHeadModel"
    state = train.load_state(run_dir, 10, cfg)[2]
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, (2, cfg.model.context))
    graphdef, _ = model_lib.abstract(cfg.model)
    want = np.asarray(model_lib.apply(graphdef, state.params, jnp.asarray(tokens, jnp.int32)))
    with torch.no_grad():
        theirs = model(torch.as_tensor(tokens)).logits.numpy()
    diff = float(np.abs(theirs - want).max())
    print(f"pretrained gpt (10 steps): max |logit diff| transformers vs ours {diff:.1e}")
    assert want.std() > 0.05 and diff <= 1e-4  # 10 steps of training: logits of order 0.1 to 1
    _same_state(out, cfg.model, state.params)
    # the tokenizer travels: AutoTokenizer gives the ids the harness's own tokenizer gives
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(out / "tokenizer.json"))
    fast = transformers.AutoTokenizer.from_pretrained(out)
    text = "once upon a time there was a little dog."
    assert fast(text)["input_ids"] == ours.encode(text).ids
    assert model.config.eos_token_id == ours.token_to_id("<|endoftext|>") == fast.eos_token_id


def test_candidate_is_grown_by_the_cli(tmp_path, tiny_cfg):
    cfg = dataclasses.replace(
        tiny_cfg, pretrain=dataclasses.replace(tiny_cfg.pretrain, steps=10, checkpoint_steps=[10])
    )
    run_dir = pretrain.run(cfg)
    export_hf.main([f"run={run_dir}", f"out={tmp_path / 'e'}", "candidate=exact_copy", "growth.k=3"])
    back, _ = hf_import.load(tmp_path / "e")
    assert back.d_model == 3 * cfg.model.d_model
    with pytest.raises(
        SystemExit,
        match=r"error: msg.s growth masks are not yet at 1: blocks/0/attn/mask_heads \(2 of 4 units below 1\)",
    ):
        export_hf.main([f"run={run_dir}", f"out={tmp_path / 'm'}", "candidate=msg"])
    with pytest.raises(SystemExit, match="error: .*no checkpoint at step 7"):
        export_hf.main([f"run={run_dir}", f"out={tmp_path / 'x'}", "step=7"])


def test_msg_masks_at_one_are_dropped(tmp_path):
    small = ModelConfig(vocab_size=40, d_model=16, n_heads=2, n_layers=1, context=8)
    state = train.init_state(
        model_lib.build(small, jax.random.PRNGKey(0))[1], optimizer.make_optimizer(OptimConfig()), jax.random.PRNGKey(0)
    )
    g = widen.grow("msg", state, small, GrowthConfig(k=2), OptimConfig(), jax.random.PRNGKey(1))
    ones = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.ones_like(x) if str(getattr(p[-1], "key", "")).startswith("mask_") else x, g.state.params
    )
    plain_cfg, plain = hf_export.without_masks(g.model_cfg, ones)
    assert not plain_cfg.growth_masks and not any("mask" in p for p in flatten(plain))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 40, (2, 8)), jnp.int32)
    masked = model_lib.apply(model_lib.abstract(g.model_cfg)[0], ones, tokens)
    np.testing.assert_allclose(model_lib.apply(model_lib.abstract(plain_cfg)[0], plain, tokens), masked, atol=1e-5)


def test_what_transformers_cannot_hold_is_refused_in_one_line(tmp_path):
    cfg = ModelConfig(vocab_size=40, d_model=16, n_heads=2, n_layers=1, context=8, norm="rmsnorm")  # type: ignore[arg-type]
    params = model_lib.build(cfg, jax.random.PRNGKey(0))[1]
    with pytest.raises(hf_export.HFExportError) as e:
        hf_export.export(cfg, params, tmp_path / "a")
    assert "GPT2LMHeadModel's config.json cannot represent model.norm='rmsnorm'" in str(e.value)
    assert "\n" not in str(e.value) and not (tmp_path / "a").exists()
    neo = ModelConfig(vocab_size=40, d_model=16, n_heads=2, n_layers=1, context=8, attn_scale=False)
    params = model_lib.build(neo, jax.random.PRNGKey(0))[1]
    params["blocks"][0]["attn"]["q"]["bias"] = params["blocks"][0]["attn"]["q"]["bias"] + 0.1
    with pytest.raises(hf_export.HFExportError, match="blocks/0/attn/q/bias holds nonzero biases.*GPTNeoForCausalLM"):
        hf_export.export(neo, params, tmp_path / "b")
