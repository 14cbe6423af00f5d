"""The commits subcommand: the train step of two commits, one process each, in alternating rounds.

A change to growth/ itself (the model, the loss, the layers) cannot run beside the code it replaces in
one process, so each round checks out both commits into temporary worktrees and times the baseline
step of each (`benchmarks.explore variants --only`, the commit's own code on the import path) in turn;
the gain is taken per round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REPO, spread
from benchmarks.explore.setup import machine_info_brief


def _step_ms(tree: Path, args) -> float:
    cmd = [sys.executable, "-m", "benchmarks.explore", "variants", "--only", "--reps", str(args.reps)]
    cmd += ["--steps", str(args.steps)] + (["--wide"] if args.wide else [])
    for o in args.override:
        cmd += ["--override", o]
    env = os.environ | {"PYTHONPATH": str(tree)}
    r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout[r.stdout.index("{") :])["variants"]["baseline"]["step_ms"]


def compare_commits(args) -> dict:
    """Median step ms of `args.base` and `args.head` over `args.rounds` alternating rounds; gain = base / head."""
    ms: dict[str, list[float]] = {args.base: [], args.head: []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for rev in ms:
            trees[rev] = Path(tmp) / rev.replace("/", "_")
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(trees[rev]), rev], check=True
            )
        try:
            for _ in range(args.rounds):
                for rev in ms:
                    ms[rev].append(_step_ms(trees[rev], args))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    gains = [b / h for b, h in zip(ms[args.base], ms[args.head], strict=True)]
    return {
        "machine": {"cpu": machine_info_brief(), "load_avg": os.getloadavg()},
        "model": "wide" if args.wide else "small",
        "step_ms": ms,
        "gain_per_round": gains,
        "gain_median": spread(gains)["median"],
    }
