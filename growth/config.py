"""Typed configuration schema, registered with Hydra's ConfigStore behind the YAML in `configs/`.

Every default of the harness lives here or in the YAML: library code reads fields, never guesses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from growth.errors import ConfigValueError

__all__ = ["ConfigValueError"]  # defined in growth/errors.py, imported from here everywhere

# String choices are Enums: OmegaConf rejects an unknown value when the config is composed, naming
# the field and the valid values. StrEnum members compare equal to their strings and hash (in
# config_hash) as their strings, so run directories do not depend on this typing.


class DataSource(StrEnum):
    synthetic = "synthetic"
    local = "local"
    tinystories = "tinystories"
    hub = "hub"  # any Hugging Face dataset (data.hub_name, hub_config, hub_split, hub_text_field)


class Family(StrEnum):
    gpt = "gpt"  # GPT-2 block: learned positions, GELU MLP, full multi-head attention, biases
    llama = "llama"  # Llama / Qwen2 block: RoPE, SwiGLU, grouped-query attention, RMSNorm (SPEC 2b)


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


class OptimName(StrEnum):
    adamw = "adamw"  # AdamW on every tensor
    muon = "muon"  # Muon on the hidden matrices, AdamW on the rest (growth/training/muon.py)


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
    # where the text comes from: the embedded procedural corpus, local files or the hub
    source: DataSource = DataSource.synthetic
    train_path: str | None = None  # local: .txt (<|endoftext|> or blank-line layout), .jsonl, .parquet
    valid_path: str | None = None  # local: held-out file, same formats as train_path
    # tinystories / hub: the dataset (hub: a hub id, or a local directory written by Dataset.save_to_disk
    # or holding parquet / jsonl files, read offline)
    hub_name: str = "roneneldan/TinyStories"
    hub_timeout_s: float = 10.0  # tinystories / hub: how long to wait for the hub before failing
    hub_config: str | None = None  # hub: the dataset's configuration (e.g. sample-10BT of FineWeb-Edu)
    hub_split: str = "train"  # hub: the split streamed for training
    # hub: the held-out split; null = the first max_valid_docs documents of hub_split (which training skips)
    hub_valid_split: str | None = "validation"
    hub_text_field: str = "text"  # hub: the column holding each document's text
    max_train_docs: int | None = None  # cap on training documents (hub data is large)
    max_valid_docs: int | None = 2000  # cap on held-out documents
    lowercase: bool = False  # the shared TinyStories sample is lowercased; match it for hub data
    synthetic_train_docs: int = 6000  # synthetic: number of generated stories
    synthetic_valid_docs: int = 400  # synthetic: number of generated held-out stories
    synthetic_seed: int = 1234  # synthetic: seed of the generator
    vocab_size: int = 4096  # byte-level BPE vocabulary, trained on the training text
    min_frequency: int = 2  # BPE: minimum count of a merged pair
    context: int = 128  # tokens a model sees; sequences are context + 1 long
    eval_sequences: int = 64  # fixed held-out evaluation set size (sequences)
    cache_dir: str = ".cache"  # tokenizer, token files and the datasets cache
    # Characters of training text (from the start of the stream) the BPE is trained on: bounds the
    # tokenizer's memory on a large corpus (100M characters: ~5% of the full TinyStories).
    tokenizer_sample_chars: int = 100_000_000
    encode_chunk_docs: int = 8192  # documents encoded at once into the token file (bounds memory)
    progress: bool = True  # tokenization progress bar (documents, tokens/s), quiet when stderr is no terminal
    # A saved tokenizer (tokenizer.json, or a directory with it or vocab.json + merges.txt) to use instead
    # of training a BPE; growing an imported checkpoint sets it from the base run (growth.experiment.base_run.with_base_run).
    tokenizer_path: str | None = None


@dataclass
class ModelConfig:
    vocab_size: int = 4096  # must equal data.vocab_size (checked at build time)
    d_model: int = 64  # residual width of the small model
    n_heads: int = 4  # attention heads (head_dim = d_model / n_heads)
    n_layers: int = 4  # transformer blocks
    mlp_ratio: int = 4  # MLP hidden width / d_model
    context: int = 128  # positions the model sees (must equal data.context)
    norm: Norm = Norm.layernorm  # pre-norm type of every block and the final norm
    norm_eps: float = 1e-5  # epsilon of the norms
    tie_embeddings: bool = False  # share the token embedding with the unembedding
    # Tied unembedding multiplier: width growth of a tied model divides it by k (docs/strategies.md).
    logit_scale: float = 1.0
    dropout: float = 0.0  # dropout on attention probabilities and residual branches (the regime sets it in growth)
    init_std: float = 0.02  # std of the normal init of kernels and embeddings
    dtype: str = "float32"  # parameter dtype
    # Dtype of the matmuls and activations; parameters and Adam's moments stay float32 (master
    # weights). bfloat16: mixed precision (docs/scaling.md gives its preservation tolerance).
    compute_dtype: ComputeDtype = ComputeDtype.float32
    # msg (growth/widen/msg.py): the model holds per-unit masks (new residual dims, heads, MLP units)
    # that ramp in the train step; norms use mask-weighted statistics. Small and ordinary models: false.
    growth_masks: bool = False
    # Options an imported checkpoint needs (growth.interop.hf_import); the defaults are the SPEC model.
    activation: Activation = Activation.gelu_tanh  # gelu_tanh (jax.nn.gelu, = HF gelu_new) | gelu (exact erf)
    attn_scale: bool = True  # divide attention scores by sqrt(head_dim); GPT-Neo uses false
    attention_layers: list[AttentionKind] = field(default_factory=list)  # per block; empty = all global
    window_size: int = 0  # local blocks see the last window_size positions (themselves included)
    # The block family (growth/models/family.py); the fields below are read by the llama family only.
    family: Family = Family.gpt
    n_kv_heads: int | None = None  # llama: key/value heads, dividing n_heads (1 = multi-query); None = n_heads
    mlp_hidden: int | None = None  # llama: SwiGLU hidden width (HF intermediate_size); None = mlp_ratio * d_model
    rope_theta: float = 10000.0  # llama: RoPE base (rotate-half layout, pairs (j, j + head_dim / 2))
    qkv_bias: bool = False  # llama: biases on q/k/v (Qwen2); the family has no other biases


@dataclass
class MuonConfig:
    """Muon's own settings (growth/training/muon.py); read only with optim.name=muon."""

    beta: float = 0.95  # momentum of the gradient's exponential average (Keller Jordan's default)
    nesterov: bool = True  # orthogonalise the Nesterov look-ahead of the momentum, as optax does
    ns_steps: int = 5  # Newton-Schulz iterations of the orthogonalisation (optax's quintic coefficients)
    # Update RMS of every Muon matrix: consistent_rms * sqrt(max(fan_in, fan_out)) times the orthogonalised
    # momentum, so its RMS matches AdamW's and one lr, schedule and weight decay serve both halves
    # (Liu et al. 2025, "Muon is scalable"); 0 = optax's width scaling sqrt(max(1, fan_out / fan_in)).
    consistent_rms: float = 0.2


