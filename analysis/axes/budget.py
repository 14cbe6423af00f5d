"""The budget axis (SPEC section 5b): rankings, ties, winners and selector agreement at every evaluated lag.

Per group (analysis.axes.curves: experiment, policy, growth step, regime) and lag l, candidates are ranked by
their eval loss at l (the budget spent after growth; lower is better), pooled over seeds with the
hierarchical bootstrap (analysis.axes.hierarchical): one set of draws per group, shared by every lag,
candidate and signal, so every difference is paired. The leader is the best pooled mean; a candidate
whose paired difference to the leader has a CI containing 0 (beyond analysis.ranking.stats.NUMERICAL_TOLERANCE)
is tied with it, and the winners are the leader and its ties. `diff_to_reference` is each candidate's
paired difference to a reference candidate (exact_copy by default). Beside the pooled winners, each
seed's own winners come from the same rule on that seed's replicates and sequences alone.

Selector agreement at lag l: Kendall tau-b between each cheap signal of analysis.ranking.selectors (lower =
predicted better) and the pooled eval loss at l, over candidates with both, and its CI from the draws.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from analysis.axes import hierarchical as h
from analysis.axes.curves import Curves
from analysis.ranking.bootstrap import kendall_tau_b
from analysis.ranking.selectors import predicted_cost, signals
from growth.measure import metric_registry
from growth.measure.metric_registry import NUMERICAL_TOLERANCE, Stage

REFERENCE = "exact_copy"


def run_signals(frame: pd.DataFrame, curves: Curves) -> tuple[dict[str, np.ndarray], int | None]:
    """Per signal column (growth.measure.metric_registry): values s[s, r, c] of the group's runs, NaN where absent.

    A column is its metric at its stage lag: 0, or the probe lag (where the probe-stage metrics live).
    """
    experiment, policy, growth_step, regime = curves.key
    rows = frame[(frame["experiment"] == experiment) & (frame["policy"] == policy)
                 & (frame["growth_step"] == growth_step) & (frame["regime"] == regime)]  # fmt: skip
    probe_metrics = [m.name for m in metric_registry.of_stage(Stage.probe)]
    probe = rows.loc[rows["metric"].isin(probe_metrics), "lag"]
    probe_lag = int(probe.mode().min()) if len(probe) else None
    out = {}
    shape = (*curves.valid.shape, len(curves.candidates))
    columns = metric_registry.columns()
    for column in sorted({s.column for s in signals()}):
        source = columns.get(column)
        lag = {"zero_lag": 0, "probe_lag": probe_lag}.get(source.lag_column) if source else None
        if lag is None:
            continue  # a signal read at the continuation lag is the target, not a cheap signal
        grid = np.full(shape, np.nan)
        mine = rows[(rows["metric"] == source.metric) & (rows["lag"] == lag)]
        for r in mine.itertuples():
            if r.seed in curves.seeds and r.candidate in curves.candidates:
                s = curves.seeds.index(r.seed)
                if r.replicate in curves.replicates[s]:
                    grid[s, curves.replicates[s].index(r.replicate), curves.candidates.index(r.candidate)] = r.value
        out[column] = grid
    return out, probe_lag


def _nested(curves: Curves, values: dict[str, np.ndarray]) -> h.Nested:
    """Losses (C x L) and signals (broadcast over sequences) as one quantity axis."""
    s, r, n, c, l_ = curves.x.shape
    parts = [curves.x.reshape(s, r, n, c * l_)]
    parts += [np.broadcast_to(v[:, :, None, :], (s, r, n, c)) for v in values.values()]
    return h.nested(np.concatenate(parts, axis=3), curves.valid)


def _winners(est: np.ndarray, low: np.ndarray, high: np.ndarray, names: list[str]) -> tuple[list[int], list[str]]:
    """Ranks (competition; ties with the leader = 1) and winners, from means (C,) and diff-to-leader CIs."""
    ok = np.isfinite(est)
    if not ok.any():
        return [0] * len(names), []
    tied = ok & ~((low > NUMERICAL_TOLERANCE) | (high < -NUMERICAL_TOLERANCE))
    ranks = []
    for c in range(len(names)):
        if not ok[c]:
            ranks.append(0)
        else:
            ranks.append(1 if tied[c] else 1 + int((est[ok] < est[c]).sum()))
    return ranks, [n for n, rank in zip(names, ranks, strict=True) if rank == 1]


def _lag_tables(data: h.Nested, curves: Curves, b: int, rng: np.random.Generator, reference: str):
    """Per lag: means, leader diffs, reference diffs (estimate + CI) and the draws of the means."""
    c, n_l = len(curves.candidates), len(curves.lags)
    est, boot = data.estimate(), h.draws(data, b, rng)
    m_est, m_boot = est[: c * n_l].reshape(c, n_l), boot[:, : c * n_l].reshape(b, c, n_l)
    m_low, m_high = h.interval(m_est, m_boot, data.n_seeds)
    with np.errstate(invalid="ignore"):
        leader = np.where(np.isfinite(m_est).any(0), np.nanargmin(np.where(np.isfinite(m_est), m_est, np.inf), 0), 0)
    d_est = m_est - m_est[leader, np.arange(n_l)]
    d_low, d_high = h.interval(d_est, m_boot - m_boot[:, leader, np.arange(n_l)][:, None], data.n_seeds)
    ref = curves.candidates.index(reference) if reference in curves.candidates else None
    if ref is None:
        r_est = r_low = r_high = np.full((c, n_l), np.nan)
    else:
        r_est = m_est - m_est[ref]
        r_low, r_high = h.interval(r_est, m_boot - m_boot[:, ref : ref + 1], data.n_seeds)
    return {"est": est, "boot": boot, "mean": (m_est, m_low, m_high), "leader": (d_est, d_low, d_high),
            "ref": (r_est, r_low, r_high)}  # fmt: skip


def budget_tables(
    frame: pd.DataFrame, curves: Curves, n_resamples: int, seed: int, reference: str = REFERENCE
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per lag x candidate table, per lag winners, per lag x signal selector taus) of one group."""
    run_values, _ = run_signals(frame, curves)
    data = _nested(curves, run_values)
    key = [seed, zlib.crc32(repr(curves.key).encode())]
    pooled = _lag_tables(data, curves, n_resamples, np.random.default_rng(key), reference)
    per_seed = [
        _lag_tables(h.nested(data.x[s : s + 1], data.valid[s : s + 1]), curves, n_resamples,
                    np.random.default_rng([*key, s]), reference)
        for s in range(data.n_seeds)
    ]  # fmt: skip
    experiment, policy, growth_step, regime = curves.key
    head = {"experiment": experiment, "policy": policy, "lr_policy": curves.lr_policy, "k": curves.k,
            "growth_step": growth_step, "regime": regime}  # fmt: skip
    names, rows, wins, taus = curves.candidates, [], [], []
    c, n_l = len(names), len(curves.lags)
    previous = None
    for li, lag in enumerate(curves.lags):
        m, d, r = (tuple(a[:, li] for a in pooled[part]) for part in ("mean", "leader", "ref"))
        ranks, winners = _winners(m[0], d[1], d[2], names)
        seed_winners = []
        for p in per_seed:
            sm, sd = (tuple(a[:, li] for a in p[part]) for part in ("mean", "leader"))
            seed_winners.append("=".join(_winners(sm[0], sd[1], sd[2], names)[1]) or "-")
        for ci, name in enumerate(names):
            rows.append(head | {"lag": int(lag), "candidate": name, "mean": m[0][ci], "ci_low": m[1][ci],
                                "ci_high": m[2][ci], "rank": ranks[ci], "winner": ranks[ci] == 1,
                                "diff_to_leader": d[0][ci], "leader_ci_low": d[1][ci], "leader_ci_high": d[2][ci],
                                "reference": reference, "diff_to_reference": r[0][ci], "ref_ci_low": r[1][ci],
                                "ref_ci_high": r[2][ci], "n_seeds": data.n_seeds})  # fmt: skip
        text = "=".join(winners) or "-"
        wins.append(head | {"lag": int(lag), "winners": text, "changes": previous is not None and text != previous,
                            "per_seed_winners": " ".join(seed_winners), "n_seeds": data.n_seeds})  # fmt: skip
        previous = text
        taus += _taus(head | {"lag": int(lag)}, pooled, run_values, c, n_l, li, data.n_seeds)
    return pd.DataFrame(rows), pd.DataFrame(wins), pd.DataFrame(taus)


