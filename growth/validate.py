"""The typed, checked Config (`to_config`) and the range checks of every numeric field it runs.

Each refusal is one line naming the key, the bad value and a valid one, raised before any compute.
The choice (Enum) checks stay in OmegaConf and the model's shape checks in growth.models.gpt; these add
the ranges, the ordering of the lags, duplicate names, the growth step a preset's pretraining
reaches (check_growth_step, called by the runner, since a pretraining-only command never grows) and
the BPE vocabulary floor (check_bpe_vocab, called by the commands that train a tokenizer).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf, ValidationError

from growth.config import Config
from growth.errors import ConfigValueError

BYTE_LEVEL_MIN_VOCAB = 257  # a byte-level BPE holds the 256 bytes plus at least one merge or special token


def _fail(key: str, value: Any, rule: str, example: Any) -> None:
    raise ConfigValueError(f"{key}={value!r} is invalid: it must be {rule}; e.g. {key}={example}")


def _int_at_least(key: str, value: Any, low: int, example: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(key, value, f"an integer >= {low}", low if example is None else example)


def _optional_int_at_least(key: str, value: Any, low: int, example: int) -> None:
    if value is not None:
        _int_at_least(key, value, low, example)


def _positive(key: str, value: Any, example: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        _fail(key, value, "a finite number > 0", example)


def _non_negative(key: str, value: Any, example: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        _fail(key, value, "a finite number >= 0", example)


def _in_unit(key: str, value: Any, example: float, closed: bool = False) -> None:
    ok = (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0 and (value <= 1 if closed else value < 1)
    )
    if not ok:
        _fail(key, value, "in [0, 1]" if closed else "in [0, 1)", example)


def _no_duplicates(key: str, names: Iterable[Any]) -> None:
    seen: list[str] = []
    for name in names:
        if str(name) in seen:
            unique = list(dict.fromkeys(str(n) for n in names))
            raise ConfigValueError(
                f"{key} names {str(name)!r} twice; each entry must appear once, e.g. {key}=[{','.join(unique)}]"
            )
        seen.append(str(name))


def _not_empty(key: str, names: list | None, fix: str) -> None:
    """An empty list would make a grid with no cells (or cells with no candidate): nothing would run."""
    if names is not None and not names:
        raise ConfigValueError(f"{key}=[] is empty, so the grid would have no cells and nothing would run; {fix}")


def check_values(cfg: Config) -> None:
    """Raise ConfigValueError for the first numeric field out of its range."""
    d, m, o, p, g, r, w = cfg.data, cfg.model, cfg.optim, cfg.pretrain, cfg.growth, cfg.runner, cfg.workers
    _int_at_least("seed", cfg.seed, 0)
    _int_at_least("growth_step", cfg.growth_step, 0, 1000)
    _int_at_least("probe_lag", cfg.probe_lag, 1, 16)
    _int_at_least("continuation_lag", cfg.continuation_lag, 1, 128)
    if cfg.probe_lag > cfg.continuation_lag:
        _fail("probe_lag", cfg.probe_lag, f"<= continuation_lag={cfg.continuation_lag}", cfg.continuation_lag)
    _int_at_least("replicates", cfg.replicates, 1)
    _not_empty(
        "pool", cfg.pool, "leave pool unset for the registry's default pool, or name candidates, e.g. pool=[exact_copy]"
    )
    _no_duplicates("pool", cfg.pool or [])
    _not_empty("regimes", cfg.regimes, "e.g. regimes=[deterministic,stochastic]")
    _no_duplicates("regimes", cfg.regimes)
    # data
    _positive("data.hub_timeout_s", d.hub_timeout_s, 10.0)
    _non_negative("logger.progress_every_s", cfg.logger.progress_every_s, 60.0)
    if cfg.logger.peak_tflops is not None:
        _positive("logger.peak_tflops", cfg.logger.peak_tflops, 989.0)
    _optional_int_at_least("data.max_train_docs", d.max_train_docs, 1, 1000)
    _optional_int_at_least("data.max_valid_docs", d.max_valid_docs, 1, 2000)
    _int_at_least("data.synthetic_train_docs", d.synthetic_train_docs, 1, 6000)
    _int_at_least("data.synthetic_valid_docs", d.synthetic_valid_docs, 1, 400)
    _int_at_least("data.synthetic_seed", d.synthetic_seed, 0)
    _int_at_least("data.vocab_size", d.vocab_size, 1, 4096)  # the BPE floor: check_bpe_vocab
    _int_at_least("data.min_frequency", d.min_frequency, 1, 2)
    _int_at_least("data.context", d.context, 1, 128)
    _int_at_least("data.eval_sequences", d.eval_sequences, 1, 64)
    # model (shapes and head counts: growth.models.gpt.validate_model_config)
    _int_at_least("model.vocab_size", m.vocab_size, 1, 4096)
    _int_at_least("model.mlp_ratio", m.mlp_ratio, 1, 4)
    _int_at_least("model.context", m.context, 1, 128)
    _positive("model.norm_eps", m.norm_eps, 1e-5)
    _positive("model.logit_scale", m.logit_scale, 1.0)
    _in_unit("model.dropout", m.dropout, 0.0)
    _non_negative("model.init_std", m.init_std, 0.02)
    _int_at_least("model.window_size", m.window_size, 0, 64)
    # optimizer
    _positive("optim.lr", o.lr, 3e-3)
    _int_at_least("optim.warmup_steps", o.warmup_steps, 0, 100)
    _int_at_least("optim.decay_steps", o.decay_steps, 1, 2000)
    _in_unit("optim.min_lr_ratio", o.min_lr_ratio, 0.1, closed=True)
    _in_unit("optim.b1", o.b1, 0.9)
    _in_unit("optim.b2", o.b2, 0.95)
    _positive("optim.eps", o.eps, 1e-8)
    _non_negative("optim.weight_decay", o.weight_decay, 0.1)
    _non_negative("optim.clip_norm", o.clip_norm, 1.0)
    _in_unit("optim.muon.beta", o.muon.beta, 0.95)
    _int_at_least("optim.muon.ns_steps", o.muon.ns_steps, 1, 5)
    _non_negative("optim.muon.consistent_rms", o.muon.consistent_rms, 0.2)
    # pretraining
    _int_at_least("pretrain.steps", p.steps, 1, 2000)
    _int_at_least("pretrain.batch_size", p.batch_size, 1, 16)
    for step in p.checkpoint_steps:
        _int_at_least("pretrain.checkpoint_steps[]", step, 1, p.steps)
    _int_at_least("pretrain.save_every", p.save_every, 1, 250)
    _int_at_least("pretrain.eval_every", p.eval_every, 1, 100)
    _int_at_least("pretrain.eval_chunk", p.eval_chunk, 1, 32)
    _int_at_least("pretrain.log_every", p.log_every, 1, 50)
    # growth
    _int_at_least("growth.k", g.k, 2)
    _int_at_least("growth.rewarm_steps", g.rewarm_steps, 1 if g.schedule == "rewarm" else 0, 16)
    _positive("growth.perturbative.snr", g.perturbative.snr, 10.0)
    _int_at_least("growth.asymmetric_reset.rewarm_steps", g.asymmetric_reset.rewarm_steps, 0)
    _non_negative("growth.structured.mlp_split_scale", g.structured.mlp_split_scale, 0.5)
    _int_at_least("growth.depth.n_new", g.depth.n_new, 1)
    for pos in g.depth.positions:
        if not (isinstance(pos, int) and 0 <= pos <= m.n_layers):
            _fail("growth.depth.positions[]", pos, f"a block index in 0..model.n_layers={m.n_layers}", m.n_layers)
    # runner and workers
    _int_at_least("runner.eval_every", r.eval_every, 1, 8)
    _int_at_least("runner.batch_size", r.batch_size, 1, 16)
    _in_unit("runner.stochastic_dropout", r.stochastic_dropout, 0.1)
    _int_at_least("runner.eval_chunk", r.eval_chunk, 1, 8)
    _int_at_least("runner.steps_per_dispatch", r.steps_per_dispatch, 1, 16)
    _positive("workers.heartbeat_s", w.heartbeat_s, 30.0)
    _positive("workers.poll_s", w.poll_s, 10.0)
    if not (isinstance(w.stale_s, int | float) and w.stale_s > 2 * w.heartbeat_s):
        _fail("workers.stale_s", w.stale_s, f"> 2 * workers.heartbeat_s={w.heartbeat_s}", 20 * w.heartbeat_s)
    # grid cells
    for i, cell in enumerate(cfg.grid):
        key = f"grid[{i}]"
        if cell.seed is not None:
            _int_at_least(f"{key}.seed", cell.seed, 0)
        if cell.growth_step is not None:
            _int_at_least(f"{key}.growth_step", cell.growth_step, 0, 1000)
        if cell.replicates is not None:
            _int_at_least(f"{key}.replicates", cell.replicates, 1)
        if cell.pool is not None:
            _not_empty(f"{key}.pool", cell.pool, f"leave {key}.pool unset for the top-level pool, or name candidates")
            _no_duplicates(f"{key}.pool", cell.pool)


def check_bpe_vocab(cfg: Config) -> None:
    """A byte-level BPE trained on the corpus needs >= 257 tokens. Checked by the commands that train one
    (pretraining, growth from a pretraining run) before any compute, not in to_config: the saved config of
    an imported checkpoint (growth.interop.hf_import) holds its model's own, possibly smaller, vocabulary."""
    if cfg.data.tokenizer_path is None and not cfg.runner.base_dir:
        _int_at_least("data.vocab_size", cfg.data.vocab_size, BYTE_LEVEL_MIN_VOCAB, 4096)