@dataclass
class OptimConfig:
    # which update rule: adamw on every tensor, or muon on the hidden matrices and AdamW on the rest
    name: OptimName = OptimName.adamw
    lr: float = 3e-3  # peak learning rate
    warmup_steps: int = 100  # linear warmup steps
    decay: Decay = Decay.cosine  # schedule after warmup
    decay_steps: int = 2000  # cosine horizon (in schedule steps)
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.1  # decoupled weight decay (AdamW)
    clip_norm: float = 1.0  # gradient-norm clip; 0 disables
    clip_mode: ClipMode = ClipMode["global"]  # which norm a grown model is clipped by (docs/strategies.md)
    muon: MuonConfig = field(default_factory=MuonConfig)  # optim.name=muon: Muon's settings


def optim_identity(optim: OptimConfig) -> dict:
    """The optimizer config as run identities hash it: an AdamW config without the Muon fields, so the
    hashes (run directories, finished cells) of every run made before Muon existed are unchanged."""
    out = dataclasses.asdict(optim)
    if optim.name == OptimName.adamw:
        out.pop("name")
        out.pop("muon")
    return out


@dataclass
class PretrainConfig:
    steps: int = 2000  # pretraining steps of the small model
    batch_size: int = 16  # sequences per pretraining step
    # steps whose full state is saved for growth
    checkpoint_steps: list[int] = field(default_factory=lambda: [1000, 2000])
    save_every: int = 250  # extra checkpoints so a killed run loses little
    eval_every: int = 100  # held-out evaluation period (steps)
    eval_chunk: int = 32  # held-out sequences per compiled evaluation call
    log_every: int = 50  # training-loss log period (steps)


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.offline  # wandb mode; offline writes local runs only
    project: str = "width-growth"  # wandb project
    entity: str | None = None  # wandb entity (team); None = the default


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)  # wandb settings
    progress: bool = True  # progress bars (they stay quiet when stderr is not a terminal)
    progress_every_s: float = 60.0  # without a terminal (SLURM, CI): one progress line this often
    # Peak FLOP/s of one device in TFLOP/s for the MFU in the logs; null = looked up from the device kind
    # and compute dtype (growth/measure/throughput.py), no MFU where it is unknown (e.g. CPUs)
    peak_tflops: float | None = None


