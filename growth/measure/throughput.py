"""Training throughput for the logs: tokens/s and model FLOPs utilisation (MFU) of every training loop.

FLOPs per token are growth/measure/cost.py's `train_flops_per_token`: 6 x the matmul parameters plus
6 x n_layers x context x d_model for attention, which is the full (non-causal) score and weighting count
12 n_layer n_ctx d halved, since a causal model computes half of the score matrix. MFU = achieved
model FLOP/s / (peak FLOP/s of one device x devices). The peak comes from `logger.peak_tflops`, else
from the table below by device kind and compute dtype (dense tensor-core peaks; float32 matmuls run as
TF32 on these GPUs under XLA's default precision); where it is unknown (CPUs) no MFU is written.
"""

from __future__ import annotations

import time

import jax
from jax.sharding import Mesh

from growth import widen
from growth.config import Config, ModelConfig
from growth.measure import cost

# Dense peak TFLOP/s of one device: (substring of jax's device_kind, compute dtype) -> peak.
PEAK_TFLOPS = {
    ("H200", "bfloat16"): 989.0,
    ("H200", "float32"): 494.0,
    ("H100", "bfloat16"): 989.0,
    ("H100", "float32"): 494.0,
    ("A100", "bfloat16"): 312.0,
    ("A100", "float32"): 156.0,
    ("L4", "bfloat16"): 121.0,
    ("L4", "float32"): 60.0,
    ("TPU v4", "bfloat16"): 275.0,
    ("TPU v5 lite", "bfloat16"): 197.0,
    ("TPU v5p", "bfloat16"): 459.0,
}


def peak_flops(cfg: Config, devices: int = 1) -> float | None:
    """Peak FLOP/s of the devices a run uses, or None where unknown."""
    if cfg.logger.peak_tflops is not None:
        return cfg.logger.peak_tflops * 1e12 * devices
    kind = jax.devices()[0].device_kind
    for (name, dtype), tflops in PEAK_TFLOPS.items():
        if name in kind and dtype == str(cfg.model.compute_dtype):
            return tflops * 1e12 * devices
    return None


def flops_per_step(tokens_per_step: int, models: list[ModelConfig]) -> float:
    """Training FLOPs of one step in which every model of `models` trains on the same batch."""
    return tokens_per_step * sum(cost.train_flops_per_token(m) for m in models)


class Meter:
    """tokens/s and MFU over the steps between two `row` calls (call `start` where timing begins)."""

    def __init__(self, tokens_per_step: int, flops_per_step: float, peak: float | None):
        self.tokens_per_step, self.flops_per_step, self.peak = tokens_per_step, flops_per_step, peak
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def row(self, steps: int) -> dict[str, float]:
        """Throughput of the `steps` steps since `start` (the caller has synced the device)."""
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        self.start()
        if steps <= 0:
            return {}
        out = {"tokens_per_s": steps * self.tokens_per_step / seconds}
        if self.peak:
            out["mfu"] = steps * self.flops_per_step / seconds / self.peak
        return out


def grow_flops_per_step(cfg: Config) -> float:
    """A grow cell's step: the small reference and every wide candidate train on the batch."""
    wide = widen.wide_config(cfg.model, cfg.growth)
    reference = widen.registry.reference()  # the small model continued: counted once, as cfg.model
    models = [cfg.model] + [wide for name in cfg.filled_pool() if name != reference]
    return flops_per_step(cfg.runner.batch_size * cfg.model.context, models)


def scratch_flops_per_step(cfg: Config) -> float:
    """A scratch run's step: the fresh wide model alone."""
    return flops_per_step(cfg.runner.batch_size * cfg.model.context, [widen.wide_config(cfg.model, cfg.growth)])


def devices(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(mesh.devices.size)


def grow_meter(cfg: Config, mesh: Mesh | None) -> Meter:
    return Meter(cfg.runner.batch_size * cfg.model.context, grow_flops_per_step(cfg), peak_flops(cfg, devices(mesh)))


def scratch_meter(cfg: Config) -> Meter:
    return Meter(cfg.runner.batch_size * cfg.model.context, scratch_flops_per_step(cfg), peak_flops(cfg))