def check_growth_step(cfg: Config) -> None:
    """Growing from past `pretrain.steps` would quietly extend a shared pretraining run: refuse it."""
    if cfg.runner.base_dir or cfg.growth_step <= cfg.pretrain.steps:
        return
    saved = sorted({s for s in cfg.pretrain.checkpoint_steps if s <= cfg.pretrain.steps} | {cfg.pretrain.steps})
    raise ConfigValueError(
        f"growth_step={cfg.growth_step} is past pretrain.steps={cfg.pretrain.steps}, so growing from it would"
        f" extend this preset's pretraining; grow from a saved step (e.g. growth_step={saved[-1]}; saved:"
        f" {saved}), or to extend it on purpose set pretrain.steps={cfg.growth_step} as well"
    )


def to_config(cfg: DictConfig | Config) -> Config:
    """A typed `Config` validated against the schema, from a Hydra DictConfig or a Config built in code."""
    try:
        source = OmegaConf.create(dataclasses.asdict(cfg)) if isinstance(cfg, Config) else cfg
        merged = OmegaConf.merge(OmegaConf.structured(Config), source)
    except ValidationError as e:
        raise ConfigValueError(f"{e.full_key}: {str(e.msg).splitlines()[0]}") from None
    out: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    check_values(out)  # every numeric field's range, before any compute
    return out
