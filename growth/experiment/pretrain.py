"""Pretraining of the small model: a resumable loop over replayable batches, with orbax checkpoints.

The run directory is `out_dir/pretrain/seed<seed>-<hash>`, where the hash covers what fixes
the training trajectory (data, model, optimizer, batch size, seed) and not how far it runs or where it
saves. Re-running a command resumes; asking for more steps or another checkpoint step extends the run.

Many processes may share one out_dir: a run directory is trained under a file lock by one process while
the others wait for it, then find its checkpoints done. Every checkpoint is verified against its
checksum manifest before it counts as done or is resumed from; a corrupt one is moved to `corrupt/`
and redone from the newest checkpoint that verifies.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from growth.config import Config, as_dict, config_hash, optim_identity
from growth.data import pipeline as data_lib
from growth.distributed import hosts
from growth.distributed import mesh as mesh_lib
from growth.experiment import progress as progress_lib
from growth.measure import throughput
from growth.models import gpt as model_lib
from growth.store import checkpoint, lease
from growth.store.files import truncate_jsonl
from growth.training import train
from growth.training.tracking import Tracker
from growth.validate import check_bpe_vocab

log = logging.getLogger(__name__)


class PretrainDiverged(train.TrainingDiverged):
    """The pretraining loss became NaN or inf; the message names the step, the loss and the fix."""

    def __init__(self, step: int, loss: float, lr: float, clip_norm: float):
        clip = "" if clip_norm > 0 else " or set optim.clip_norm=1.0"
        FloatingPointError.__init__(
            self,
            f"pretraining diverged: the training loss is {loss} at step {step} (optim.lr={lr:g}); lower the"
            f" learning rate, e.g. optim.lr={lr / 10:g}{clip}. Checkpoints before step {step} are kept.",
        )
        self.step = step


def trajectory_identity(cfg: Config) -> dict:
    """The config parts that determine the pretraining trajectory."""
    return {
        "seed": cfg.seed,
        "data": data_lib.identity(cfg.data),
        "model": model_lib.identity(cfg.model),
        # clip_mode only matters once a model is grown: a never-grown model's weights are all 1.
        "optim": {k: v for k, v in optim_identity(cfg.optim).items() if k != "clip_mode"},
        "batch_size": cfg.pretrain.batch_size,
    }


def run_dir(cfg: Config) -> Path:
    """Deterministic run directory of the pretraining run for this config."""
    # Not under the experiment's name: presets that share a trajectory (e.g. two learning-rate policies)
    # share its pretraining.
    return Path(cfg.out_dir) / "pretrain" / f"seed{cfg.seed}-{config_hash(trajectory_identity(cfg))}"


def check_vocab(cfg: Config, data: data_lib.TokenData) -> None:
    """The model's vocabulary must hold every token the tokenizer emits."""
    if data.vocab_size > cfg.model.vocab_size:
        raise model_lib.ConfigError(
            f"the tokenizer has {data.vocab_size} tokens but model.vocab_size={cfg.model.vocab_size};"
            f" set model.vocab_size >= {data.vocab_size} (normally model.vocab_size=${{data.vocab_size}})"
        )


def _quarantine(out: Path, step: int, error: checkpoint.CheckpointError) -> None:
    """Move a corrupt checkpoint out of the way (kept under `corrupt/` for inspection), so it is redone."""
    if not hosts.is_writer():
        return
    dest = out / "corrupt" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints" / str(step)).rename(dest)
    log.warning("%s; moved it to %s and redoing it", error, dest)


def sound_steps(cfg: Config, candidates: list[int]) -> list[int]:
    """The saved checkpoints among `candidates` that verify; the others are quarantined."""
    out = run_dir(cfg)
    good = []
    for step in candidates:
        try:
            train.load_state(out, step, cfg)
            good.append(step)
        except checkpoint.CorruptCheckpoint as e:
            _quarantine(out, step, e)
    return good


def run(cfg: Config, data: data_lib.TokenData | None = None) -> Path:
    """Pretrain to `pretrain.steps`, writing checkpoints at `pretrain.checkpoint_steps`; resumable, and
    safe to call from many processes at once (one trains, the others wait for it)."""
    check_bpe_vocab(cfg)
    out = run_dir(cfg)

    def waiting() -> None:
        log.info("another process is pretraining %s; waiting for it", out)

    with lease.locked(out / ".pretrain.lock", on_wait=waiting):  # a multi-process job: process 0 locks
        return _run_locked(cfg, out, data)


