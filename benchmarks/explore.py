"""Where the train step's time goes, and what proposed changes to growth/ would gain.

    python -m benchmarks.explore profile [--wide] [--pool K]   per-op time by category (jax.profiler)
    python -m benchmarks.explore variants [--wide] [--pool K]  proposed model/loss changes, timed against
                                                               the current code in alternation
    python -m benchmarks.explore pool --wide [--pool K]        the stacked pool's step four ways
    python -m benchmarks.explore batch [--wide]                tokens/s against the batch size
    python -m benchmarks.explore flags [--wide]                the step under XLA_FLAGS sets, one process each
    python -m benchmarks.explore cell [--regime R] --override seed=0 --override growth_step=2000
                                                               one regime cell of the runner: train / evaluate split
    python -m benchmarks.explore eval [--override runner.eval_chunk=32]   the runner's evaluation of a grown pool

Variants are explicit loss functions handed to growth.train's step builders (`loss=`); nothing in
growth/ is patched. The compiled baseline and variants run in alternation, so a drift in machine load
hits all alike. Every variant is first checked against the baseline's loss and gradients (with dropout
off: variants of the dropout masks change the random stream, not the function). The findings are in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import math
import os
import re
import tempfile
import time

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import PRESETS, compose, repeat, spread, warm_step_runner
from benchmarks.jax_parts import flops_per_token, fresh, random_batch, time_pool_paths, wide_model
from growth import model as model_lib
from growth import optimizer, train

# ---------------------------------------------------------------- proposed changes
#
# Each variant is an explicit loss `(graphdef, params, batch_BxT1, dropout_key) -> loss`, passed to
# growth.train's step builders (`loss=`); nothing in growth/ is modified. A variant is built from an
# attention function `(attn, x, deterministic, rngs)` run inside `forward` (growth.model.GPT's forward,
# written out so the attention can be swapped) and a head-and-loss function `(model, hidden, targets)`.


def attention_current(attn, x_BxLxD, *, deterministic, rngs):
    """The library's attention, called explicitly (growth.model.Attention.__call__)."""
    return model_lib.Attention.__call__(attn, x_BxLxD, deterministic=deterministic, rngs=rngs)


def _scores_to_out(attn, q, k, v, *, deterministic, rngs, layout):
    """Masked softmax attention of (B, L, H, d) heads ("blhd") or of (B, H, L, d) heads ("bhld")."""
    hd = q.shape[-1]
    if layout == "bhld":
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        s_BxHxLxL = jnp.einsum("bhld,bhmd->bhlm", q, k)
    else:
        s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k)
    if attn.scaled:
        s_BxHxLxL = s_BxHxLxL / math.sqrt(hd)
    L = s_BxHxLxL.shape[-1]
    keep_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
    if attn.window:
        pos = jnp.arange(L)
        keep_LxL = keep_LxL & (pos[:, None] - pos[None, :] < attn.window)
    s_BxHxLxL = jnp.where(keep_LxL, s_BxHxLxL, jnp.finfo(s_BxHxLxL.dtype).min)
    p_BxHxLxL = attn.drop(jax.nn.softmax(s_BxHxLxL, axis=-1), deterministic=deterministic, rngs=rngs)
    if layout == "bhld":
        return jnp.einsum("bhlm,bhmd->bhld", p_BxHxLxL, v).transpose(0, 2, 1, 3)
    return jnp.einsum("bhlm,bmhd->blhd", p_BxHxLxL, v)


