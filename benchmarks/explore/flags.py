"""The flags subcommand: the step under XLA_FLAGS sets, one process per measurement."""

from __future__ import annotations

import json
import os

from benchmarks.explore.setup import machine_info_brief

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