def _taus(head: dict, pooled: dict, values: dict, c: int, n_l: int, li: int, n_seeds: int) -> list[dict]:
    """Kendall tau (and CI) of every signal against the eval-loss ranking at one lag."""
    est, boot = pooled["est"], pooled["boot"]
    target_est, target_boot = est[: c * n_l].reshape(c, n_l)[:, li], boot[:, : c * n_l].reshape(-1, c, n_l)[:, :, li]
    offsets = {name: c * n_l + i * c for i, name in enumerate(values)}
    out = []
    for signal in signals():
        if signal.column not in offsets:
            continue
        o = offsets[signal.column]
        s_est, s_boot = est[o : o + c], boot[:, o : o + c]
        both = np.isfinite(s_est) & np.isfinite(target_est)
        if both.sum() < 2:
            continue
        t_est = float(kendall_tau_b(predicted_cost(s_est[both][None], signal), target_est[both][None])[0])
        t_boot = kendall_tau_b(predicted_cost(s_boot[:, both], signal), target_boot[:, both])
        low, high = h.interval(np.array(t_est), t_boot, n_seeds)
        out.append(head | {"signal": signal.name, "tau": t_est, "ci_low": float(np.clip(low, -1, 1)),
                           "ci_high": float(np.clip(high, -1, 1)), "n_candidates": int(both.sum())})  # fmt: skip
    return out
