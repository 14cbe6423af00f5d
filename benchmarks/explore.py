"""Where the train step's time goes, and what proposed changes to growth/ would gain.

    python -m benchmarks.explore profile [--wide] [--pool K]   per-op time by category (jax.profiler)
    python -m benchmarks.explore variants [--wide] [--pool K]  proposed model/loss changes, timed against
                                                               the current code in alternation
    python -m benchmarks.explore pool --wide [--pool K]        the stacked pool's step four ways
    python -m benchmarks.explore batch [--wide]                tokens/s against the batch size

Variants are patched into growth.model / growth.train only while their step is traced and compiled;
the compiled baseline and variants then run in alternation, so a drift in machine load hits all alike.
Every variant is first checked to give the baseline's loss and gradients (allclose).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import math
import re
import tempfile

import jax
import jax.numpy as jnp

from benchmarks.common import PRESETS, compose, repeat, spread
from benchmarks.jax_parts import flops_per_token, fresh, random_batch, time_pool_paths, wide_model
from growth import model as model_lib
from growth import optimizer, train

# ---------------------------------------------------------------- proposed changes


def attention_dpa(self, x_BxLxD, *, deterministic, rngs):
    """Proposal: jax.nn.dot_product_attention when no dropout falls on the probabilities."""
    if not (deterministic or rngs is None) or self.window:
        return _ORIGINAL["attention"](self, x_BxLxD, deterministic=deterministic, rngs=rngs)
    B, L, D = x_BxLxD.shape
    hd = D // self.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, self.n_heads, hd) for f in (self.q, self.k, self.v))
    o_BxLxHxd = jax.nn.dot_product_attention(q, k, v, scale=None if self.scaled else 1.0, is_causal=True)
    return self.o(o_BxLxHxd.reshape(B, L, D))


def attention_deferred(self, x_BxLxD, *, deterministic, rngs):
    """Proposal: normalise after the value product (divide (B,H,L,hd), not (B,H,L,L)); dropout commutes."""
    B, L, D = x_BxLxD.shape
    hd = D // self.n_heads
    q, k, v = (f(x_BxLxD).reshape(B, L, self.n_heads, hd) for f in (self.q, self.k, self.v))
    if self.scaled:
        q = q / math.sqrt(hd)  # scale q (B,L,D) instead of the scores (B,H,L,L)
    s_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k)
    pos = jnp.arange(L)
    keep_LxL = pos[:, None] >= pos[None, :]
    if self.window:
        keep_LxL = keep_LxL & (pos[:, None] - pos[None, :] < self.window)
    s_BxHxLxL = jnp.where(keep_LxL, s_BxHxLxL, -jnp.inf)
    m_BxHxLx1 = jax.lax.stop_gradient(s_BxHxLxL.max(axis=-1, keepdims=True))
    e_BxHxLxL = jnp.exp(s_BxHxLxL - m_BxHxLx1)
    denom_BxHxL = e_BxHxLxL.sum(axis=-1)
    e_BxHxLxL = self.drop(e_BxHxLxL, deterministic=deterministic, rngs=rngs)
    o_BxLxHxd = jnp.einsum("bhlm,bmhd->blhd", e_BxHxLxL, v) / denom_BxHxL.transpose(0, 2, 1)[..., None]
    return self.o(o_BxLxHxd.reshape(B, L, D))


def cross_entropy_lse(logits_BxLxV, targets_BxL):
    """Proposal: logsumexp minus the target logit (no one-hot scatter, one pass fewer over B*L*V)."""
    logits = logits_BxLxV.astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return (lse_BxL - target_BxL).mean()


@jax.custom_vjp
def cross_entropy_barrier(logits_BxLxV, targets_BxL):
    """Proposal: the same loss with a hand-written gradient behind an optimization barrier.

    Under vmap (the stacked pool) XLA fuses softmax - one_hot into the transposing copy that feeds the
    lm_head weight-gradient dot, and that fusion walks B*L*V elements in a cache-hostile order. The
    barrier makes the gradient a plain array first, so the transpose is a cheap copy.
    """
    return _ce_fwd(logits_BxLxV, targets_BxL)[0]


def _ce_fwd(logits_BxLxV, targets_BxL):
    logits = logits_BxLxV.astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return (lse_BxL - target_BxL).mean(), (logits, lse_BxL, targets_BxL)


def _ce_bwd(res, ct):
    logits, lse_BxL, targets_BxL = res
    p = jnp.exp(logits - lse_BxL[..., None])
    onehot = jax.nn.one_hot(targets_BxL, logits.shape[-1], dtype=p.dtype)
    g = jax.lax.optimization_barrier((p - onehot) * (ct / targets_BxL.size))
    return g, None


cross_entropy_barrier.defvjp(_ce_fwd, _ce_bwd)


def microbatched(n: int):
    """Proposal: the loss as the mean over n equal micro-batches, scanned, so each op's working set
    (above all the (B/n, L, V) logits) is n times smaller. Same value and gradient (equal sizes)."""

    def loss_fn(graphdef, params, batch_BxT1, dropout_key):
        chunks = batch_BxT1.reshape(n, batch_BxT1.shape[0] // n, batch_BxT1.shape[1])

        def body(total, xs):
            i, chunk = xs
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            return total + _ORIGINAL["loss_fn"](graphdef, params, chunk, key), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (jnp.arange(n), chunks))
        return total / n

    return loss_fn


_ORIGINAL = {"attention": model_lib.Attention.__call__, "cross_entropy": train.cross_entropy, "loss_fn": train.loss_fn}
VARIANTS = {
    "baseline": {},
    "attention_dpa": {"attention": attention_dpa},
    "attention_deferred": {"attention": attention_deferred},
    "ce_logsumexp": {"cross_entropy": cross_entropy_lse},
    "ce_barrier": {"cross_entropy": cross_entropy_barrier},
    "microbatch2": {"loss_fn": microbatched(2)},
    "microbatch4": {"loss_fn": microbatched(4)},
    "deferred+ce_barrier": {"attention": attention_deferred, "cross_entropy": cross_entropy_barrier},
}


@contextlib.contextmanager
def patched(changes: dict):
    try:
        model_lib.Attention.__call__ = changes.get("attention", _ORIGINAL["attention"])
        train.cross_entropy = changes.get("cross_entropy", _ORIGINAL["cross_entropy"])
        train.loss_fn = changes.get("loss_fn", _ORIGINAL["loss_fn"])
        yield
    finally:
        model_lib.Attention.__call__ = _ORIGINAL["attention"]
        train.cross_entropy = _ORIGINAL["cross_entropy"]
        train.loss_fn = _ORIGINAL["loss_fn"]


# ---------------------------------------------------------------- helpers


def _setup(args):
    cfg = compose(PRESETS[args.preset].overrides + args.override)
    model_cfg = wide_model(cfg) if args.wide else cfg.model
    batch_size = args.batch or cfg.runner.batch_size
    return cfg, model_cfg, batch_size


def _compiled_step(cfg, model_cfg, pool: int):
    """(step, state): growth's train step, vmapped over `pool` stacked copies when pool > 0."""
    graphdef, tx, state = fresh(cfg, model_cfg)
    if pool:
        step = train.jit_pool_step(graphdef, tx, cfg.optim, "vmap")
        state = jax.tree.map(lambda x: jnp.stack([x] * pool), state)
    else:
        step = train.jit_train_step(graphdef, tx, cfg.optim)
    return step, state