def fused_qkv(attn, x_BxLxD):
    """q, k, v (B, L, H, d) from one matmul with the three kernels concatenated at trace time."""
    B, L, D = x_BxLxD.shape
    w_Dx3D = jnp.concatenate([attn.q.kernel[...], attn.k.kernel[...], attn.v.kernel[...]], axis=1)
    b_3D = jnp.concatenate([attn.q.bias[...], attn.k.bias[...], attn.v.bias[...]])
    qkv = (x_BxLxD @ w_Dx3D + b_3D).reshape(B, L, 3, attn.n_heads, D // attn.n_heads)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


def attention_variant(fused: bool, layout: str):
    """Proposal: fused qkv matmul and/or heads-first (B, H, L, d) batched contractions."""

    def attention(attn, x_BxLxD, *, deterministic, rngs):
        B, L, D = x_BxLxD.shape
        if fused:
            q, k, v = fused_qkv(attn, x_BxLxD)
        else:
            q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, D // attn.n_heads) for f in (attn.q, attn.k, attn.v))
        o = _scores_to_out(attn, q, k, v, deterministic=deterministic, rngs=rngs, layout=layout)
        return attn.o(o.reshape(B, L, D))

    return attention


def attention_dpa(attn, x_BxLxD, *, deterministic, rngs):
    """Proposal: jax.nn.dot_product_attention when no dropout falls on the probabilities."""
    if not (deterministic or rngs is None) or attn.window:
        return attention_current(attn, x_BxLxD, deterministic=deterministic, rngs=rngs)
    B, L, D = x_BxLxD.shape
    hd = D // attn.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, hd) for f in (attn.q, attn.k, attn.v))
    o_BxLxHxd = jax.nn.dot_product_attention(q, k, v, scale=None if attn.scaled else 1.0, is_causal=True)
    return attn.o(o_BxLxHxd.reshape(B, L, D))


def attention_deferred(attn, x_BxLxD, *, deterministic, rngs):
    """Proposal: normalise after the value product (divide (B,H,L,hd), not (B,H,L,L)); dropout commutes."""
    B, L, D = x_BxLxD.shape
    hd = D // attn.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, attn.n_heads, hd) for f in (attn.q, attn.k, attn.v))
    if attn.scaled:
        q = q / math.sqrt(hd)  # scale q (B,L,D) instead of the scores (B,H,L,L)
    s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k)
    pos = jnp.arange(L)
    keep_LxL = pos[:, None] >= pos[None, :]
    if attn.window:
        keep_LxL = keep_LxL & (pos[:, None] - pos[None, :] < attn.window)
    s_BxHxLxL = jnp.where(keep_LxL, s_BxHxLxL, -jnp.inf)
    m_BxHxLx1 = jax.lax.stop_gradient(s_BxHxLxL.max(axis=-1, keepdims=True))
    e_BxHxLxL = jnp.exp(s_BxHxLxL - m_BxHxLx1)
    denom_BxHxL = e_BxHxLxL.sum(axis=-1)
    e_BxHxLxL = attn.drop(e_BxHxLxL, deterministic=deterministic, rngs=rngs)
    o_BxLxHxd = jnp.einsum("bhlm,bmhd->blhd", e_BxHxLxL, v) / denom_BxHxL.transpose(0, 2, 1)[..., None]
    return attn.o(o_BxLxHxd.reshape(B, L, D))


def forward(graphdef, params, tokens_BxL, dropout_key, attention):
    """(model, final normed hidden (B, L, D)): growth.model.GPT's forward with `attention` swapped in."""
    m = nnx.merge(graphdef, params)
    n = len(m.blocks)
    deterministic = dropout_key is None or m.cfg.dropout == 0.0
    keys = [None] * (n + 1) if deterministic else list(jax.random.split(dropout_key, n + 1))
    x = m.tok_embed(tokens_BxL) + m.pos_embed(jnp.arange(tokens_BxL.shape[1]))[None]
    x = m.drop(x, deterministic=deterministic, rngs=keys[0])
    for block, key in zip(m.blocks, keys[1:], strict=True):
        k_attn, k_res1, k_res2 = (None, None, None) if key is None else jax.random.split(key, 3)
        h = attention(block.attn, block.ln1(x), deterministic=deterministic, rngs=k_attn)
        x = x + block.drop(h, deterministic=deterministic, rngs=k_res1)
        h = block.mlp(block.ln2(x))
        x = x + block.drop(h, deterministic=deterministic, rngs=k_res2)
    return m, m.ln_f(x)


def _head(m, h):
    return m.tok_embed.attend(h) * m.cfg.logit_scale if m.cfg.tie_embeddings else m.lm_head(h)


def head_current(m, h_BxLxD, targets_BxL):
    """The library's loss head: growth.train.head_cross_entropy (logits in row blocks, custom VJP)."""
    return train.head_cross_entropy(h_BxLxD, m.head_matrix(), targets_BxL)


