"""The jobs of an experiment and their bookkeeping. Pretraining (pretrain); one (seed, growth step)
of grow cells (runner), with the candidate pool and its compiled programs (pool), the training between
evaluation lags (continuation), the evaluation at a lag and its rows (evaluation), the weight metrics
(param_metrics) and a base run to grow from (base_run); the scratch baseline (scratch); a grid of
them (grid) with its plan and live progress (plan, progress); and the results store (results).
Pretraining lives here, not in training: it reports progress and throughput, and those read the grown
models' sizes.

May import: growth, growth.distributed, growth.store, growth.data, growth.models, growth.training,
growth.widen, growth.measure.
"""