def _timer(step, state, batch, n_steps):
    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(n_steps):
            s, m = step(s, batch)
        m["loss"].block_until_ready()
        holder["state"] = s

    run()  # compile and warm up
    return run


# ---------------------------------------------------------------- experiments


def variants(args) -> dict:
    cfg, model_cfg, batch_size = _setup(args)
    batch = random_batch(model_cfg, batch_size)
    graphdef, _, state = fresh(cfg, model_cfg)

    def loss_and_grads(params):
        # A new function each time: jax.jit caches traces by function, and each variant needs its own.
        return jax.jit(jax.value_and_grad(lambda p: train.loss_fn(graphdef, p, batch, None)))(params)

    ref_loss, ref_grads = loss_and_grads(state.params)
    runs, checks = {}, {}
    for name in args.only or VARIANTS:
        with patched(VARIANTS[name]):
            loss, grads = loss_and_grads(state.params)
            diff = max(
                float(jnp.abs(a - b).max())
                for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True)
            )
            checks[name] = {"loss_diff": abs(float(loss - ref_loss)), "max_grad_diff": diff}
            runs[name] = _timer(*_compiled_step(cfg, model_cfg, args.pool), batch, args.steps)
    times = {n: [] for n in runs}
    for _ in range(args.reps):
        for n, run in runs.items():
            times[n] += repeat(run, 1, warmup=0)
    base = spread(times["baseline"])["median"] if "baseline" in times else None
    tokens = batch_size * model_cfg.context * args.steps * max(args.pool, 1)
    out = {}
    for n, t in times.items():
        s = spread(t)
        out[n] = {
            "step_ms": s["median"] * 1e3 / args.steps,
            "step_ms_min_max": [s["min"] * 1e3 / args.steps, s["max"] * 1e3 / args.steps],
            "tokens_per_s": tokens / s["median"],
            "gain_vs_baseline": (base / s["median"]) if base else None,
        } | checks[n]
    return {"model": {"d_model": model_cfg.d_model, "batch": batch_size, "pool": args.pool}, "variants": out}


def pool_impls(args) -> dict:
    """The stacked pool's step implemented four ways, per candidate-step, in alternation."""
    cfg, model_cfg, batch_size = _setup(args)
    k = args.pool or PRESETS[args.preset].pool_k
    tx = optimizer.make_optimizer(cfg.optim)
    graphdef = model_lib.abstract(model_cfg)[0]
    states = [fresh(cfg, model_cfg, seed=10 * i)[2] for i in range(k)]
    batch = random_batch(model_cfg, batch_size)
    with patched(VARIANTS["ce_barrier"]):
        vmapped_barrier = train.jit_pool_step(graphdef, tx, cfg.optim, "vmap")
        vmapped_barrier(jax.tree.map(lambda *xs: jnp.stack(xs), *states), batch)  # traced under the patch
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
        run = _timer(*_compiled_step(cfg, model_cfg, 0), random_batch(model_cfg, b), args.steps)
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
    with patched(VARIANTS[args.variant]):
        step, state = _compiled_step(cfg, model_cfg, args.pool)
        batch = random_batch(model_cfg, batch_size)
        abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        hlo = step.lower(abstract_state, batch).compile().as_text()
        run = _timer(step, state, batch, args.steps)  # traced and compiled under the patch
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["profile", "variants", "pool", "batch"])
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    ap.add_argument("--wide", action="store_true", help="the wide model (d_model and heads x growth.k)")
    ap.add_argument("--pool", type=int, default=0, help="vmap the step over this many stacked copies")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: runner.batch_size)")
    ap.add_argument("--steps", type=int, default=5, help="steps per timed repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--top", type=int, default=12, help="profile: ops to list")
    ap.add_argument("--variant", default="baseline", choices=sorted(VARIANTS), help="profile: under this variant")
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants: which to run")
    args = ap.parse_args(argv)
    out = {"profile": profile, "variants": variants, "pool": pool_impls, "batch": batch_scan}[args.what](args)
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
