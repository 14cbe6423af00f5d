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
    python -m benchmarks.explore commits --base REV --head REV [--wide]  two commits' step, alternating processes
    python -m benchmarks.explore products [--wide]             each matrix product of the step alone, XLA and torch

Variants are explicit loss functions handed to growth.training.train's step builders (`loss=`); nothing in
growth/ is patched. The compiled baseline and variants run in alternation, so a drift in machine load
hits all alike. Every variant is first checked against the baseline's loss and gradients (with dropout
off: variants of the dropout masks change the random stream, not the function). The findings are in
docs/performance.md.
"""