def head_full(m, h_BxLxD, targets_BxL):
    """The loss before issue 12: the whole (B, L, V) logits, optax's softmax cross-entropy."""
    return train.cross_entropy(_head(m, h_BxLxD), targets_BxL)


def head_lse(m, h_BxLxD, targets_BxL):
    """Proposal: logsumexp minus the target logit (no one-hot scatter, one pass fewer over B*L*V)."""
    logits = _head(m, h_BxLxD).astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return (lse_BxL - target_BxL).mean()


@jax.custom_vjp
def _ce_barrier(logits_BxLxV, targets_BxL):
    return _ce_barrier_fwd(logits_BxLxV, targets_BxL)[0]


def _ce_barrier_fwd(logits_BxLxV, targets_BxL):
    logits = logits_BxLxV.astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return (lse_BxL - target_BxL).mean(), (logits, lse_BxL, targets_BxL)


def _ce_barrier_bwd(res, ct):
    logits, lse_BxL, targets_BxL = res
    p = jnp.exp(logits - lse_BxL[..., None])
    onehot = jax.nn.one_hot(targets_BxL, logits.shape[-1], dtype=p.dtype)
    g = jax.lax.optimization_barrier((p - onehot) * (ct / targets_BxL.size))
    return g, None


_ce_barrier.defvjp(_ce_barrier_fwd, _ce_barrier_bwd)


def head_barrier(m, h_BxLxD, targets_BxL):
    """Proposal: the same loss with a hand-written gradient behind an optimization barrier."""
    return _ce_barrier(_head(m, h_BxLxD), targets_BxL)


def head_blocks(block_rows: int):
    """growth.train.head_cross_entropy with another row-block size."""

    def head(m, h_BxLxD, targets_BxL):
        return train.head_cross_entropy(h_BxLxD, m.head_matrix(), targets_BxL, block_rows)

    return head


def make_loss(attention=attention_current, head=head_current, key_impl: str | None = None) -> train.LossFn:
    """A loss for growth.train's step builders from an attention, a head-and-loss and a dropout key kind.

    `key_impl` ("rbg", "unsafe_rbg") re-wraps the step's threefry dropout key as a key of that PRNG for
    the masks only (the checkpointed key stays threefry).
    """

    def loss(graphdef, params, batch_BxT1, dropout_key):
        if dropout_key is not None and key_impl:
            raw = jnp.issubdtype(dropout_key.dtype, jnp.unsignedinteger)
            data = dropout_key if raw else jax.random.key_data(dropout_key)
            data = jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)])
            dropout_key = jax.random.wrap_key_data(data, impl=key_impl)
        m, h = forward(graphdef, params, batch_BxT1[:, :-1], dropout_key, attention)
        return head(m, h, batch_BxT1[:, 1:])

    return loss


def microbatched(n: int) -> train.LossFn:
    """Proposal: the loss as the mean over n equal micro-batches, scanned, so each op's working set
    (above all the (B/n, L, V) logits) is n times smaller. Same value and gradient (equal sizes)."""

    def loss(graphdef, params, batch_BxT1, dropout_key):
        chunks = batch_BxT1.reshape(n, batch_BxT1.shape[0] // n, batch_BxT1.shape[1])

        def body(total, xs):
            i, chunk = xs
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            return total + train.loss_fn(graphdef, params, chunk, key), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (jnp.arange(n), chunks))
        return total / n

    return loss


VARIANTS: dict[str, train.LossFn | None] = {  # None: growth.train.loss_fn itself
    "baseline": None,
    "explicit_forward": make_loss(),  # the variants' forward with the library's pieces: must equal baseline
    "fused_qkv": make_loss(attention_variant(True, "blhd")),
    "heads_first": make_loss(attention_variant(False, "bhld")),
    "fused_qkv+heads_first": make_loss(attention_variant(True, "bhld")),
    "attention_dpa": make_loss(attention_dpa),
    "attention_deferred": make_loss(attention_deferred),
    "ce_full_logits": make_loss(head=head_full),  # the loss before issue 12
    "ce_logsumexp": make_loss(head=head_lse),
    "ce_barrier": make_loss(head=head_barrier),
    "ce_blocks256": make_loss(head=head_blocks(256)),
    "ce_blocks1024": make_loss(head=head_blocks(1024)),
    "fused_qkv+ce_full_logits": make_loss(attention_variant(True, "blhd"), head_full),
    "dropout_rbg": make_loss(key_impl="rbg"),
    "dropout_unsafe_rbg": make_loss(key_impl="unsafe_rbg"),
    "microbatch2": microbatched(2),
    "microbatch4": microbatched(4),
    "deferred+ce_barrier": make_loss(attention_deferred, head_barrier),
    "heads_first+ce_full_logits": make_loss(attention_variant(False, "bhld"), head_full),
}
# Variants that change the random masks: their loss is checked only with dropout off.
RANDOM_STREAM_VARIANTS = {"dropout_rbg", "dropout_unsafe_rbg", "microbatch2", "microbatch4"}


