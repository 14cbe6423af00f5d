"""The metric and signal registry: one entry per row metric of results.jsonl, read by every consumer.

A metric says where it is written (its stage: lag 0, the probe lag, every eval lag, the continuation
lag), how it is computed (the per-chunk *parts* the pool's compiled comparison program sums, and a
`value` that turns a candidate's sums into the number), how it is reduced over sequences (text for the
docs), its direction (a utility, a cheap signal, or neither), its noise floor, its label and number
format. The runner writes one row per (candidate, metric) from it; the analysis (summary columns,
selectors, rankings, tables, plots) reads it. A *signal* is a view of a summary column that predicts
the continuation ranking (analysis/ranking/selectors.py); a metric registered with `signal=...` gets one.

    register_part(Part("top1", lambda o: {"top1": (o.logits.argmax(-1) == o.targets).sum()}))
    register_metric(Metric("probe_top1", Stage.probe, "probe top-1 accuracy", parts=("top1",),
                           value=lambda s, c: s["top1"] / c.n_tokens), signal=Direction.higher_better)

docs/extending.md has the worked example.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jax
import jax.numpy as jnp

from growth.measure import metrics


class Stage(StrEnum):
    zero = "zero"  # lag 0 only (preservation)
    probe = "probe"  # the probe lag only
    curve = "curve"  # every eval lag
    continuation = "continuation"  # the continuation lag (the last lag)
    event = "event"  # the lag something happened at (divergence)


class Direction(StrEnum):
    lower_better = "lower is better"
    higher_better = "higher is better"
    none = "not ranked"


# The summary column of a stage lag (analysis/loading/cells.py reads a metric at its stage's lag).
LAG_COLUMN = {Stage.zero: "zero_lag", Stage.probe: "probe_lag", Stage.continuation: "continuation_lag"}
# Paired loss differences smaller than this are float32 rounding, not evidence (eval losses near 3 carry
# about 3e-7 of rounding): a CI excludes zero only when it clears this margin (docs/analysis.md).
NUMERICAL_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Outputs:
    """What a part sees, per candidate, on one held-out chunk (inside the compiled comparison program)."""

    logits: jax.Array  # (B, L, V) the wide candidate's logits
    small_logits: jax.Array  # (B, L, V) the small model continued on the same batches
    ref_logits: jax.Array  # (B, L, V) the candidate at lag 0
    residual: jax.Array  # (B, L, D) the candidate's final residual stream
    projector: jax.Array  # (D, D) projector onto its inherited subspace (zeros if it has none)
    targets: jax.Array  # (B, L) next tokens


@dataclass(frozen=True)
class Part:
    """Named per-chunk quantities (fn returns {name: scalar}); chunks are combined by sum or max."""

    name: str
    fn: Callable[[Outputs], dict[str, jax.Array]]
    combine: str = "sum"  # sum | max


@dataclass(frozen=True)
class Context:
    """What a metric's value may use besides its sums."""

    n_tokens: int  # held-out tokens evaluated
    vocab_size: int  # of the candidate
    has_subspace: bool  # the candidate has an inherited subspace (not scratch_wide)
    mean_loss: Any  # the candidate's mean held-out loss at this lag (a float32 numpy scalar)
    small_mean_loss: Any  # the small model's, at the same lag


@dataclass(frozen=True)
class Metric:
    """One row metric of results.jsonl."""

    name: str  # the `metric` field of its rows
    stage: Stage  # where it is written
    label: str  # axis and table label
    reduction: str = "mean over held-out tokens"  # how it is reduced over sequences (docs)
    direction: Direction = Direction.none  # as a utility (auc: lower is better); signals are separate views
    noise_floor: float = 0.0  # |value| below this is float noise: ranked as exactly 0
    absolute: bool = False  # ranked (and drawn) by |value| (the loss gap)
    fmt: str | None = None  # format spec of one number; None: 4 decimals
    parts: tuple[str, ...] = ()  # the parts it needs (computed by the pool's comparison program)
    value: Callable[[dict[str, float], Context], float | None] | None = None  # None: written by the runner
    # A metric of the candidate's weights instead (growth/experiment/param_metrics.py writes it at its stage's lag):
    # (flat float64 params, the growth factor of every space) -> value, or None where undefined.
    from_params: Callable[[dict[str, Any], dict[str, int]], float | None] | None = None
    # A finished cell without it is run again (results.required_metrics); False: cells written before the
    # metric existed keep their rows (a new diagnostic must not redo a finished study).
    rerun_missing: bool = True


