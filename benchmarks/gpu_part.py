"""The `gpu` benchmark part: train-step tokens/s and model FLOPs utilisation (MFU) of experiment=paper_gpu.

The step is growth.training.train.jit_train_step on the paper_gpu model (bf16 matmuls, float32 master
weights) at its batch, on a data mesh over every device (growth.distributed.mesh). MFU is model FLOP/s over the
devices' dense bf16 peak: from the table below by device kind, or `--peak-tflops`. A CPU has no
entry: there MFU is left null and only tokens/s and model FLOP/s are reported (`--tiny` runs the
part on a CPU in seconds, to prove the code path). No figure in this repository was measured on a GPU
unless its results file says so.
"""

from __future__ import annotations

import jax

from benchmarks.common import compose, repeat
from benchmarks.jax_parts import flops_per_token as count_flops
from benchmarks.jax_parts import fresh, random_batch, rates
from growth.config import MeshConfig
from growth.distributed import mesh as mesh_lib
from growth.training import train

# Dense bf16 peak TFLOP/s per device (vendor data sheets, SXM parts, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}

TINY_OVERRIDES = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "data.vocab_size=320", "data.context=16"]
TINY_OVERRIDES += ["pretrain.batch_size=8"]


def peak_tflops(device) -> float | None:
    """The dense bf16 peak of `device` from PEAK_TFLOPS, or None when its kind is not listed."""
    kind = getattr(device, "device_kind", "")
    return next((v for k, v in PEAK_TFLOPS.items() if k.lower() in kind.lower()), None)


def measure(tiny: bool, reps: int, steps: int, peak: float | None = None, extra: list[str] | None = None) -> dict:
    """tokens/s, model TFLOP/s and MFU of the paper_gpu train step on all devices."""
    cfg = compose(["experiment=paper_gpu"] + (TINY_OVERRIDES if tiny else []) + (extra or []))
    devices = jax.devices()
    mesh = mesh_lib.make(MeshConfig(devices=0))
    batch_size = cfg.pretrain.batch_size
    mesh_lib.check_batch(mesh, batch_size, "pretrain.batch_size")
    graphdef, tx, state = fresh(cfg, cfg.model)
    n_matmul, fpt = count_flops(cfg.model, state.params)
    state = mesh_lib.put_state(mesh, state, cfg.mesh.fsdp)
    batch = mesh_lib.put_batch(mesh, jax.device_get(random_batch(cfg.model, batch_size)))
    step = train.jit_train_step(graphdef, tx, cfg.optim)
    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(steps):
            s, m = step(s, batch)
        m["loss"].block_until_ready()
        holder["state"] = s

    run()  # compile
    facts = {"tokens_per_rep": batch_size * cfg.model.context * steps, "flops_per_token": fpt}
    out = rates(repeat(run, reps, warmup=0), facts, steps)
    per_device = peak if peak is not None else peak_tflops(devices[0])
    model_tflops = out["model_gflops"] / 1e3
    out |= {
        "device_kind": getattr(devices[0], "device_kind", str(devices[0])),
        "devices": len(devices),
        "backend": jax.default_backend(),
        "compute_dtype": str(cfg.model.compute_dtype),
        "d_model": cfg.model.d_model,
        "n_layers": cfg.model.n_layers,
        "batch_size": batch_size,
        "params_matmul": n_matmul,
        "flops_per_token": fpt,
        "model_tflops": model_tflops,
        "peak_tflops_per_device": per_device,
        "mfu": model_tflops / (per_device * len(devices)) if per_device else None,
    }
    if not per_device:
        out["mfu_note"] = f"no bf16 peak known for {out['device_kind']!r}: give --peak-tflops to get an MFU"
    return out