@dataclass
class PerturbativeConfig:
    noise: Noise = Noise.antithetic  # antithetic: zero-sum over copies (function kept); iid: independent noise
    snr: float = 10.0  # per-tensor signal-to-noise ratio: noise std = rms(weight) / snr


@dataclass
class AsymmetricResetConfig:
    rewarm_steps: int = 0  # linear re-warmup of the reset units' updates; 0 = off


@dataclass
class StructuredConfig:
    mlp_split_scale: float = 0.5  # size of the asymmetric split R_a of MLP output rows, relative to W/k


@dataclass
class Net2NetConfig:
    noise: float = 0.0  # std of noise on the added units' incoming weights, relative to rms(W'); 0 = preserving


@dataclass
class ZeroPadConfig:
    init_scale: float = 0.0  # new entries = init_scale * a fresh wide init; 0 = exact zeros


@dataclass
class ShrinkPerturbConfig:
    shrink: float = 0.8  # lambda: W' = lambda * zero_pad(W) + sigma * W_init (docs/decisions.md: sweep)
    perturb: float = 0.2  # sigma, the weight of the fresh wide init (docs/decisions.md: sweep)


@dataclass
class MsgConfig:
    ramp_steps: int = 8  # steps over which the new units' masks rise linearly from 0 to 1


@dataclass
class LigoConfig:
    # operator-training steps, on the pretraining batches of the steps just before the growth step
    # (pretrain.batch_size sequences each); charged as growth_tokens
    steps: int = 16
    lr: float = 1e-3  # Adam learning rate of the expansion matrices
    init_noise: float = 0.01  # std of the noise added to exact_copy's maps at init


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
    schedule: Schedule = Schedule["continue"]  # schedule after growth: continue / rewarm / restart
    rewarm_steps: int = 16  # schedule=rewarm: linear re-warmup length
    # fan_in: every wide model scales the Adam direction of each tensor reading a widened space by
    # 1 / its input-width ratio, and the clone-consistent clip weights follow the same ratios
    lr_correction: LrCorrection = LrCorrection.none
    # options of the perturbative candidate
    perturbative: PerturbativeConfig = field(default_factory=PerturbativeConfig)
    # options of the asymmetric_reset candidate
    asymmetric_reset: AsymmetricResetConfig = field(default_factory=AsymmetricResetConfig)
    # options of the structured_non_clone candidate
    structured: StructuredConfig = field(default_factory=StructuredConfig)
    net2net: Net2NetConfig = field(default_factory=Net2NetConfig)  # options of the net2net candidate
    zero_pad: ZeroPadConfig = field(default_factory=ZeroPadConfig)  # options of the zero_pad candidate
    shrink_perturb: ShrinkPerturbConfig = field(default_factory=ShrinkPerturbConfig)  # options of shrink_perturb
    msg: MsgConfig = field(default_factory=MsgConfig)  # options of the msg candidate
    ligo: LigoConfig = field(default_factory=LigoConfig)  # options of the ligo candidate
    depth: DepthConfig = field(default_factory=DepthConfig)  # options of the depth-growth candidates


