"""The markdown table of a benchmark results file."""

from __future__ import annotations


def _s(d: dict, fmt: str = "{:,.0f}") -> str:
    """'median [min, max]' of a spread."""
    return f"{fmt.format(d['median'])} [{fmt.format(d['min'])}, {fmt.format(d['max'])}]"


def markdown(r: dict) -> str:
    m, st = r["machine"], r["settings"]
    lines = [
        f"# Benchmark: {m['hostname']} ({st['preset']} preset)",
        "",
        f"{m['cpu']}, {m['cores']} cores, JAX {m['jax']} ({m['backend']}), {m['date']}.",
        f"Load average at start {tuple(round(x, 2) for x in m['load_avg_start'])},"
        f" at end {tuple(round(x, 2) for x in m.get('load_avg_end', ()))}."
        f" Median [min, max] of {st['reps']} repetitions after a warm-up; {st['steps_per_rep']} steps per repetition.",
    ]
    if r.get("note"):
        lines += ["", f"**Note:** {r['note']}"]
    if "limit" in r:
        L = r["limit"]
        lines += ["", f"## 1. Matmul limit ({L['dtype']})", "", "| size | GFLOP/s |", "|---:|---:|"]
        lines += [f"| {n} | {_s(v, '{:,.1f}')} |" for n, v in L["gflops"].items()]
        lines += ["", f"Limit: **{L['limit_gflops']:,.1f} GFLOP/s** (n = {L['limit_size']})."]
    if "step" in r:
        lines += [
            "",
            "## 2. Train step (growth.train.jit_train_step)",
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
    if "pool" in r:
        P = r["pool"]
        lines += [
            "",
            f"## 3. Candidate pool: {P['candidates']} wide candidates (d_model {P['d_model']}), {P['steps']} steps each",
            "",
            "| stacked (vmapped) s | one by one s | speedup |",
            "|---:|---:|---:|",
            f"| {_s(P['stacked_s'], '{:.3g}')} | {_s(P['separate_s'], '{:.3g}')} | {_s(P['speedup'], '{:.2f}')}x |",
        ]
    if "peer" in r:
        lines += ["", "## 4. Peer: Hugging Face GPT-2 + torch.optim.AdamW (CPU)", ""]
        if "skipped" in r["peer"]:
            lines.append(r["peer"]["skipped"])
        else:
            lines += ["| model | run | tokens/s | ours / this |", "|---|---|---:|---:|"]
            for label, e in r["peer"].items():
                for k, v in e.items():
                    if isinstance(v, dict) and "tokens_per_s" in v:
                        ratio = f"{v['ours_over_peer']:.2f}" if "ours_over_peer" in v else ""
                        run = "ours (JAX)" if k == "ours" else f"torch {v['torch']}, {v['threads']} thread(s), {v['attn_implementation']}"
                        lines.append(f"| {label} | {run} | {_s(v['tokens_per_s'])} | {ratio} |")
    if "e2e" in r:
        lines += ["", "## 5. End to end (growth.grid.reproduce)", "",
                  "| experiment | cells | wall s | compile s | compile share |", "|---|---:|---:|---:|---:|"]
        for name, e in r["e2e"].items():
            lines.append(f"| {name} | {e['cells']} | {e['wall_s']:,.1f} | {e['compile_s']:,.1f} | {e['compile_share']:.0%} |")
    if r.get("targets"):
        lines += ["", "## Targets", "", "| target | value | met |", "|---|---:|:---:|"]
        for t in r["targets"].values():
            v = t["value"]
            val = f"{v:.0%}" if t["threshold"] < 1 else (f"{v:,.0f} s" if t["threshold"] > 100 else f"{v:.2f}x")
            lines.append(f"| {t['target']} | {val} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"
