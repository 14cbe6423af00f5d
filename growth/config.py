"""Typed configuration schema, registered with Hydra's ConfigStore behind the YAML in `configs/`.

Every default of the harness lives here or in the YAML: library code reads fields, never guesses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf


@dataclass
class DataConfig:
    source: str = "synthetic"  # synthetic | local | tinystories
    train_path: str | None = None  # local: .txt (<|endoftext|> or blank-line layout), .jsonl, .parquet
    valid_path: str | None = None
    hub_name: str = "roneneldan/TinyStories"  # tinystories: the hub dataset
    hub_timeout_s: float = 10.0  # tinystories: how long to wait for the hub before failing
    max_train_docs: int | None = None  # cap on training documents (hub data is large)
    max_valid_docs: int | None = 2000
    lowercase: bool = False  # the shared TinyStories sample is lowercased; match it for hub data
    synthetic_train_docs: int = 6000  # synthetic: number of generated stories
    synthetic_valid_docs: int = 400
    synthetic_seed: int = 1234
    vocab_size: int = 4096  # byte-level BPE vocabulary, trained on the training text
    min_frequency: int = 2
    context: int = 128  # tokens a model sees; sequences are context + 1 long
    eval_sequences: int = 64  # fixed held-out evaluation set size (sequences)
    cache_dir: str = ".cache"  # tokenizer, token arrays and the datasets cache
    # A saved tokenizer (tokenizer.json, or a directory with it or vocab.json + merges.txt) to use instead
    # of training a BPE; growing an imported checkpoint sets it from the base run (hf_import.with_base_run).
    tokenizer_path: str | None = None


@dataclass
class ModelConfig:
    vocab_size: int = 4096  # must equal data.vocab_size (checked at build time)
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 4
    mlp_ratio: int = 4
    context: int = 128
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    # Tied unembedding multiplier: width growth of a tied model divides it by k (docs/strategies.md).
    logit_scale: float = 1.0
    dropout: float = 0.0
    init_std: float = 0.02
    dtype: str = "float32"
    # Options an imported checkpoint needs (growth.hf_import); the defaults are the SPEC model.
    activation: str = "gelu_tanh"  # gelu_tanh (jax.nn.gelu, = HF gelu_new) | gelu (exact erf) | relu
    attn_scale: bool = True  # divide attention scores by sqrt(head_dim); GPT-Neo uses false
    attention_layers: list[str] = field(default_factory=list)  # per block: global | local; empty = all global
    window_size: int = 0  # local blocks see the last window_size positions (themselves included)


@dataclass
class OptimConfig:
    lr: float = 3e-3
    warmup_steps: int = 100
    decay: str = "cosine"  # cosine | constant
    decay_steps: int = 2000  # cosine horizon (in schedule steps)
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0  # global-norm clip; 0 disables


@dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 16
    checkpoint_steps: list[int] = field(default_factory=lambda: [1000, 2000])
    save_every: int = 250  # extra checkpoints so a killed run loses little
    eval_every: int = 100
    log_every: int = 50


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "width-growth"
    entity: str | None = None


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress: bool = True  # progress bars (they stay quiet when stderr is not a terminal)


@dataclass
class PerturbativeConfig:
    noise: str = "antithetic"  # antithetic | iid
    snr: float = 10.0  # per-tensor signal-to-noise ratio: noise std = rms(weight) / snr


@dataclass
class AsymmetricResetConfig:
    rewarm_steps: int = 0  # linear re-warmup of the reset units' updates; 0 = off


@dataclass
class StructuredConfig:
    mlp_split_scale: float = 0.5  # size of the asymmetric split R_a of MLP output rows, relative to W/k


@dataclass
class DepthConfig:
    n_new: int = 1  # blocks to add (depth-growth candidates deepen_identity / deepen_copy)
    # Where each new block goes, as an index into the small model's blocks: p puts it before small
    # block p, n_layers appends it. Empty: all new blocks are appended. Otherwise one entry per block.
    positions: list[int] = field(default_factory=list)
    init: str = "identity"  # fresh | identity | copy (the deepen_* candidates fix this)


@dataclass
class GrowthConfig:
    k: int = 2  # width factor: d_model, heads and MLP width are multiplied by k
    strategy: str = "exact_copy"  # candidate for single-candidate commands
    schedule: str = "continue"  # continue | rewarm | restart
    rewarm_steps: int = 16  # schedule=rewarm: linear re-warmup length
    lr_correction: str = "none"  # none | fan_in
    perturbative: PerturbativeConfig = field(default_factory=PerturbativeConfig)
    asymmetric_reset: AsymmetricResetConfig = field(default_factory=AsymmetricResetConfig)
    structured: StructuredConfig = field(default_factory=StructuredConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)


@dataclass
class RunnerConfig:
    eval_every: int = 8
    batch_size: int = 16
    stochastic_dropout: float = 0.1
    shuffle_stochastic: bool = False  # stochastic regime: draw a different (still matched) batch order
    eval_chunk: int = 8  # held-out sequences per compiled evaluation call
    # How one compiled step trains the stacked candidates: "map" loops over them inside the program
    # (lax.map; fastest on CPU, docs/performance.md), "vmap" batches them (wider ops; try it on a GPU).
    pool_step: str = "map"
    base_dir: str | None = None  # grow from this run directory (e.g. an imported model) instead of pretraining


@dataclass
class Config:
    name: str = "default"  # experiment name; part of the run directory
    seed: int = 0
    out_dir: str = "runs"
    growth_step: int = 1000  # pretraining step the wide candidates are grown from
    pool: list[str] = field(
        default_factory=lambda: [
            "exact_copy",
            "perturbative",
            "asymmetric_reset",
            "structured_non_clone",
            "scratch_wide",
            "continue_small",
        ]
    )
    regimes: list[str] = field(default_factory=lambda: ["deterministic", "stochastic"])
    probe_lag: int = 16  # lag of the cheap probe
    continuation_lag: int = 128  # lag of the continuation that ranks candidates
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # Grid driven by experiments.reproduce: list of {seed, growth_step, pool?} cells.
    grid: list[Any] = field(default_factory=list)


def register_configs() -> None:
    """Register the schema so every YAML file is validated against these dataclasses."""
    ConfigStore.instance().store(name="config_schema", node=Config)


def to_config(cfg: DictConfig | Config) -> Config:
    """A typed `Config` from a Hydra DictConfig (validated against the schema)."""
    if isinstance(cfg, Config):
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def as_dict(obj: Any) -> dict:
    """Plain dict of a config dataclass, for JSON and wandb."""
    return dataclasses.asdict(obj)


def config_hash(obj: Any, length: int = 10) -> str:
    """Stable short hash of a config (dataclass or dict)."""
    payload = as_dict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
