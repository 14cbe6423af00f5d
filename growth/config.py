"""Typed configuration schema, registered with Hydra's ConfigStore behind the YAML in `configs/`.

Every default of the harness lives here or in the YAML: library code reads fields, never guesses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, ValidationError

# String choices are Enums: OmegaConf rejects an unknown value when the config is composed, naming
# the field and the valid values. StrEnum members compare equal to their strings and hash (in
# config_hash) as their strings, so run directories do not depend on this typing.


class DataSource(StrEnum):
    synthetic = "synthetic"
    local = "local"
    tinystories = "tinystories"


class Norm(StrEnum):
    layernorm = "layernorm"
    rmsnorm = "rmsnorm"


class Activation(StrEnum):
    gelu_tanh = "gelu_tanh"
    gelu = "gelu"
    relu = "relu"


# OmegaConf matches YAML values to member *names*, so names equal values; "global" and "continue" are
# Python keywords and need the functional form.
AttentionKind = StrEnum("AttentionKind", {"global": "global", "local": "local"})  # type: ignore[misc]


class Decay(StrEnum):
    cosine = "cosine"
    constant = "constant"


# global: clip by the gradient's global norm; clone_consistent: weight each tensor's squared norm by
# c_out / c_in of its growth map, the norm the small model would see (docs/strategies.md).
ClipMode = StrEnum("ClipMode", {"global": "global", "clone_consistent": "clone_consistent"})  # type: ignore[misc]


class WandbMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class Noise(StrEnum):
    antithetic = "antithetic"
    iid = "iid"


class DepthInit(StrEnum):
    fresh = "fresh"
    identity = "identity"
    copy = "copy"


Schedule = StrEnum("Schedule", {"continue": "continue", "rewarm": "rewarm", "restart": "restart"})  # type: ignore[misc]


class LrCorrection(StrEnum):
    none = "none"
    fan_in = "fan_in"


class Regime(StrEnum):
    deterministic = "deterministic"
    stochastic = "stochastic"


class ComputeDtype(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"


class PoolStep(StrEnum):
    map = "map"
    vmap = "vmap"


@dataclass
class DataConfig:
    source: DataSource = DataSource.synthetic
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
    cache_dir: str = ".cache"  # tokenizer, token files and the datasets cache
    # Characters of training text (from the start of the stream) the BPE is trained on: bounds the
    # tokenizer's memory on a large corpus (100M characters: ~5% of the full TinyStories).
    tokenizer_sample_chars: int = 100_000_000
    encode_chunk_docs: int = 8192  # documents encoded at once into the token file (bounds memory)
    progress: bool = True  # tokenization progress bar (documents, tokens/s), quiet when stderr is no terminal
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
    norm: Norm = Norm.layernorm
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    # Tied unembedding multiplier: width growth of a tied model divides it by k (docs/strategies.md).
    logit_scale: float = 1.0
    dropout: float = 0.0
    init_std: float = 0.02
    dtype: str = "float32"
    # Dtype of the matmuls and activations; parameters and Adam's moments stay float32 (master
    # weights). bfloat16: mixed precision (docs/scaling.md gives its preservation tolerance).
    compute_dtype: ComputeDtype = ComputeDtype.float32
    # Options an imported checkpoint needs (growth.interop.hf_import); the defaults are the SPEC model.
    activation: Activation = Activation.gelu_tanh  # gelu_tanh (jax.nn.gelu, = HF gelu_new) | gelu (exact erf)
    attn_scale: bool = True  # divide attention scores by sqrt(head_dim); GPT-Neo uses false
    attention_layers: list[AttentionKind] = field(default_factory=list)  # per block; empty = all global
    window_size: int = 0  # local blocks see the last window_size positions (themselves included)


@dataclass
class OptimConfig:
    lr: float = 3e-3
    warmup_steps: int = 100
    decay: Decay = Decay.cosine
    decay_steps: int = 2000  # cosine horizon (in schedule steps)
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0  # gradient-norm clip; 0 disables
    clip_mode: ClipMode = ClipMode["global"]  # which norm a grown model is clipped by (docs/strategies.md)


@dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 16
    checkpoint_steps: list[int] = field(default_factory=lambda: [1000, 2000])
    save_every: int = 250  # extra checkpoints so a killed run loses little
    eval_every: int = 100
    eval_chunk: int = 32  # held-out sequences per compiled evaluation call
    log_every: int = 50


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.offline
    project: str = "width-growth"
    entity: str | None = None


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress: bool = True  # progress bars (they stay quiet when stderr is not a terminal)


@dataclass
class PerturbativeConfig:
    noise: Noise = Noise.antithetic
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
    init: DepthInit = DepthInit.identity  # the deepen_* candidates fix this


@dataclass
class GrowthConfig:
    k: int = 2  # width factor: d_model, heads and MLP width are multiplied by k
    schedule: Schedule = Schedule["continue"]
    rewarm_steps: int = 16  # schedule=rewarm: linear re-warmup length
    lr_correction: LrCorrection = LrCorrection.none  # fan_in: Adam direction of cloned fan-in tensors / c_in
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
    eval_chunk: int = 8  # held-out sequences per compiled evaluation call (8: fastest on CPU, docs/performance.md)
    # How one compiled program trains and evaluates the stacked candidates: "map" loops over them inside
    # the program (lax.map; fastest on CPU, docs/performance.md), "vmap" batches them (wider ops; try it
    # on a GPU).
    pool_step: PoolStep = PoolStep.map
    base_dir: str | None = None  # grow from this run directory (e.g. an imported model) instead of pretraining


@dataclass
class MeshConfig:
    # Devices on the data-parallel axis (growth.mesh): 1 = one device (the plain path), 0 = all devices
    # of the job; the training and evaluation batches must divide by it.
    devices: int = 1
    fsdp: bool = False  # split parameters and Adam's moments over the axis too, instead of replicating them
    # Call jax.distributed.initialize() when the job runs several processes (SLURM tasks, JAX_* vars).
    distributed: bool = True


@dataclass
class GridCell:
    seed: int | None = None
    growth_step: int | None = None
    pool: list[str] | None = None
    replicates: int | None = None
    lr_correction: LrCorrection | None = None
    clip_mode: ClipMode | None = None


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
    regimes: list[Regime] = field(default_factory=lambda: [Regime.deterministic, Regime.stochastic])
    probe_lag: int = 16  # lag of the cheap probe
    continuation_lag: int = 128  # lag of the continuation that ranks candidates
    # Replicates per cell: replicate r changes the continuation's batch order and dropout keys, matched
    # across the candidates; the pretrained small model (the seed) stays the same.
    replicates: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)  # devices of a data-parallel run (docs/scaling.md)
    # Grid driven by experiments.reproduce: one cell per entry; unset fields take the top-level value.
    grid: list[GridCell] = field(default_factory=list)


def register_configs() -> None:
    """Register the schema so every YAML file is validated against these dataclasses."""
    ConfigStore.instance().store(name="config_schema", node=Config)


class ConfigValueError(ValueError):
    """A config value the schema rejects; the message names the key and the valid values."""


def check_choice(key: str, value: Any, choices: type[StrEnum]) -> None:
    """For configs built in code (Hydra validates composed ones): `value` must be one of `choices`."""
    valid = [m.value for m in choices]
    if value not in valid:
        raise ConfigValueError(f"{key}={value!r} is unknown; use one of {', '.join(valid)}")


def to_config(cfg: DictConfig | Config) -> Config:
    """A typed `Config` validated against the schema, from a Hydra DictConfig or a Config built in code."""
    try:
        source = OmegaConf.create(dataclasses.asdict(cfg)) if isinstance(cfg, Config) else cfg
        merged = OmegaConf.merge(OmegaConf.structured(Config), source)
    except ValidationError as e:
        raise ConfigValueError(f"{e.full_key}: {str(e.msg).splitlines()[0]}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def as_dict(obj: Any) -> dict:
    """Plain dict of a config dataclass, for JSON and wandb."""
    return dataclasses.asdict(obj)


def config_hash(obj: Any, length: int = 10) -> str:
    """Stable short hash of a config (dataclass or dict)."""
    payload = as_dict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
