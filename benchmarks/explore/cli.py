"""The command line of `python -m benchmarks.explore`: one subcommand per question (benchmarks/explore/)."""

from __future__ import annotations

import argparse
import json

from benchmarks import explore
from benchmarks.common import PRESETS
from benchmarks.explore.cells import cell_split, eval_split
from benchmarks.explore.commits import compare_commits
from benchmarks.explore.flags import xla_flags
from benchmarks.explore.losses import VARIANTS
from benchmarks.explore.products import products
from benchmarks.explore.profile import profile
from benchmarks.explore.steps import batch_scan, pool_impls, variants
from growth.config import Regime

# One entry per subcommand: its name on the command line and the function that answers it.
SUBCOMMANDS = {
    "profile": profile,
    "variants": variants,
    "pool": pool_impls,
    "batch": batch_scan,
    "flags": xla_flags,
    "cell": cell_split,
    "eval": eval_split,
    "commits": compare_commits,
    "products": products,
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.explore",
        description=explore.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("what", choices=list(SUBCOMMANDS))
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    ap.add_argument("--wide", action="store_true", help="the wide model (d_model and heads x growth.k)")
    ap.add_argument("--pool", type=int, default=0, help="vmap the step over this many stacked copies")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: runner.batch_size)")
    ap.add_argument("--steps", type=int, default=5, help="steps per timed repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--top", type=int, default=12, help="profile: ops to list")
    ap.add_argument("--width", type=int, default=160, help="profile: characters of each listed op's HLO text")
    ap.add_argument("--variant", default="baseline", choices=sorted(VARIANTS), help="profile: under this variant")
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants: which to run (with the baseline)")
    ap.add_argument("--dropout", type=float, default=0.0, help="variants: model dropout (0.1: the stochastic regime)")
    ap.add_argument("--regime", default="deterministic", choices=[r.value for r in Regime], help="cell: the regime")
    ap.add_argument("--base", default="HEAD~1", help="commits: the commit to compare against")
    ap.add_argument("--head", default="HEAD", help="commits: the commit under test")
    ap.add_argument("--rounds", type=int, default=4, help="commits: alternating rounds (one process per commit each)")
    args = ap.parse_args(argv)
    out = SUBCOMMANDS[args.what](args)
    print(json.dumps(out, indent=1, default=float))
