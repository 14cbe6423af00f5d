"""Parts 1-3: the matmul limit, train-step throughput of the small and wide presets, the stacked pool."""

from __future__ import annotations

import dataclasses
import resource

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import Preset, repeat, scaled, spread
from growth import widen
from growth.config import Config, ModelConfig, PoolStep
from growth.models import gpt as model_lib
from growth.training import optimizer, train

# ---------------------------------------------------------------- 1. matmul limit


def matmul_runner(p: Preset, n: int):
    """(run, GFLOP per run): about 2 GFLOP of jitted n x n matmuls, blocking on the last."""
    dtype = jnp.dtype(p.matmul_dtype)
    ka, kb = jax.random.split(jax.random.PRNGKey(n))
    a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(jnp.matmul)
    calls = max(1, int(2e9 // (2 * n**3)))  # dispatch cost stays negligible at small sizes

    def run():
        out = None
        for _ in range(calls):
            out = mm(a, b)
        out.block_until_ready()

    return run, 2 * n**3 * calls / 1e9


def matmul_limit(p: Preset) -> dict:
    """GFLOP/s of square matmuls per size; the best median is the machine's limit."""
    sizes = {}
    for n in p.matmul_sizes:
        run, gflop = matmul_runner(p, n)
        sizes[str(n)] = scaled(spread(repeat(run, p.reps)), gflop)
    best = max(sizes, key=lambda s: sizes[s]["median"])
    return {"dtype": p.matmul_dtype, "gflops": sizes, "limit_gflops": sizes[best]["median"], "limit_size": int(best)}


# ---------------------------------------------------------------- 2. train step


def flops_per_token(cfg: ModelConfig, params) -> tuple[int, int]:
    """(parameters in matmuls, training FLOPs per token) = (N, 6 N + 12 n_layers d_model context).

    N counts every parameter except the token and position embeddings, which are gathered, not
    multiplied (the untied lm_head is a matmul and counts). 6 N: forward 2 N, backward 4 N. 12 L D T:
    the attention scores and the weighted sum of values, forward and backward, over the full
    context (XLA computes the masked half too).
    """
    n = model_lib.param_count(params)
    n_matmul = n - params["tok_embed"]["embedding"].size - params["pos_embed"]["embedding"].size
    return n_matmul, 6 * n_matmul + 12 * cfg.n_layers * cfg.d_model * cfg.context


def random_batch(cfg: ModelConfig, batch_size: int, seed: int = 0) -> jax.Array:
    """Uniform random tokens (B, context + 1): the step's cost does not depend on the tokens."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, cfg.vocab_size, (batch_size, cfg.context + 1), dtype=np.int32))


_inits: dict = {}


def fresh(cfg: Config, model_cfg: ModelConfig, seed: int = 0):
    """(graphdef, optimizer, train state) of a freshly initialised model.

    Initialisation is one jitted program per shape (eagerly it is dozens of small compiles).
    """
    tx = optimizer.make_optimizer(cfg.optim)
    key = (repr(model_cfg), repr(cfg.optim))
    if key not in _inits:

        def init(params_key, dropout_key):
            params = model_lib.build(model_cfg, params_key)[1]
            return train.init_state(params, tx, dropout_key)

        _inits[key] = jax.jit(init)
    state = _inits[key](jax.random.PRNGKey(seed), jax.random.PRNGKey(seed + 1))
    return model_lib.abstract(model_cfg)[0], tx, state


def wide_model(cfg: Config) -> ModelConfig:
    return widen.wide_config(cfg.model, cfg.growth)


_runners: dict = {}


def step_runner(cfg: Config, model_cfg: ModelConfig, batch_size: int, p: Preset):
    """(run, facts): `p.steps_per_rep` steps of growth.training.train.jit_train_step on the real model, compiled.

    Parts 2 and 4 share one runner per model, batch and preset.
    """
    key = (repr(model_cfg), repr(cfg.optim), batch_size, repr(p))
    if key not in _runners:
        _runners[key] = _step_runner(cfg, model_cfg, batch_size, p)
    return _runners[key]


def _step_runner(cfg: Config, model_cfg: ModelConfig, batch_size: int, p: Preset):
    graphdef, tx, state = fresh(cfg, model_cfg)
    n_matmul, fpt = flops_per_token(model_cfg, state.params)
    facts = {
        "d_model": model_cfg.d_model,
        "n_heads": model_cfg.n_heads,
        "n_layers": model_cfg.n_layers,
        "vocab_size": model_cfg.vocab_size,
        "context": model_cfg.context,
        "batch_size": batch_size,
        "params": model_lib.param_count(state.params),
        "params_matmul": n_matmul,
        "flops_per_token": fpt,
        "tokens_per_rep": batch_size * model_cfg.context * p.steps_per_rep,
    }
    step = train.jit_train_step(graphdef, tx, cfg.optim)
    batch = random_batch(model_cfg, batch_size)
    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(p.steps_per_rep):
            s, m = step(s, batch)
        m["loss"].block_until_ready()
        holder["state"] = s

    run()  # compile
    return run, facts


def rates(times: list[float], facts: dict, steps: int) -> dict:
    """Step time, tokens/s and model GFLOP/s from the seconds of each repetition."""
    secs = spread(times)
    tok_s = scaled(secs, facts["tokens_per_rep"])
    return {
        "step_ms": {k: (v * 1e3 / steps if k != "n" else v) for k, v in secs.items()},
        "tokens_per_s": tok_s,
        "model_gflops": tok_s["median"] * facts["flops_per_token"] / 1e9,
    }


def train_step_throughput(cfg: Config, model_cfg: ModelConfig, batch_size: int, p: Preset, limit: dict | None) -> dict:
    """Tokens/s and model FLOP/s of the train step, each repetition alternating with a limit matmul.

    The alternating matmul gives a fraction of the limit that holds up when other work on the machine
    changes the speed of both during the measurement.
    """
    run, facts = step_runner(cfg, model_cfg, batch_size, p)
    n = limit["limit_size"] if limit else p.matmul_sizes[len(p.matmul_sizes) // 2]
    probe, gflop = matmul_runner(p, n)
    probe()
    t_step, t_mm, usage = [], [], {"faults": 0, "user_s": 0.0, "kernel_s": 0.0}
    for _ in range(p.reps):
        before = resource.getrusage(resource.RUSAGE_SELF)
        t_step += repeat(run, 1, warmup=0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        usage["faults"] += after.ru_minflt - before.ru_minflt
        usage["user_s"] += after.ru_utime - before.ru_utime
        usage["kernel_s"] += after.ru_stime - before.ru_stime
        t_mm += repeat(probe, 1, warmup=1)  # the first matmul after a step runs cold (caches, threads)
    out = facts | rates(t_step, facts, p.steps_per_rep)
    # Page faults and the cores in the kernel: a step's temporaries on fresh 4 KiB pages cost a fifth of
    # its CPU time on the 2-core Xeon (growth.huge_pages).
    out["page_faults_per_step"] = usage["faults"] / (p.reps * p.steps_per_rep)
    out["cores_user"], out["cores_kernel"] = usage["user_s"] / sum(t_step), usage["kernel_s"] / sum(t_step)
    if limit:
        out["fraction_of_limit"] = out["model_gflops"] / limit["limit_gflops"]
    per_rep = [
        facts["tokens_per_rep"] * facts["flops_per_token"] / ts / (gflop * 1e9 / tm)
        for ts, tm in zip(t_step, t_mm, strict=True)
    ]
    out["interleaved_matmul_gflops"] = scaled(spread(t_mm), gflop)
    out["fraction_of_interleaved_matmul"] = spread(per_rep)
    return out


# ---------------------------------------------------------------- 3. candidate pool


def time_pool_paths(paths: dict, states: list, batch, single_step, n_steps: int, reps: int) -> dict[str, list[float]]:
    """Seconds per repetition of each way of training the candidates `n_steps` steps on one batch.

    `paths` maps a name to a compiled pool step over the stacked states, or to None: each candidate
    stepped alone by `single_step`, one after another. Repetitions are interleaved, so every path
    sees the same drift in machine load.
    """
    holders = {
        name: [jax.tree.map(jnp.copy, s) for s in states]
        if f is None
        else jax.tree.map(lambda *xs: jnp.stack(xs), *states)
        for name, f in paths.items()
    }

    def runner(name):
        f = paths[name]

        def run():
            if f is None:
                out = []
                for s in holders[name]:
                    for _ in range(n_steps):
                        s, m = single_step(s, batch)
                    out.append(s)
            else:
                out = holders[name]
                for _ in range(n_steps):
                    out, m = f(out, batch)
            m["loss"].block_until_ready()
            holders[name] = out

        run()  # compile and warm up
        return run

    runs = {name: runner(name) for name in paths}
    times = {name: [] for name in paths}
    for _ in range(reps):
        for name, run in runs.items():
            times[name] += repeat(run, 1, warmup=0)
    return times


def pool_speedup(cfg: Config, p: Preset, dropout: float = 0.0) -> dict:
    """k wide candidates, N steps each: the runner's stacked pool step (each of config.PoolStep)
    against k separate jit_train_step calls. `stacked_s` / `speedup` are the runner's setting
    (runner.pool_step); `by_pool_step` has every implementation."""
    wide = dataclasses.replace(wide_model(cfg), dropout=dropout)
    k, n_steps, batch_size = p.pool_k, p.steps_per_rep, cfg.runner.batch_size
    tx = optimizer.make_optimizer(cfg.optim)
    states = [fresh(cfg, wide, seed=10 * i)[2] for i in range(k)]
    graphdef = model_lib.abstract(wide)[0]
    paths = {"separate": None} | {how: train.jit_pool_step(graphdef, tx, cfg.optim, how) for how in PoolStep}
    times = time_pool_paths(
        paths, states, random_batch(wide, batch_size), train.jit_train_step(graphdef, tx, cfg.optim), n_steps, p.reps
    )
    by_step = {
        how: {
            "stacked_s": spread(times[how]),
            "speedup": spread([b / a for a, b in zip(times[how], times["separate"], strict=True)]),
        }
        for how in PoolStep
    }
    chosen = by_step[cfg.runner.pool_step]
    return {
        "candidates": k,
        "steps": n_steps,
        "batch_size": batch_size,
        "d_model": wide.d_model,
        "dropout": dropout,
        "pool_step": cfg.runner.pool_step,
        "stacked_s": chosen["stacked_s"],
        "separate_s": spread(times["separate"]),
        "speedup": chosen["speedup"],
        "by_pool_step": by_step,
    }