def _run_locked(cfg: Config, out: Path, data: data_lib.TokenData | None) -> Path:
    pcfg = cfg.pretrain
    targets = sorted({s for s in pcfg.checkpoint_steps if s <= pcfg.steps} | {pcfg.steps})
    ckpt_dir = out / "checkpoints"
    saved = checkpoint.steps(ckpt_dir)
    present = hosts.agreed_subset(targets, sound_steps(cfg, [s for s in targets if s in saved]))  # process 0's
    missing = [s for s in targets if s not in present]
    if not missing:
        return out

    data = data or data_lib.load(cfg.data)
    check_vocab(cfg, data)
    data_lib.check_batch_size(data, pcfg.batch_size)
    graphdef, tx, state = train.fresh_state(cfg)
    start = 0
    for step in sorted((s for s in checkpoint.steps(ckpt_dir) if s <= missing[0]), reverse=True):
        try:
            _, _, state = train.load_state(out, step, cfg)  # verified against its manifest
        except checkpoint.CorruptCheckpoint as e:
            _quarantine(out, step, e)
            continue
        start = step
        break
    agreed = hosts.agree_one(start)  # a multi-process job resumes from process 0's choice
    if agreed != start:
        start = agreed
        state = train.load_state(out, start, cfg)[2] if start else train.fresh_state(cfg)[2]
    if hosts.is_writer():
        truncate_jsonl(out / "metrics.jsonl", lambda r: r.get("step", 0) <= start)
    end = targets[-1]
    mesh = mesh_lib.make(cfg.mesh)  # None on one device: the plain path
    mesh_lib.check_batch(mesh, pcfg.batch_size, "pretrain.batch_size")
    state = mesh_lib.put_state(mesh, state, cfg.mesh.fsdp)

    tracker = Tracker(
        out, cfg.logger.wandb, as_dict(cfg), name=out.name, group=f"{cfg.name}/pretrain", run_id=f"pre-{out.name}"
    )
    mgr = checkpoint.manager(ckpt_dir)
    step_fn = train.jit_train_step(graphdef, tx, cfg.optim)
    evaluate = train.make_eval_fn(graphdef, pcfg.eval_chunk, mesh)
    save_at = set(targets) | {s for s in range(pcfg.save_every, end + 1, pcfg.save_every)}
    tokens_per_step = pcfg.batch_size * cfg.data.context
    flops = throughput.flops_per_step(tokens_per_step, [cfg.model])
    peak = throughput.peak_flops(cfg, throughput.devices(mesh))
    bar = progress_lib.job("pretrain", progress_lib.pretrain_name(cfg.seed, out), end, tokens_per_step, flops, start,
                           cfg.logger.progress, cfg.logger.progress_every_s)  # fmt: skip
    t_last, step_last = time.perf_counter(), start
    pending = None
    try:
        for t in range(start, end):
            state, metrics = step_fn(
                state, mesh_lib.put_batch(mesh, data_lib.batch_at(data, cfg.seed, t, pcfg.batch_size))
            )
            # Read step t-1's metrics only now: step t is already dispatched, so the loop never waits.
            if pending is not None:
                _check(cfg, *pending)
            pending = (t + 1, metrics)
            bar.update(1)
            done = t + 1
            if done % pcfg.log_every == 0 or done % pcfg.eval_every == 0 or done in save_at:
                _check(cfg, *pending)
                pending = None
                row = {"step": done, "loss": float(metrics["loss"]), "lr": float(metrics["lr"])}
                now = time.perf_counter()
                row["tokens_per_s"] = (done - step_last) * tokens_per_step / max(now - t_last, 1e-9)
                if peak:  # model FLOPs utilisation (growth/measure/throughput.py)
                    row["mfu"] = row["tokens_per_s"] / tokens_per_step * flops / peak
                t_last, step_last = now, done
                if done % pcfg.eval_every == 0 or done == end:
                    row["eval_loss"] = evaluate(state.params, data.eval_BxT1)
                tracker.log(row, step=done)
            if done in save_at:
                checkpoint.save(mgr, done, state, as_dict(cfg))
        if pending is not None:
            _check(cfg, *pending)
    finally:
        bar.close()
        tracker.finish()
    return out


def _check(cfg: Config, step: int, metrics: dict) -> None:
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise PretrainDiverged(step, loss, cfg.optim.lr, cfg.optim.clip_norm)
