"""The markdown table of a benchmark results file."""

from __future__ import annotations


def _s(d: dict, fmt: str = "{:,.0f}") -> str:
    """'median [min, max]' of a spread."""
    return f"{fmt.format(d['median'])} [{fmt.format(d['min'])}, {fmt.format(d['max'])}]"


def _load(part: dict) -> str:
    return "/".join(f"{x:.1f}" for x in part.get("load_avg", ()))


def _when(part: dict) -> str:
    """' (R reps x S steps, load a/b/c)' for a part stamped by benchmarks.run."""
    if "reps" not in part:
        return ""
    return f" ({part['reps']} reps x {part['steps_per_rep']} steps, load {_load(part)})"


def _allocator(m: dict) -> str:
    """The allocator line: huge pages change every figure in the process, ours and the peers' alike."""
    if "glibc_tunables" not in m:
        return "Allocator: not recorded (before the huge-pages setting of issue 29)."
    tunables = m["glibc_tunables"] or "none"
    return f"Allocator: GLIBC_TUNABLES {tunables}; transparent huge pages {m['transparent_hugepages'] or 'n/a'}."


def markdown(r: dict) -> str:
    m, st = r["machine"], r["settings"]
    lines = [
        f"# Benchmark: {m['hostname']} ({st['preset']} preset)",
        "",
        f"{m['cpu']}, {m['cores']} cores, JAX {m['jax']} ({m['backend']}), {m['date']}.",
        "Vector extensions: "
        + (", ".join(f for f, on in m.get("cpu_flags", {}).items() if on) or "not recorded")
        + ". Only ratios measured within one run compare across machines.",
        _allocator(m),
        (
            "Figures: median [min, max] of repeated measurements after a warm-up; each part names its"
            " repetitions and the 1/5/15-minute load average when it finished (above 0 means other work"
            " shared the cores)."
        ),
    ]
    if r.get("note"):
        lines += ["", f"**Note:** {r['note']}"]
    if "gpu" in r:
        g = r["gpu"]
        mfu = f"{g['mfu']:.1%}" if g.get("mfu") is not None else "n/a (" + g.get("mfu_note", "") + ")"
        lines += [
            "",
            f"## experiment=paper_gpu train step ({g['device_kind']} x {g['devices']}, {g['compute_dtype']}){_when(g)}",
            "",
            f"tokens/s {_s(g['tokens_per_s'])}; model {g['model_tflops']:,.3f} TFLOP/s; MFU {mfu}.",
        ]
    if "data" in r:
        d = r["data"]
        lines += [
            "",
            f"## Data path (growth.data.pipeline.load; load {_load(d)})",
            "",
            "| path | corpus MB | stories | train tokens | seconds | tokens/s | peak RSS GB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label in ("new", "old"):
            x = d[label]
            lines.append(
                f"| {label} | {x['bytes'] / 2**20:,.0f} | {x['stories']:,} | {x['train_tokens_packed']:,} |"
                f" {x['seconds']:,.1f} | {x['tokens_per_s']:,.0f} | {x['peak_rss_gb']:.2f} |"
            )
        lines += ["", f"Ratio of tokens/s, new over old: **{d['tokens_per_s_ratio']:.2f}x**."]
    if "limit" in r:
        L = r["limit"]
        lines += ["", f"## 1. Matmul limit ({L['dtype']}){_when(L)}", "", "| size | GFLOP/s |", "|---:|---:|"]
        lines += [f"| {n} | {_s(v, '{:,.1f}')} |" for n, v in L["gflops"].items()]
        lines += ["", f"Limit: **{L['limit_gflops']:,.1f} GFLOP/s** (n = {L['limit_size']})."]
    if "step" in r:
        lines += [
            "",
            f"## 2. Train step (growth.training.train.jit_train_step){_when(next(iter(r['step'].values())))}",
            "",
            "FLOPs/token = 6 N + 12 n_layers d_model context; N = parameters less the token and position embeddings.",
            "",
            "| model | d / heads / layers | batch | params (N) | step ms | tokens/s | model GFLOP/s | of limit | of interleaved matmul |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, s in r["step"].items():
            frac = f"{s['fraction_of_limit']:.0%}" if "fraction_of_limit" in s else "-"
            inter = _s(s["fraction_of_interleaved_matmul"], "{:.0%}")
            lines.append(
                f"| {label} | {s['d_model']} / {s['n_heads']} / {s['n_layers']} | {s['batch_size']} |"
                f" {s['params']:,} ({s['params_matmul']:,}) | {_s(s['step_ms'], '{:,.1f}')} | {_s(s['tokens_per_s'])} |"
                f" {s['model_gflops']:,.1f} | {frac} | {inter} |"
            )
        usage = [
            f"{label} {s['page_faults_per_step']:,.0f} page faults a step, {s['cores_user']:.2f} cores in user code"
            f" and {s['cores_kernel']:.2f} in the kernel"
            for label, s in r["step"].items()
            if "page_faults_per_step" in s
        ]
        if usage:
            lines += ["", "Memory: " + "; ".join(usage) + " (getrusage over the timed steps)."]
    if "pool" in r:
        P = r["pool"]
        lines += [
            "",
            f"## 3. Candidate pool: {P['candidates']} wide candidates (d_model {P['d_model']}), {P['steps']} steps each{_when(P)}",
            "",
            "| pool step | stacked s | one by one s | speedup |",
            "|---|---:|---:|---:|",
        ]
        by_step = P.get("by_pool_step") or {"vmap": P}
        for how, v in by_step.items():
            chosen = " (runner default)" if how == P.get("pool_step") else ""
            lines.append(
                f"| {how}{chosen} | {_s(v['stacked_s'], '{:.3g}')} | {_s(P['separate_s'], '{:.3g}')} |"
                f" {_s(v['speedup'], '{:.2f}')}x |"
            )
    if "peer" in r:
        first = next(iter(r["peer"].values()))
        lines += [
            "",
            f"## 4. Peers: Hugging Face GPT-2 + AdamW, best-practice PyTorch eager and compiled (CPU)"
            f"{_when(first) if isinstance(first, dict) else ''}",
            "",
            "ours / this: the median over interleaved repetition pairs of (our tokens/s) / (its tokens/s).",
            "",
        ]
        if "skipped" in r["peer"]:
            lines.append(r["peer"]["skipped"])
        else:
            lines += ["| model | run | tokens/s | ours / this |", "|---|---|---:|---:|"]
            for label, e in r["peer"].items():
                for k, v in e.items():
                    if isinstance(v, dict) and "tokens_per_s" in v:
                        ratio = f"{v['ours_over_peer']:.2f}" if "ours_over_peer" in v else ""
                        run = (
                            "ours (JAX)"
                            if k == "ours"
                            else f"torch {v['torch']}, {v['threads']} thread(s), {v['attn_implementation']}"
                        )
                        lines.append(f"| {label} | {run} | {_s(v['tokens_per_s'])} | {ratio} |")
    if "cell" in r:
        C = r["cell"]
        lines += [
            "",
            f"## 4b. A study_cpu_long cell: six models, {C['steps']} continuation steps{_when(C)}",
            "",
            "ours: the runner's continuation (growth.experiment.continuation.Stepper); torch: the best-practice GPT under"
            " torch.compile, fused AdamW, the six models one after another, or (batched) the five wide ones stacked in"
            " one vmapped model; the target takes the faster peer (benchmarks/study_cell.py).",
            "",
            "| run | tokens/s | ours / this |",
            "|---|---:|---:|",
        ]
        for k, v in C.items():
            if isinstance(v, dict) and "tokens_per_s" in v:
                ratio = f"{v['ours_over_peer']:.2f}" if "ours_over_peer" in v else ""
                run = "ours (JAX), groups " + " + ".join(map(str, v["groups"])) if k == "ours" else k
                if k == "ours" and "stack_at_most" in v:
                    run += f", stack_at_most {v['stack_at_most']}, concurrent_programs {v['concurrent_programs']}"
                lines.append(f"| {run} | {_s(v['tokens_per_s'])} | {ratio} |")
    if "e2e" in r:
        lines += [
            "",
            "## 5. End to end (growth.experiment.grid.reproduce, one run each)",
            "",
            "| experiment | cells | wall s | regime cells s | pretrain and rest s | compile s | compile share | |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, e in r["e2e"].items():
            grow = f"{e['grow_s']:,.1f} | {e['pretrain_and_rest_s']:,.1f}" if "grow_s" in e else " | "
            lines.append(
                f"| {name} | {e['cells']} | {e['wall_s']:,.1f} | {grow} | {e['compile_s']:,.1f} |"
                f" {e['compile_share']:.0%} | load {_load(e)} |"
            )
    if "replicas" in r:
        R = r["replicas"]
        lines += [
            "",
            f"## 6. Replicates: {R['replicates']} x {R['candidates_per_replicate']} continuations, {R['steps']} steps{_when(R)}",
            "",
            "| way | s | speedup over stacked |",
            "|---|---:|---:|",
            f"| stacked in one pool step, this process | {_s(R['stacked_s'], '{:.3g}')} | 1 |",
            f"| {R['processes']} processes pinned one per core, {R['replicates_per_process']} replicates each |"
            f" {_s(R['processes_s'], '{:.3g}')} | {_s(R['processes_speedup'], '{:.2f}')}x |",
        ]
    if r.get("targets"):
        lines += ["", "## Targets", "", "| target | value | met |", "|---|---:|:---:|"]
        for t in r["targets"].values():
            v = t["value"]
            if v is None:
                val = t.get("note", "not measured")
            elif t["threshold"] > 100:
                val = f"{v:,.0f} s"
            elif t["threshold"] < 0.5:
                val = f"{v:.0%}"
            else:
                val = f"{v:.2f}x"
            lines.append(f"| {t['target']} | {val} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"