@dataclass
class RunnerConfig:
    eval_every: int = 8  # continuation eval period (steps after growth)
    batch_size: int = 16  # sequences per continuation step
    stochastic_dropout: float = 0.1  # dropout of the stochastic regime
    shuffle_stochastic: bool = False  # stochastic regime: draw a different (still matched) batch order
    eval_chunk: int = 8  # held-out sequences per compiled evaluation call (8: fastest on CPU, docs/performance.md)
    # How one compiled program trains and evaluates the stacked candidates: "map" loops over them inside
    # the program (lax.map; fastest on CPU, docs/performance.md), "vmap" batches them (wider ops; try it
    # on a GPU).
    pool_step: PoolStep = PoolStep.map
    # Continuation steps compiled into one program (lax.scan over pre-staged batches), in blocks of
    # powers of two up to this many, so at most log2 + 1 programs compile; 1 = one dispatch per step.
    # The updates are the same; only the dispatch count changes (docs/performance.md, issue 29).
    steps_per_dispatch: int = 16
    # Run each candidate group's (and the small reference's) compiled steps from its own host thread, so
    # their programs overlap on the cores (1.2x on a study cell, 2 cores); the same programs, so the
    # same numbers. Off: one after another. Ignored on a mesh.
    concurrent_programs: bool = True
    # Train a group's stacked candidates in pieces of at most this many, each piece its own program call
    # (0: the whole group in one). 1 with concurrent programs is fastest for the study's models on 2 CPU
    # cores (docs/performance.md); 0 with pool_step=vmap on a GPU. Evaluation still takes whole groups;
    # each candidate's numbers are the same either way. Ignored on a mesh.
    stack_at_most: int = 1
    base_dir: str | None = None  # grow from this run directory (e.g. an imported model) instead of pretraining


@dataclass
class MeshConfig:
    # Devices on the data-parallel axis (growth.distributed.mesh): 1 = one device (the plain path), 0 = all devices
    # of the job; the training and evaluation batches must divide by it.
    devices: int = 1
    fsdp: bool = False  # split parameters and Adam's moments over the axis too, instead of replicating them
    # Call jax.distributed.initialize() when the job runs several processes (SLURM tasks, JAX_* vars).
    distributed: bool = True


@dataclass
class WorkersConfig:
    """Many workers on one out_dir (docs/scaling.md): how cell leases are kept and taken over."""

    heartbeat_s: float = 30.0  # how often a worker refreshes the lease of the cell it is computing
    stale_s: float = 600.0  # a lease not refreshed for this long is a dead worker's and is taken over
    poll_s: float = 10.0  # how often a worker with nothing left to claim looks at the cells others hold


@dataclass
class BudgetConfig:
    """The budget axis and the shared scratch run (SPEC section 5b, docs/analysis.md "Budgets")."""

    # Extra evaluation lags, log-spaced between 1 and continuation_lag (rounded, deduplicated), on top of
    # every runner.eval_every steps: long continuations cost few evaluations. 0 = off.
    log_eval_lags: int = 0
    # Steps of the scratch_wide run of its own (growth.experiment.scratch), computed once per (seed, k, regime,
    # replicate, policy) and shared by every grid cell; 0 = no such run (the pool's scratch_wide only).
    scratch_steps: int = 0
    scratch_log_eval_lags: int = 32  # log-spaced evaluation lags of that run (lag 0 and its last step always)


