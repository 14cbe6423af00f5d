"""The benchmark suite: `python -m benchmarks.run [--parts ...] [--e2e ...] [--preset cpu|gpu] [--tiny]`.

Writes `benchmarks/results/<host>-<cpu vendor>.json` and `.md` (one file per CPU kind: amd, intel) (docs/performance.md explains them):

  limit  fp32 matmul GFLOP/s at a few square sizes; the best median is the machine's limit
  step   train-step tokens/s and model FLOP/s of the small and the wide model, and their share of the limit
  pool   the stacked candidate pool (runner.pool_step: map and vmap) against the same candidates stepped one after another
  peer   the same model and batch trained by Hugging Face GPT-2 + torch.optim.AdamW and by a best-practice
         PyTorch GPT (fused qkv, SDPA, fused AdamW) eager and under torch.compile, on the CPU
  e2e    wall time of whole experiment grids (growth.experiment.grid.reproduce) and the share spent compiling;
         paper_cpu_presets is paper_cpu and paper_cpu_fanin into one out_dir (pretraining shared)
  replicas  a cell's replicate continuations stacked in one pool step against one process per core
  cell   one study_cpu_long regime cell (six models) trained N steps as the runner does, against a
         torch.compile peer training the same six models (benchmarks/study_cell.py)
  data   growth.data.pipeline.load on a generated >= 400 MB corpus (peak RSS, tokens/s) and the old in-memory
         path on ~40 MB in the same run (benchmarks/data_part.py)
  gpu    tokens/s and MFU of experiment=paper_gpu's train step on every device (benchmarks/gpu_part.py;
         --tiny runs it on a CPU)

Every figure is the median of --reps repetitions after a warm-up, with min/max and quartiles. Parts
run in one process; a run of some parts updates those parts of an existing results file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import (
    REPO,
    CompileClock,
    compose,
    cpu_kind,
    machine_info,
    machine_name,
    preset,
    repeat,
    spread,
)

PARTS = ("limit", "step", "pool", "peer", "cell", "e2e", "replicas", "data", "gpu")
# Parts run only when named in --parts (minutes of tokenizing, and a GB of temporary disk).
OPT_IN = ("data", "gpu")
TARGETS = {  # name: (description, threshold); docs/performance.md says why each one
    "wide_step_fraction_of_limit": ("wide train step >= 40% of the matmul limit", 0.40),
    "pool_speedup": ("stacked pool >= 1.5x one-by-one", 1.5),
    "peer_ratio_hf_small": ("small: ours >= 1.2x the tokens/s of HF GPT-2 + AdamW", 1.2),
    "peer_ratio_hf_wide": ("wide: ours >= 1.2x the tokens/s of HF GPT-2 + AdamW", 1.2),
    "peer_ratio_compiled_small": ("small: ours >= 1.0x the best-practice peer under torch.compile", 1.0),
    "peer_ratio_compiled_wide": ("wide: ours >= 1.0x the best-practice peer under torch.compile", 1.0),
    "study_cell_peer_ratio": ("study_cpu_long cell, six models: ours >= 1.5x a torch.compile peer", 1.5),
    "paper_cpu_wall_s": ("experiment=paper_cpu < 30 min", 1800.0),
    "paper_cpu_presets_wall_s": ("paper_cpu + paper_cpu_fanin (shared pretraining) <= 90 min", 5400.0),
    "data_peak_rss_gb": ("tokenizing a >= 400 MB corpus peaks at <= 3 GB resident", 3.0),
    "data_tokens_per_s_ratio": ("the streamed data path >= 2x the tokens/s of the old in-memory path", 2.0),
}
# Always written, with value null and met false until a run measures them (issues 12 and 29).
REQUIRED_TARGETS = (
    "peer_ratio_hf_small",
    "peer_ratio_hf_wide",
    "peer_ratio_compiled_small",
    "peer_ratio_compiled_wide",
    "study_cell_peer_ratio",
)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--parts",
        default=",".join(x for x in PARTS if x not in OPT_IN),
        help=f"comma-separated subset of {','.join(PARTS)}",
    )
    ap.add_argument(
        "--e2e",
        help="experiments timed by the e2e part (default smoke,paper_cpu_presets; smoke with --tiny); a+b runs a and b into one out_dir",
    )
    ap.add_argument(
        "--preset", default="cpu", help="cpu (configs/model/cpu.yaml) or gpu (model/gpu.yaml, bf16 matmuls)"
    )
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and counts: proves the code path in seconds")
    ap.add_argument("--reps", type=int, help="timed repetitions per figure (default: the preset's)")
    ap.add_argument("--steps", type=int, help="train steps per repetition (default: the preset's)")
    ap.add_argument("--pool-k", type=int, help="stacked candidates in the pool part (default: the preset's)")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override for every part (repeatable)")
    ap.add_argument(
        "--compile-cache",
        action="store_true",
        help="e2e: use JAX's persistent compilation cache (.cache/jax) as experiments.reproduce does;"
        " off by default, so the compile share is that of a cold run",
    )
    ap.add_argument(
        "--e2e-out",
        help="e2e: run each grid in <this>/<name> (must not exist) and keep its results, instead of a temporary directory",
    )
    ap.add_argument("--peer-threads", help="peer: torch thread counts to time, e.g. 2,1 (default: the core count)")
    ap.add_argument("--replicates", type=int, default=3, help="replicas part: replicates per cell (default 3)")
    ap.add_argument(
        "--cell-steps", type=int, help="cell part: continuation steps per repetition (default 200; 4 with --tiny)"
    )
    ap.add_argument("--data-mb", type=float, help="data part: corpus MB of the new path (default 400; 4 with --tiny)")
    ap.add_argument(
        "--data-old-mb", type=float, help="data part: corpus MB of the old path (default 40; 2 with --tiny)"
    )
    ap.add_argument("--peak-tflops", type=float, help="gpu part: dense bf16 peak per device (default: by device kind)")
    ap.add_argument(
        "--machine", help="results file name (default: <hostname>-<cpu vendor>, <hostname>-gpu for --preset gpu)"
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results directory")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. 'machine busy')")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    parts = [x for x in args.parts.split(",") if x]
    bad = set(parts) - set(PARTS)
    if bad:
        raise SystemExit(f"--parts has unknown names {sorted(bad)}; use a subset of {','.join(PARTS)}")
    p = preset(args.preset, args.tiny)
    p = dataclasses.replace(
        p,
        reps=args.reps or p.reps,
        steps_per_rep=args.steps or p.steps_per_rep,
        pool_k=args.pool_k or p.pool_k,
        overrides=p.overrides + args.override,
    )
    out_dir = Path(args.out).absolute()
    name = args.machine or f"{machine_name()}-{cpu_kind() if p.name == 'cpu' else p.name}"
    os.chdir(REPO)  # configs name data paths relative to the repository

    import jax

    if p.matmul_precision != "default":
        jax.config.update("jax_default_matmul_precision", p.matmul_precision)
    if args.compile_cache:
        from growth.store.compile_cache import enable

        enable(REPO / ".cache" / "jax")

    path = out_dir / f"{name}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results |= {
        "machine": machine_info(),
        "settings": {
            "preset": p.name,
            "reps": p.reps,
            "steps_per_rep": p.steps_per_rep,
            "pool_k": p.pool_k,
            "overrides": p.overrides,
            "matmul_precision": p.matmul_precision,
            "compile_cache": args.compile_cache,
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
        "note": args.note,
    }
    cfg = compose(p.overrides)

    def stamp(d: dict) -> dict:
        # Each part keeps its own time, load and counts: a later run of other parts merges beside it.
        return d | {
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_avg": os.getloadavg(),
            "reps": p.reps,
            "steps_per_rep": p.steps_per_rep,
        }

    from benchmarks import jax_parts

    if "limit" in parts:
        log("limit: matmul GFLOP/s")
        results["limit"] = stamp(jax_parts.matmul_limit(p))
    limit = results.get("limit")
    models = {
        "small": (cfg.model, cfg.pretrain.batch_size),
        "wide": (jax_parts.wide_model(cfg), cfg.runner.batch_size),
    }
    if "step" in parts:
        results["step"] = {}
        for label, (mcfg, bs) in models.items():
            log(f"step: {label} d_model={mcfg.d_model}")
            results["step"][label] = stamp(jax_parts.train_step_throughput(cfg, mcfg, bs, p, limit))
    if "pool" in parts:
        log(f"pool: {p.pool_k} stacked candidates")
        results["pool"] = stamp(jax_parts.pool_speedup(cfg, p))
    if "peer" in parts:
        threads = [int(t) for t in args.peer_threads.split(",")] if args.peer_threads else None
        results["peer"] = peer_part(cfg, p, models, threads)
    if "cell" in parts:
        from benchmarks import study_cell

        steps = args.cell_steps or (4 if args.tiny else 200)
        threads = [int(t) for t in args.peer_threads.split(",")] if args.peer_threads else [os.cpu_count() or 1]
        log(f"cell: study_cpu_long's six models, {steps} steps, ours against torch.compile")
        results["cell"] = stamp(study_cell.measure(p, args.tiny, steps, threads, args.override)) | {
            "steps_per_rep": steps
        }
    if "e2e" in parts:
        results.setdefault("e2e", {})
        names = args.e2e or ("smoke" if args.tiny else "smoke,paper_cpu_presets")
        for exp in [x for x in names.split(",") if x]:
            results["e2e"][exp] = stamp(e2e_part(exp, p, args))
    if "replicas" in parts:
        from benchmarks.replicas import compare

        log(f"replicas: {args.replicates} replicates x {p.pool_k} candidates, stacked against one process per core")
        results["replicas"] = stamp(compare(cfg, p, args.replicates, p.steps_per_rep, p.reps, args.tiny))
    if "data" in parts:
        from benchmarks import data_part

        new_mb = args.data_mb or (4 if args.tiny else 400)
        old_mb = args.data_old_mb or (2 if args.tiny else 40)
        results["data"] = data_part.run(new_mb, old_mb, log=log) | {
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_avg": os.getloadavg(),
        }
    if "gpu" in parts:
        from benchmarks import gpu_part

        log("gpu: experiment=paper_gpu train step on every device")
        results["gpu"] = stamp(gpu_part.measure(args.tiny, p.reps, p.steps_per_rep, args.peak_tflops, args.override))
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["targets"] = targets(results)

    from benchmarks.report import markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    path.with_suffix(".md").write_text(markdown(results))
    log(f"wrote {path} and {path.with_suffix('.md')}")
    return results


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peer_part(cfg, p, models, peer_threads: list[int] | None = None) -> dict:
    """Ours and every peer, repetitions in alternation within one process; our ratio to each.

    Peers: Hugging Face GPT-2 + AdamW (foreach), and the best-practice model (peer.best_practice_model:
    fused qkv, SDPA, F.cross_entropy, fused AdamW) eager and under torch.compile, each at every thread
    count of `peer_threads` (default peer.peer_threads()). The target ratios are against each peer at
    its fastest thread count: on a machine whose cores other work shares, OpenMP's barriers make
    torch at the core count many times slower than at one thread.
    """
    import jax

    from benchmarks import jax_parts, peer

    why = peer.torch_missing()
    if why:
        return {"skipped": why}
    if jax.default_backend() != "cpu":
        return {"skipped": f"the peer is PyTorch on the CPU; this run's JAX backend is {jax.default_backend()}"}
    out = {}
    for label, (mcfg, bs) in models.items():
        log(f"peer: {label} d_model={mcfg.d_model}")
        runs = {"ours": jax_parts.step_runner(cfg, mcfg, bs, p)}
        fpt = runs["ours"][1]["flops_per_token"]  # the same model: the same FLOPs per token
        threads = peer_threads or peer.peer_threads()
        for t in threads:
            run, facts = peer.torch_runner(cfg, mcfg, bs, p, t)
            runs[f"torch_{t}t"] = (run, facts | {"flops_per_token": fpt})
            for compiled in (False, True) if p.peer_compiled else (False,):
                name = f"best_{'compiled' if compiled else 'eager'}_{t}t"
                log(f"peer: {label} {name}")
                run, facts = peer.best_practice_runner(cfg, mcfg, bs, p, t, compiled)
                runs[name] = (run, facts | {"flops_per_token": fpt})
        times = {k: [] for k in runs}
        for _ in range(p.reps):
            for k, (run, _) in runs.items():
                times[k] += repeat(run, 1, warmup=0)
        entry = {}
        for k, (_, facts) in runs.items():
            entry[k] = facts | jax_parts.rates(times[k], facts, p.steps_per_rep)
        for k in runs:
            if k != "ours":
                # The ratio per interleaved pair of repetitions, then its median: robust to drift.
                pairs = [b / a for a, b in zip(times["ours"], times[k], strict=True)]
                entry[k]["ours_over_peer"] = spread(pairs)["median"]
                entry[k]["ours_over_peer_spread"] = spread(pairs)
        # Against each peer at its best thread count (the strongest setting of that peer on this machine).
        for kind, prefix in (("hf", "torch_"), ("best_eager", "best_eager_"), ("best_compiled", "best_compiled_")):
            ratios = [entry[k]["ours_over_peer"] for k in runs if k.startswith(prefix)]
            if ratios:
                entry[f"ours_over_{kind}"] = min(ratios)
        entry["ours_over_best_peer"] = min(entry[k]["ours_over_peer"] for k in runs if k != "ours")
        entry["same_param_count"] = all(entry[k]["params"] == entry["ours"]["params"] for k in runs)
        out[label] = entry | {
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_avg": os.getloadavg(),
            "reps": p.reps,
            "steps_per_rep": p.steps_per_rep,
        }
    return out


def e2e_part(exp: str, p, args) -> dict:
    from benchmarks.e2e import end_to_end

    log(f"e2e: experiment={exp}")
    extra = [o for o in args.override if not o.startswith("experiment=")]
    return end_to_end(exp, p, extra, CompileClock(), args.e2e_out)


def targets(results: dict) -> dict:
    """Each target with the measured value and whether it is met; absent parts are left out."""
    got = {}
    if "fraction_of_limit" in results.get("step", {}).get("wide", {}):
        got["wide_step_fraction_of_limit"] = results["step"]["wide"]["fraction_of_limit"]
    if "speedup" in results.get("pool", {}):
        got["pool_speedup"] = results["pool"]["speedup"]["median"]
    peer = results.get("peer", {})
    for label in ("small", "wide"):
        if "ours_over_hf" in peer.get(label, {}):
            got[f"peer_ratio_hf_{label}"] = peer[label]["ours_over_hf"]
    for label in ("small", "wide"):
        if "ours_over_best_compiled" in peer.get(label, {}):
            got[f"peer_ratio_compiled_{label}"] = peer[label]["ours_over_best_compiled"]
    if "ours_over_best_peer" in results.get("cell", {}):
        got["study_cell_peer_ratio"] = results["cell"]["ours_over_best_peer"]
    if "paper_cpu" in results.get("e2e", {}):
        got["paper_cpu_wall_s"] = results["e2e"]["paper_cpu"]["wall_s"]
    if "paper_cpu_presets" in results.get("e2e", {}):
        got["paper_cpu_presets_wall_s"] = results["e2e"]["paper_cpu_presets"]["wall_s"]
    if "new" in results.get("data", {}):
        got["data_peak_rss_gb"] = results["data"]["new"]["peak_rss_gb"]
        got["data_tokens_per_s_ratio"] = results["data"]["tokens_per_s_ratio"]
    out = {}
    for k, value in got.items():
        text, threshold = TARGETS[k]
        met = (
            value < threshold
            if k.endswith("_wall_s")
            else value <= threshold
            if k.endswith("_gb")
            else value >= threshold
        )
        out[k] = {"target": text, "threshold": threshold, "value": value, "met": bool(met)}
    for k in REQUIRED_TARGETS:
        if k not in out:
            text, threshold = TARGETS[k]
            out[k] = {
                "target": text,
                "threshold": threshold,
                "value": None,
                "met": False,
                "note": "not measured in this run",
            }
    return out


if __name__ == "__main__":
    main()
