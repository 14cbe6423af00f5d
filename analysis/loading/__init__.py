"""Results in: every results.jsonl below a directory as one DataFrame (load), and per cell its stage
lags and a per-candidate summary of every registered metric (cells).

May import: growth.measure, growth.widen.
"""
