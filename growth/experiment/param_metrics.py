"""Rows of the metrics computed from a candidate's weights (Metric.from_params, growth/measure/metric_registry.py).

The comparison program measures what the held-out text shows (logits, residual streams); these read
the wide weights themselves, once per candidate at their stage's lag, on the host: e.g. clone_escape,
how far the wide model has left the cloned subspace over the continuation. Only width candidates are
measured (a depth candidate's tensors are not widened; continue_small is the small model).
"""

from __future__ import annotations

import jax
import numpy as np

from growth import widen
from growth.config import Config
from growth.experiment.results import Row
from growth.measure import metric_registry
from growth.measure.metric_registry import Stage
from growth.widen.trees import flatten


def stage_lags(cfg: Config) -> dict[Stage, int]:
    """The lag each single-lag stage is written at."""
    return {Stage.zero: 0, Stage.probe: cfg.probe_lag, Stage.continuation: cfg.continuation_lag}


def rows(cfg: Config, lag: int, groups: list) -> list[Row]:
    """One row per (width candidate, weight metric) whose stage falls on `lag` (every lag for a curve)."""
    wanted = [
        m
        for m in metric_registry.METRICS.values()
        if m.from_params is not None and (m.stage == Stage.curve or stage_lags(cfg).get(m.stage) == lag)
    ]
    if not wanted:
        return []
    factors = widen.core.factors(cfg.model, widen.core.check_k(cfg.growth.k))
    out = []
    for group in groups:
        stacked = flatten(jax.device_get(group.state.params))
        for i, name in enumerate(group.names):
            entry = widen.registry.get(name)
            if entry is None or not entry.widens or not group.has_subspace[i]:
                continue
            params = {path: np.asarray(x[i]) for path, x in stacked.items()}
            for metric in wanted:
                assert metric.from_params is not None
                value = metric.from_params(params, factors)
                if value is not None:
                    out.append(Row(name, lag, metric.name, value))
    return out