# ---------------------------------------------------------------- helpers


def _setup(args):
    cfg = compose(PRESETS[args.preset].overrides + args.override)
    model_cfg = wide_model(cfg) if args.wide else cfg.model
    batch_size = args.batch or cfg.runner.batch_size
    return cfg, model_cfg, batch_size


def _compiled_step(cfg, model_cfg, pool: int, loss: train.LossFn | None = None):
    """(step, state): growth's train step with `loss`, vmapped over `pool` stacked copies when pool > 0."""
    graphdef, tx, state = fresh(cfg, model_cfg)
    if pool:
        step = train.jit_pool_step(graphdef, tx, cfg.optim, "vmap", loss=loss)
        state = jax.tree.map(lambda x: jnp.stack([x] * pool), state)
    else:
        step = train.jit_train_step(graphdef, tx, cfg.optim, loss=loss)
    return step, state


# ---------------------------------------------------------------- experiments


def check_variant(graphdef, params, batch, loss: train.LossFn | None) -> dict:
    """Loss and largest gradient difference of a variant against growth.train.loss_fn, dropout off."""

    def value_and_grad(fn):
        return jax.jit(jax.value_and_grad(lambda p: fn(graphdef, p, batch, None)))(params)

    ref_loss, ref_grads = value_and_grad(train.loss_fn)
    got_loss, got_grads = value_and_grad(loss or train.loss_fn)
    diff = max(
        float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(ref_grads), strict=True)
    )
    return {"loss_diff": abs(float(got_loss - ref_loss)), "max_grad_diff": diff}


def variants(args) -> dict:
    cfg, model_cfg, batch_size = _setup(args)
    if args.dropout:
        model_cfg = dataclasses.replace(model_cfg, dropout=args.dropout)
    batch = random_batch(model_cfg, batch_size)
    graphdef, _, state = fresh(cfg, dataclasses.replace(model_cfg, dropout=0.0))
    runs, checks = {}, {}
    chosen = VARIANTS if args.only is None else args.only  # `--only` alone: the baseline only
    for name in ["baseline", *(n for n in chosen if n != "baseline")]:
        checks[name] = check_variant(graphdef, state.params, batch, VARIANTS[name])
        runs[name] = warm_step_runner(*_compiled_step(cfg, model_cfg, args.pool, VARIANTS[name]), batch, args.steps)
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


def machine_info_brief() -> str:
    from benchmarks.common import cpu_flags, machine_info

    m = machine_info()
    return f"{m['cpu']}, {m['cores']} cores, " + ",".join(f for f, on in cpu_flags().items() if on)


def pool_impls(args) -> dict:
    """The stacked pool's step implemented four ways, per candidate-step, in alternation."""
    cfg, model_cfg, batch_size = _setup(args)
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
    cfg, model_cfg, _ = _setup(args)
    out = {}
    for b in (8, 16, 32, 64):
        run = warm_step_runner(*_compiled_step(cfg, model_cfg, 0), random_batch(model_cfg, b), args.steps)
        s = spread(repeat(run, args.reps, warmup=0))
        out[b] = {
            "step_ms": s["median"] * 1e3 / args.steps,
            "tokens_per_s": b * model_cfg.context * args.steps / s["median"],
        }
    return out


