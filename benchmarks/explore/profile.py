"""The profile subcommand: per-op time of the compiled step from a jax.profiler trace, by category."""

from __future__ import annotations

import collections
import glob
import re
import tempfile

import jax

from benchmarks.common import repeat, spread, warm_step_runner
from benchmarks.explore.losses import VARIANTS
from benchmarks.explore.setup import compiled_step, setup
from benchmarks.jax_parts import flops_per_token, random_batch
from growth.models import gpt as model_lib


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

    cfg, model_cfg, batch_size = setup(args)
    step, state = compiled_step(cfg, model_cfg, args.pool, VARIANTS[args.variant])
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
        "top_ops": {n: [round(ms, 2), defs[n].strip()[: args.width]] for n, ms in per_op.most_common(args.top)},
    }
