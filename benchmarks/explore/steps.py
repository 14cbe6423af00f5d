"""The step subcommands: variants timed against the baseline, the pool step four ways, the batch scan."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp

from benchmarks.common import PRESETS, repeat, spread, warm_step_runner
from benchmarks.explore.losses import VARIANTS
from benchmarks.explore.setup import compiled_step, machine_info_brief, setup
from benchmarks.jax_parts import fresh, random_batch, time_pool_paths
from growth.models import gpt as model_lib
from growth.training import optimizer, train


def check_variant(graphdef, params, batch, loss: train.LossFn | None) -> dict:
    """Loss and largest gradient difference of a variant against growth.training.train.loss_fn, dropout off."""

    def value_and_grad(fn):
        return jax.jit(jax.value_and_grad(lambda p: fn(graphdef, p, batch, None)))(params)

    ref_loss, ref_grads = value_and_grad(train.loss_fn)
    got_loss, got_grads = value_and_grad(loss or train.loss_fn)
    diff = max(
        float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(ref_grads), strict=True)
    )
    return {"loss_diff": abs(float(got_loss - ref_loss)), "max_grad_diff": diff}


def variants(args) -> dict:
    cfg, model_cfg, batch_size = setup(args)
    if args.dropout:
        model_cfg = dataclasses.replace(model_cfg, dropout=args.dropout)
    batch = random_batch(model_cfg, batch_size)
    graphdef, _, state = fresh(cfg, dataclasses.replace(model_cfg, dropout=0.0))
    runs, checks = {}, {}
    chosen = VARIANTS if args.only is None else args.only  # `--only` alone: the baseline only
    for name in ["baseline", *(n for n in chosen if n != "baseline")]:
        checks[name] = check_variant(graphdef, state.params, batch, VARIANTS[name])
        runs[name] = warm_step_runner(*compiled_step(cfg, model_cfg, args.pool, VARIANTS[name]), batch, args.steps)
    times = {n: [] for n in runs}
    for _ in range(args.reps):
        for n, run in runs.items():
            times[n] += repeat(run, 1, warmup=0)
    tokens = batch_size * model_cfg.context * args.steps * max(args.pool, 1)
    out = {}
    for n, t in times.items():
        s = spread(t)
        # The gain per interleaved pair of repetitions (baseline / variant), then its median.
        gain = spread([b / v for b, v in zip(times["baseline"], t, strict=True)])
        out[n] = {
            "step_ms": s["median"] * 1e3 / args.steps,
            "step_ms_min_max": [s["min"] * 1e3 / args.steps, s["max"] * 1e3 / args.steps],
            "tokens_per_s": tokens / s["median"],
            "gain_vs_baseline": gain["median"],
            "gain_min_max": [gain["min"], gain["max"]],
        } | checks[n]
    return {
        "model": {"d_model": model_cfg.d_model, "batch": batch_size, "pool": args.pool, "dropout": model_cfg.dropout},
        "machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()},
        "variants": out,
    }


def pool_impls(args) -> dict:
    """The stacked pool's step implemented four ways, per candidate-step, in alternation."""
    cfg, model_cfg, batch_size = setup(args)
    k = args.pool or PRESETS[args.preset].pool_k
    tx = optimizer.make_optimizer(cfg.optim)
    graphdef = model_lib.abstract(model_cfg)[0]
    states = [fresh(cfg, model_cfg, seed=10 * i)[2] for i in range(k)]
    batch = random_batch(model_cfg, batch_size)
    vmapped_barrier = train.jit_pool_step(graphdef, tx, cfg.optim, "vmap", loss=VARIANTS["ce_barrier"])
    separate = "separate (jit_train_step per candidate)"
    paths = {
        separate: None,
        "vmap (runner.pool_step=vmap)": train.jit_pool_step(graphdef, tx, cfg.optim, "vmap"),
        "vmap + ce_barrier": vmapped_barrier,
        "lax.map (runner.pool_step=map)": train.jit_pool_step(graphdef, tx, cfg.optim, "map"),
    }
    single = train.jit_train_step(graphdef, tx, cfg.optim)
    times = time_pool_paths(paths, states, batch, single, args.steps, args.reps)
    base = spread(times[separate])["median"]
    return {
        "model": {"d_model": model_cfg.d_model, "batch": batch_size, "candidates": k},
        "ms_per_candidate_step": {n: spread(t)["median"] * 1e3 / args.steps / k for n, t in times.items()},
        "speedup_vs_separate": {n: base / spread(t)["median"] for n, t in times.items()},
    }


def batch_scan(args) -> dict:
    cfg, model_cfg, _ = setup(args)
    out = {}
    for b in (8, 16, 32, 64):
        run = warm_step_runner(*compiled_step(cfg, model_cfg, 0), random_batch(model_cfg, b), args.steps)
        s = spread(repeat(run, args.reps, warmup=0))
        out[b] = {
            "step_ms": s["median"] * 1e3 / args.steps,
            "tokens_per_s": b * model_cfg.context * args.steps / s["median"],
        }
    return out