@dataclass(frozen=True)
class Signal:
    """A cheap signal: the summary column it reads and the direction that predicts a better candidate."""

    name: str
    column: str
    direction: Direction
    primary: bool = True  # False: a reversed-direction view, reported but kept out of claim 5's contest


@dataclass(frozen=True)
class Column:
    """A summary column of the analysis: a metric read at a stage lag."""

    name: str
    metric: str
    lag_column: str


PARTS: dict[str, Part] = {}
METRICS: dict[str, Metric] = {}
SIGNALS: dict[str, Signal] = {}
_EXTRA_COLUMNS: dict[str, Column] = {}


def register_part(part: Part, replace: bool = False) -> Part:
    if part.name in PARTS and not replace:
        raise ValueError(f"metric part {part.name!r} is already registered; pick another name")
    if part.combine not in ("sum", "max"):
        raise ValueError(f"metric part {part.name!r}: combine={part.combine!r} must be sum or max")
    PARTS[part.name] = part
    return part


def register_metric(metric: Metric, signal: Direction | None = None, replace: bool = False) -> Metric:
    """Add a metric (and, with `signal`, the selector signal of the same name that reads it)."""
    if metric.name in METRICS and not replace:
        raise ValueError(f"metric {metric.name!r} is already registered; pick another name")
    missing = [p for p in metric.parts if p not in PARTS]
    if missing:
        raise ValueError(f"metric {metric.name!r} needs unregistered parts {missing}; register_part them first")
    METRICS[metric.name] = metric
    if signal is not None:
        register_signal(Signal(metric.name, metric.name, signal), replace=replace)
    return metric


def register_signal(signal: Signal, replace: bool = False) -> Signal:
    if signal.name in SIGNALS and not replace:
        raise ValueError(f"signal {signal.name!r} is already registered; pick another name")
    SIGNALS[signal.name] = signal
    return signal


def register_column(column: Column) -> Column:
    """A summary column that reads a metric at another stage's lag (probe_eval_loss)."""
    _EXTRA_COLUMNS[column.name] = column
    return column


def unregister(name: str) -> None:
    """Remove a metric, its signal and its parts' registrations made for it (tests clean up)."""
    METRICS.pop(name, None)
    SIGNALS.pop(name, None)


def of_stage(*stages: Stage) -> list[Metric]:
    return [m for m in METRICS.values() if m.stage in stages]


def compared_parts() -> list[Part]:
    """Every part a registered metric needs, in registration order."""
    wanted = {p for m in METRICS.values() for p in m.parts}
    return [p for name, p in PARTS.items() if name in wanted]


def columns() -> dict[str, Column]:
    """Summary columns: every metric written at one stage lag, then the extra views."""
    out = {m.name: Column(m.name, m.name, LAG_COLUMN[m.stage]) for m in METRICS.values() if m.stage in LAG_COLUMN}
    return out | _EXTRA_COLUMNS


def metric_of(column: str) -> Metric | None:
    """The metric behind a summary column (or a metric name), None if unknown."""
    col = columns().get(column)
    return METRICS.get(col.metric if col else column)


def noise_floor(column: str) -> float:
    """The zero-step noise floor of a summary column (0 when it has none)."""
    m = metric_of(column)
    return m.noise_floor if m is not None and column == m.name else 0.0


def ranked_value(column: str, value: float) -> float:
    """The value a ranking compares: |v| for an absolute metric, 0 below its noise floor."""
    m = metric_of(column)
    absolute = m is not None and m.absolute and column == m.name
    out = abs(value) if absolute else value
    return 0.0 if abs(value) < noise_floor(column) else out


