"""A grow cell's evaluation at one lag and the rows it writes (growth/experiment/runner.py runs the cell).

Per-sequence eval losses of the small reference and every candidate, the lag-0 and probe-lag metric rows
(growth/measure/metric_registry.py), the eval-loss curve's rows, and the step a training loss went non-finite.
"""

from __future__ import annotations

import numpy as np

from growth.config import Config
from growth.distributed import mesh as mesh_lib
from growth.experiment import pool
from growth.experiment.results import Row
from growth.measure import metric_registry
from growth.measure.metric_registry import Context, Stage
from growth.measure.metrics import trapezoid_auc


def first_nonfinite(losses_SxC: np.ndarray, names: list[str], first_step: int) -> dict[str, int]:
    """Step at which each candidate's training loss first became NaN or inf."""
    out = {}
    for i, name in enumerate(names):
        bad = np.flatnonzero(~np.isfinite(losses_SxC[:, i]))
        if len(bad):
            out[name] = first_step + int(bad[0])
    return out


def evaluate(
    cfg: Config, lag: int, eval_set: np.ndarray, groups: list[pool.Group], params0: list, small_params
) -> tuple[dict[str, np.ndarray], list[Row]]:
    """Per-sequence losses of every model at `lag`, and the lag-0 / probe rows of the wide ones."""
    chunk, mesh = cfg.runner.eval_chunk, mesh_lib.make(cfg.mesh)  # chunks split over the mesh's data axis
    small_seq = pool.measure_small(cfg.model, small_params, eval_set, chunk, mesh)
    seqs, rows = {pool.REFERENCE: small_seq}, []
    n_tok = eval_set.shape[0] * (eval_set.shape[1] - 1)
    full = lag in (0, cfg.probe_lag)
    mean = small_seq.mean()  # float32, as the loss gap has always been computed
    for group, p0 in zip(groups, params0, strict=True):
        m = pool.measure(group, p0, small_params, cfg.model, eval_set, chunk, full, cfg.runner.pool_step, mesh)
        for i, name in enumerate(group.names):
            seqs[name] = m.seq_loss[i]
            stages = [st for st, at in ((Stage.zero, 0), (Stage.probe, cfg.probe_lag)) if lag == at]
            ctx = Context(n_tok, group.model_cfg.vocab_size, group.has_subspace[i], m.seq_loss[i].mean(), mean)
            sums = {k: v[i] for k, v in m.sums.items()}
            for metric in metric_registry.of_stage(*stages):
                value = metric.value(sums, ctx) if metric.value is not None else None
                if value is not None:
                    rows.append(Row(name, lag, metric.name, value))
    return seqs, rows


def curve_rows(name: str, curve: dict[int, float], lags: list[int], diverged_at: int | None) -> list[Row]:
    """eval_loss at every lag reached; auc and final_loss, or a diverged row."""
    rows = [Row(name, lag, "eval_loss", v) for lag, v in sorted(curve.items())]
    if diverged_at is not None:
        return [*rows, Row(name, diverged_at, "diverged", 1.0)]
    values = [curve[lag] for lag in lags]
    return [
        *rows,
        Row(name, lags[-1], "auc", trapezoid_auc(lags, values)),
        Row(name, lags[-1], "final_loss", values[-1]),
    ]
