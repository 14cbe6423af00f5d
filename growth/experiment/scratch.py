"""The scratch_wide run of its own budget: the baseline every speedup is measured against (SPEC 5b).

A fresh wide model does not depend on the small run, so its run depends only on (seed, k, regime,
replicate, learning-rate policy) and the training setup, never on the growth step or the pool. It is
computed once per such key, long enough (`budget.scratch_steps`) to cross the speedup targets, and
shared by every grid cell: `scratch.jsonl` beside the grid's `results.jsonl` holds its curves, one
`seq_losses/scratch-*.npz` per run its per-sequence losses, and its `_scratch` wall_time row (written
last) marks it finished. Its batches are the stream a from-scratch run would see: steps 0, 1, ... of
the replicate's batch order (growth.experiment.runner.continuation_streams), its init the pool's scratch_wide init.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from growth import widen
from growth.config import Config, Regime, config_hash, optim_identity
from growth.data import pipeline as data_lib
from growth.distributed import hosts
from growth.experiment import continuation, pool, results, runner
from growth.experiment import progress as progress_lib
from growth.experiment.results import CellKey
from growth.measure import cost, throughput
from growth.measure import lags as lags_lib
from growth.models import gpt as model_lib
from growth.store import files, lease
from growth.training import optimizer, train
from growth.training.tracking import Tracker

log = logging.getLogger(__name__)

CANDIDATE = "scratch_wide"
MARKER = "_scratch"  # candidate name of the row that marks a scratch run finished
STORE = "scratch.jsonl"


def store_path(cfg: Config) -> Path:
    return results.results_path(cfg).parent / STORE


def eval_lags(cfg: Config) -> list[int]:
    steps = cfg.budget.scratch_steps
    return sorted({0, steps} | set(lags_lib.log_spaced(steps, cfg.budget.scratch_log_eval_lags)))


def identity(cfg: Config) -> dict:
    """What fixes a scratch run's numbers besides (seed, regime, replicate): no growth step, no pool."""
    return {
        "model": dataclasses.asdict(widen.wide_config(cfg.model, cfg.growth)),
        "data": data_lib.without_later_defaults(cfg.data, data_lib.HUB_FIELDS) | {"cache_dir": None},
        "optim": optim_identity(cfg.optim),
        "lr_correction": str(cfg.growth.lr_correction),
        "k": cfg.growth.k,
        "batch_size": cfg.runner.batch_size,
        "stochastic_dropout": cfg.runner.stochastic_dropout,
        "shuffle_stochastic": cfg.runner.shuffle_stochastic,
        "lags": eval_lags(cfg),
    }


def scratch_hash(cfg: Config) -> str:
    return config_hash(identity(cfg))


def finished(cfg: Config) -> set[tuple[int, str, int]]:
    """(seed, regime, replicate) of every finished scratch run of this config."""
    chash = scratch_hash(cfg)
    store = store_path(cfg)
    return {
        (r["seed"], r["regime"], int(r["replicate"]))
        for r in files.read_jsonl(store)
        if r.get("config_hash") == chash
        and r.get("candidate") == MARKER
        and not results.missing_files(store.parent, r)  # a deleted npz: not finished, computed again
    }


def _fresh(cfg: Config, key: CellKey) -> tuple[pool.Group, jax.Array]:
    """The stacked one-candidate group of the fresh wide model, and the run's batch seed."""
    small_cfg = dataclasses.replace(cfg.model, dropout=0.0)
    _, params = model_lib.build(small_cfg, jax.random.PRNGKey(cfg.seed))
    batch_seed, dropout_key = runner.continuation_streams(cfg, key)
    small = train.init_state(params, optimizer.make_optimizer(cfg.optim), dropout_key)
    root = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), train.GROWTH_ROLE)
    grown = widen.grow(CANDIDATE, small, cfg.model, cfg.growth, cfg.optim, pool._stable_key(root, CANDIDATE))
    group = pool.group_pool({CANDIDATE: grown})[0]
    group.state = group.state.replace(dropout_key=dropout_key[None])
    return group, jnp.asarray(batch_seed)


def run_one(cfg: Config, key: CellKey, data: data_lib.TokenData) -> tuple[np.ndarray, int | None]:
    """Train the fresh wide model; per-sequence losses (L, N) at eval_lags (NaN after a divergence)."""
    rate = 0.0 if key.regime == Regime.deterministic else cfg.runner.stochastic_dropout
    group, batch_seed = _fresh(cfg, key)
    stepper = continuation.Stepper(cfg, data, [group], rate, int(batch_seed), None, first_batch=0)
    lags = eval_lags(cfg)
    loss = np.full((len(lags), data.eval_BxT1.shape[0]), np.nan, np.float32)
    done, diverged = 0, None
    bar, meter, tracker = progress_lib.scratch_job(cfg, key), throughput.scratch_meter(cfg), _tracker(cfg, key)
    try:
        for i, lag in enumerate(lags):
            stepper.advance(None, [group], done, lag, bar.update)
            jax.block_until_ready(group.state)  # the steps' time ends here, before the evaluation
            speed = meter.row(lag - done)
            done = lag
            seq = pool.measure(
                group, None, None, cfg.model, data.eval_BxT1, cfg.runner.eval_chunk, False, cfg.runner.pool_step
            )
            tracker.log({"step": lag, "eval_loss": float(np.mean(seq.seq_loss))} | speed, step=lag)
            meter.start()
            if not np.isfinite(seq.seq_loss).all():
                diverged = lag
                break
            loss[i] = seq.seq_loss[0]
    finally:
        bar.close()
        tracker.finish()
    return loss, diverged