@dataclass
class GridCell:
    seed: int | None = None  # this cell's seed; None = the top-level seed
    growth_step: int | None = None  # this cell's growth step; None = the top-level one
    k: int | None = None  # this cell's growth factor; None = growth.k
    pool: list[str] | None = None  # this cell's pool; None = the top-level pool
    replicates: int | None = None  # this cell's replicates; None = the top-level count
    lr_correction: LrCorrection | None = None  # this cell's lr_correction; None = growth.lr_correction
    clip_mode: ClipMode | None = None  # this cell's clip_mode; None = optim.clip_mode


@dataclass
class Config:
    name: str = "default"  # experiment name; part of the run directory
    seed: int = 0  # pretraining seed (data order, init, dropout)
    out_dir: str = "runs"  # root of every run directory
    growth_step: int = 1000  # pretraining step the wide candidates are grown from
    # Candidates to grow (names of growth/widen/registry.py); None (unset) = the registry's default pool, filled
    # in by growth.experiment.pool.with_default_pool before anything is hashed or built. An empty list is refused.
    pool: list[str] | None = None
    # continuation regimes run per cell
    regimes: list[Regime] = field(default_factory=lambda: [Regime.deterministic, Regime.stochastic])
    probe_lag: int = 16  # lag of the cheap probe
    continuation_lag: int = 128  # lag of the continuation that ranks candidates
    # Replicates per cell: replicate r changes the continuation's batch order and dropout keys, matched
    # across the candidates; the pretrained small model (the seed) stays the same.
    replicates: int = 1
    data: DataConfig = field(default_factory=DataConfig)  # corpus, tokenizer, eval set
    model: ModelConfig = field(default_factory=ModelConfig)  # the small model
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimizer of pretraining and continuation
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # the small model's pretraining
    growth: GrowthConfig = field(default_factory=GrowthConfig)  # how candidates are grown
    runner: RunnerConfig = field(default_factory=RunnerConfig)  # the continuation after growth
    budget: BudgetConfig = field(default_factory=BudgetConfig)  # budget axis: log-spaced lags, the scratch run
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # logging and progress
    mesh: MeshConfig = field(default_factory=MeshConfig)  # devices of a data-parallel run (docs/scaling.md)
    workers: WorkersConfig = field(default_factory=WorkersConfig)  # not part of any run's identity
    # Grid driven by experiments.reproduce: one cell per entry; unset fields take the top-level value.
    grid: list[GridCell] = field(default_factory=list)
    # experiments.reproduce: list the grid's cells, which are finished and an estimated time, train nothing
    plan: bool = False

    def filled_pool(self) -> list[str]:
        """The pool once growth.experiment.pool.with_default_pool has filled it in (every consumer past that point)."""
        if self.pool is None:
            raise ValueError("the pool is unset here: fill it with growth.experiment.pool.with_default_pool first")
        return self.pool


def _process_tag() -> str:
    """'' for a one-process launch; '-p<N>' for process N of several, so each keeps its own Hydra log."""
    for count, index in (("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"), ("SLURM_NTASKS", "SLURM_PROCID")):
        if os.environ.get(count, "").isdigit() and int(os.environ[count]) > 1:
            return f"-p{os.environ.get(index, '0')}"
    return ""


def register_configs() -> None:
    """Register the schema so every YAML file is validated against these dataclasses."""
    ConfigStore.instance().store(name="config_schema", node=Config)
    if not OmegaConf.has_resolver("process_tag"):
        OmegaConf.register_new_resolver("process_tag", _process_tag)  # hydra.run.dir (configs/config.yaml)


def check_choice(key: str, value: Any, choices: type[StrEnum]) -> None:
    """For configs built in code (Hydra validates composed ones): `value` must be one of `choices`."""
    valid = [m.value for m in choices]
    if value not in valid:
        raise ConfigValueError(f"{key}={value!r} is unknown; use one of {', '.join(valid)}")


def as_dict(obj: Any) -> dict:
    """Plain dict of a config dataclass, for JSON and wandb."""
    return dataclasses.asdict(obj)


def config_hash(obj: Any, length: int = 10) -> str:
    """Stable short hash of a config (dataclass or dict)."""
    payload = as_dict(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