def categorize(text: str, vocab: int, context: int) -> str:
    """A coarse category of one optimized-HLO instruction, from its shapes and its op metadata."""
    has_v = re.search(rf"[\[,]{vocab}[\],]", text)
    is_mm = "dot(" in text or "kind=kCustom" in text  # kCustom: a YNNPACK/oneDNN fused matmul or reduce
    if "_take" in text and "take_along_axis" not in text:
        return "embedding gather / scatter-add"
    if has_v and is_mm and "reduce" not in text:
        return "lm_head matmuls"
    if has_v:
        return "softmax cross-entropy (B*L*V elementwise)"
    if f",{context},{context}]" in text:
        return "attention scores / softmax (B*H*L*L)"
    if is_mm and "reduce" not in text:
        return "dense matmuls (q, k, v, o, mlp)"
    return "other (norms, gelu, residual, optimizer, copies)"


def profile(args) -> dict:
    """Per-op time of the compiled step from a jax.profiler trace, grouped into categories."""
    from jax.profiler import ProfileData

    cfg, model_cfg, batch_size = _setup(args)
    step, state = _compiled_step(cfg, model_cfg, args.pool, VARIANTS[args.variant])
    batch = random_batch(model_cfg, batch_size)
    abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    hlo = step.lower(abstract_state, batch).compile().as_text()
    run = warm_step_runner(step, state, batch, args.steps)
    _, fpt = flops_per_token(model_cfg, model_lib.abstract(model_cfg)[1])
    defs = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)", line)
        if m:
            defs.setdefault(m.group(1), line)
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        run()
        jax.profiler.stop_trace()
        pd = ProfileData.from_file(max(glob.glob(f"{d}/**/*.xplane.pb", recursive=True)))
    per_op = collections.Counter()
    for plane in pd.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name:
                continue
            for ev in line.events:
                if ev.name in defs:
                    per_op[ev.name] += ev.duration_ns / 1e6 / args.steps
    L = model_cfg.context
    cats = collections.Counter()
    for name, ms in per_op.items():
        cats[categorize(defs[name], model_cfg.vocab_size, L)] += ms
    wall = spread(repeat(run, args.reps, warmup=0))["median"] / args.steps
    return {
        "model": {"d_model": model_cfg.d_model, "batch": batch_size, "pool": args.pool},
        "wall_ms_per_step": wall * 1e3,
        "model_gflops": fpt * batch_size * L * max(args.pool, 1) / wall / 1e9,
        "op_ms_per_step_summed_over_threads": dict(cats.most_common()),
        "top_ops": {n: [round(ms, 2), defs[n].strip()[:160]] for n, ms in per_op.most_common(args.top)},
    }


FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "no_thunks": "--xla_cpu_use_thunk_runtime=false",
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    "single_thread": "--xla_cpu_multi_thread_eigen=false",
}


def xla_flags(args) -> dict:
    """The step under each XLA_FLAGS set, one process per measurement, the sets alternated `--reps` times.

    Flags are read once per process, so this cannot interleave within one process: each round runs
    every set once in turn (`--steps` steps, after a compile and warm-up) and the gain is taken per
    round against the default set of that round. An unknown or rejected flag is reported, not fatal.
    """
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "benchmarks.explore", "variants", "--only", "--reps", "2", "--steps", str(args.steps)]
    cmd += ["--wide"] if args.wide else []
    for o in args.override:
        cmd += ["--override", o]
    ms = {name: [] for name in FLAG_SETS}
    errors = {}
    for _ in range(args.reps):
        for name, flags in FLAG_SETS.items():
            env = os.environ | {"XLA_FLAGS": flags}
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode:
                errors[name] = r.stderr.strip().splitlines()[-1:] or [f"exit {r.returncode}"]
                continue
            out = json.loads(r.stdout[r.stdout.index("{") :])
            ms[name].append(out["variants"]["baseline"]["step_ms"])
    rounds = min((len(v) for v in ms.values() if v), default=0)
    return {
        "machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()},
        "flags": FLAG_SETS,
        "step_ms": ms,
        "gain_vs_default_per_round": {
            n: [d / v for d, v in zip(ms["default"], ms[n], strict=False)] for n in ms if ms[n] and rounds
        },
        "errors": errors,
    }