def _tracker(cfg: Config, key: CellKey) -> Tracker:
    """metrics.jsonl (and wandb) of one scratch run: its eval loss and throughput at each lag."""
    out = store_path(cfg).parent / "scratch" / f"{key.stem}-k{cfg.growth.k}-{scratch_hash(cfg)}"
    return Tracker(out, cfg.logger.wandb, dataclasses.asdict(cfg), name=f"{cfg.name}-scratch-{key.stem}",
                   group=cfg.name, run_id=f"scratch-{out.name}", fresh=True)  # fmt: skip


def write(cfg: Config, key: CellKey, loss: np.ndarray, diverged: int | None, wall_s: float) -> None:
    """Per-sequence losses, then the curve rows, then the marker row (last)."""
    chash, lags = scratch_hash(cfg), eval_lags(cfg)
    rel = Path("seq_losses") / f"scratch-seed{key.seed}-{key.regime}-r{key.replicate}-{chash}.npz"
    files.atomic_save_npz(
        store_path(cfg).parent / rel,
        {"lags": np.asarray(lags, np.int64), "loss": loss, "seed": np.asarray(key.seed), "k": np.asarray(cfg.growth.k)},
    )
    common = results.identity_columns(cfg, key, chash)  # key.growth_step is 0: a fresh wide model, not grown
    rows = [
        common | {"candidate": CANDIDATE, "lag": lag, "metric": "eval_loss", "value": float(np.nanmean(loss[i]))}
        for i, lag in enumerate(lags)
        if np.isfinite(loss[i]).all()
    ]
    if diverged is not None:
        rows.append(common | {"candidate": CANDIDATE, "lag": diverged, "metric": "diverged", "value": 1.0})
    marker = {"candidate": MARKER, "lag": lags[-1], "metric": "wall_time", "value": wall_s, "seq_losses": str(rel)}
    tokens = {"tokens_per_step": cfg.runner.batch_size * cfg.model.context}
    wide = {"flops_per_token_wide": cost.train_flops_per_token(widen.wide_config(cfg.model, cfg.growth))}
    rows.append(common | marker | {"cost": tokens | wide})
    files.append_jsonl(store_path(cfg), rows)


def left(cfg: Config) -> list[str]:
    """The scratch runs of this config's seed, k and policy not finished yet."""
    if cfg.budget.scratch_steps <= 0:
        return []
    done = finished(cfg)
    keys = [CellKey(cfg.seed, 0, Regime(g), r) for r in range(cfg.replicates) for g in cfg.regimes]
    return [f"scratch-{k.stem}-k{cfg.growth.k}" for k in keys if (k.seed, str(k.regime), k.replicate) not in done]


def run_pass(cfg: Config, data: data_lib.TokenData | None = None) -> int:
    """Every unfinished scratch run of this config's seed, k and policy that this worker can lease (each
    is computed by one worker, as grid cells are: growth.store.lease); returns how many live workers still hold."""
    if cfg.budget.scratch_steps <= 0:
        return 0
    keys = [CellKey(cfg.seed, 0, Regime(g), r) for r in range(cfg.replicates) for g in cfg.regimes]
    chash, held = scratch_hash(cfg), 0

    def done(key: CellKey) -> bool:
        return (key.seed, str(key.regime), key.replicate) in finished(cfg)

    for key in hosts.agreed_subset(keys, [k for k in keys if not done(k)]):  # a multi-process job: process 0 chooses
        claimed = lease.claim(
            store_path(cfg).parent, f"scratch-{key.stem}-k{cfg.growth.k}-{chash}", cfg.workers,
            functools.partial(done, key),
        )  # fmt: skip
        if claimed is None:
            held += not done(key)
            continue
        try:
            if data is None:
                data = data_lib.load(cfg.data)
                data_lib.check_batch_size(data, cfg.runner.batch_size)
            log.info("scratch_wide seed %d k %d %s r%d: %d steps", key.seed, cfg.growth.k, key.regime, key.replicate,
                     cfg.budget.scratch_steps)  # fmt: skip
            t0 = time.perf_counter()
            loss, diverged = run_one(cfg, key, data)
            wall = time.perf_counter() - t0
            claimed.commit(lambda: write(cfg, key, loss, diverged, wall))  # noqa: B023 (called at once)
        except BaseException:
            claimed.release()
            raise
    return held
