"""`python -m benchmarks.explore ...`: the subcommands of benchmarks/explore/cli.py."""

from benchmarks.explore.cli import main

main()