def fmt(column: str, value: Any) -> str:
    """One number in the style of its metric."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    m = metric_of(column)
    spec = m.fmt if m is not None and column == m.name else None
    if spec:
        return format(value, spec)
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def label(column: str) -> str:
    m = metric_of(column)
    col = columns().get(column)
    if col is not None and col.name != col.metric:
        return f"{m.label if m else col.metric} at the {col.lag_column.replace('_', ' ')}"
    return m.label if m else column


# ---------------------------------------------------------------- the built-in parts, metrics, signals


def _kl(o: Outputs) -> dict[str, jax.Array]:
    return {"kl": metrics.token_kl(o.small_logits, o.logits).sum()}


def _max_diff(o: Outputs) -> dict[str, jax.Array]:
    return {"max_diff": jnp.abs(o.logits - o.small_logits).max()}


def _change(o: Outputs) -> dict[str, jax.Array]:
    return {"change": jnp.sum((o.logits - o.ref_logits).astype(jnp.float32) ** 2)}


def _escape(o: Outputs) -> dict[str, jax.Array]:
    outside, total = metrics.escape_parts(o.residual, o.projector)
    return {"outside": outside, "total": total}


for _part in (Part("kl", _kl), Part("max_diff", _max_diff, "max"), Part("change", _change), Part("escape", _escape)):
    register_part(_part)

_ZERO, _PROBE = Stage.zero, Stage.probe
# fmt: off
register_metric(Metric(
    "loss_gap", _ZERO, "zero-step loss gap to the small model", "mean over held-out tokens, minus the small model's",
    noise_floor=1e-5, absolute=True, fmt="+.2e", value=lambda s, c: float(c.mean_loss - c.small_mean_loss),
))
register_metric(Metric(
    "token_kl", _ZERO, "zero-step token KL(small || wide)", noise_floor=1e-6, fmt=".2e",
    parts=("kl",), value=lambda s, c: s["kl"] / c.n_tokens,
))
register_metric(Metric(
    "max_logit_diff", _ZERO, "zero-step max |logit difference|", "max over held-out tokens", fmt=".2e",
    parts=("max_diff",), value=lambda s, c: s["max_diff"],
))
register_metric(Metric(
    "probe_kl", _PROBE, "probe KL to continue_small", fmt=".2e", parts=("kl",), value=lambda s, c: s["kl"] / c.n_tokens,
))
register_metric(Metric(
    "probe_rms", _PROBE, "probe RMS logit change", "root mean square over held-out tokens and the vocabulary",
    parts=("change",), value=lambda s, c: math.sqrt(s["change"] / (c.n_tokens * c.vocab_size)),
))
register_metric(Metric(
    "probe_escape", _PROBE, "probe escape fraction", "residual energy outside the inherited subspace / total",
    parts=("escape",), value=lambda s, c: s["outside"] / s["total"] if c.has_subspace else None,
))
register_metric(Metric("eval_loss", Stage.curve, "eval loss", "mean over held-out tokens", Direction.lower_better))
register_metric(Metric(
    "auc", Stage.continuation, "eval-loss AUC", "trapezoid over the eval lags / lag span", Direction.lower_better,
))
register_metric(Metric("final_loss", Stage.continuation, "final eval loss", direction=Direction.lower_better))
register_metric(Metric("wall_time", Stage.continuation, "wall time (s)", "the whole cell"))
register_metric(Metric(  # written by the runner from Grown.growth_tokens (ligo's operator; 0 for the others)
    "growth_tokens", _ZERO, "tokens spent growing", "pre-growth tokens the candidate trained on, once", fmt=".0f",
))
register_metric(Metric("diverged", Stage.event, "diverged", "the first lag with a non-finite loss"))
register_metric(Metric(
    "clone_escape", Stage.continuation, "distance from the cloned subspace",
    "sqrt(sum over widened tensors of |W - W averaged over its copies|^2 / |W|^2), on the weights",
    fmt=".2e", from_params=lambda params, fac: metrics.clone_escape(params, fac), rerun_missing=False,
))
register_column(Column("probe_eval_loss", "eval_loss", "probe_lag"))

register_signal(Signal("token_kl", "token_kl", Direction.lower_better))
register_signal(Signal("abs_loss_gap", "loss_gap", Direction.lower_better))
register_signal(Signal("probe_kl", "probe_kl", Direction.lower_better))
register_signal(Signal("probe_rms", "probe_rms", Direction.lower_better))
register_signal(Signal("probe_rms_high", "probe_rms", Direction.higher_better, primary=False))
register_signal(Signal("probe_escape", "probe_escape", Direction.higher_better))
register_signal(Signal("probe_eval_loss", "probe_eval_loss", Direction.lower_better))
# fmt: on