def _grown_pool(args):
    """(cfg, data, small state, grown pool) of the runner for the preset and --override (pretraining
    resumed, or run first, in the config's out_dir), with wandb and progress bars off."""
    from growth import data as data_lib
    from growth import pool, runner
    from growth.config import to_config

    quiet = ["logger.wandb.mode=disabled", "logger.progress=false"]
    cfg = to_config(compose(PRESETS[args.preset].overrides + quiet + args.override))
    data = data_lib.load(cfg.data)
    small = runner.base_state(cfg, data)
    return cfg, data, small, pool.build_pool(cfg, small)


def cell_split(args) -> dict:
    """One regime cell of the runner (seed and growth step from --override), timed whole, and its evaluations alone.

    The cell is `growth.runner.run_cell` as a grid runs it (pretraining resumed or run in the config's
    out_dir first); the evaluation share is the runner's `evaluate` at every lag of the cell on the
    grown pool, timed on its own; training is the rest. The first repetition includes compilation.
    """
    from growth import pool, runner
    from growth.config import Regime
    from growth.results import CellKey

    cfg, data, small, grown = _grown_pool(args)
    groups = pool.group_pool(grown)
    params0 = [jax.tree.map(jnp.copy, g.state.params) for g in groups]
    out: dict = {"seed": cfg.seed, "growth_step": cfg.growth_step, "pool": cfg.pool, "cells": []}
    for rep in range(args.reps):
        key = CellKey(cfg.seed, cfg.growth_step, Regime(args.regime), rep)
        t0 = time.perf_counter()
        runner.run_cell(cfg, key, data, small, grown)
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        for lag in runner.eval_lags(cfg):
            runner.evaluate(cfg, lag, data.eval_BxT1, groups, params0, small.params)
        evaluate = time.perf_counter() - t0
        out["cells"].append({"regime": args.regime, "replicate": rep, "total_s": total, "evaluate_s": evaluate})
        out["cells"][-1]["train_s"] = total - evaluate
    return out | {"machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()}}


def eval_split(args) -> dict:
    """The runner's evaluation of one grown pool on the held-out set: the small model, then each stacked
    group without and with the lag-0 / probe comparisons (runner.eval_chunk and runner.pool_step from
    the config, so --override runner.eval_chunk=32 or runner.pool_step=vmap times the alternatives)."""
    from growth import pool

    cfg, data, small, grown = _grown_pool(args)
    groups = pool.group_pool(grown)
    eval_set, chunk, how = data.eval_BxT1, cfg.runner.eval_chunk, cfg.runner.pool_step
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.reps + 1):  # the first round compiles and is dropped
        t0 = time.perf_counter()
        pool.measure_small(cfg.model, small.params, eval_set, chunk)
        times["small"].append(time.perf_counter() - t0)
        for g in groups:
            for full in (False, True):
                t0 = time.perf_counter()
                pool.measure(g, g.state.params, small.params, cfg.model, eval_set, chunk, full, how)
                times[f"{len(g.names)} wide{' + comparisons' if full else ''}"].append(time.perf_counter() - t0)
    return {
        "eval_sequences": len(eval_set),
        "eval_chunk": chunk,
        "pool_step": str(how),
        "seconds": {k: spread(v[1:]) for k, v in times.items()},
        "machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()},
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["profile", "variants", "pool", "batch", "flags", "cell", "eval"])
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    ap.add_argument("--wide", action="store_true", help="the wide model (d_model and heads x growth.k)")
    ap.add_argument("--pool", type=int, default=0, help="vmap the step over this many stacked copies")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: runner.batch_size)")
    ap.add_argument("--steps", type=int, default=5, help="steps per timed repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--top", type=int, default=12, help="profile: ops to list")
    ap.add_argument("--variant", default="baseline", choices=sorted(VARIANTS), help="profile: under this variant")
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants: which to run (with the baseline)")
    ap.add_argument("--dropout", type=float, default=0.0, help="variants: model dropout (0.1: the stochastic regime)")
    ap.add_argument(
        "--regime", default="deterministic", choices=["deterministic", "stochastic"], help="cell: the regime"
    )
    args = ap.parse_args(argv)
    what = {"profile": profile, "variants": variants, "pool": pool_impls, "batch": batch_scan, "flags": xla_flags}
    what |= {"cell": cell_split, "eval": eval_split}
    out = what[args.what](args)
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
