"""What is measured and what it costs: the comparison metrics (metrics) and the registry of every
row metric and selector signal (metric_registry), tokens and FLOPs of a step, the units of the speedup
(cost), tokens/s and MFU (throughput), and the log-spaced evaluation lags (lags).

May import: growth, growth.models, growth.widen.
"""
