"""The study-cell part: one regime cell of `experiment=study_cpu_long` trained for N continuation steps,
ours against a PyTorch peer that trains the same six models.

Ours is what the runner does in a cell (growth.experiment.continuation.Stepper): the pool's wide candidates
grouped by model config (exact_copy, zero_pad, shrink_perturb and scratch_wide; msg), each group trained
in pieces of `runner.stack_at_most` candidates, and the small reference (continue_small), on the same
batches, `runner.steps_per_dispatch` steps per program call, the programs side by side from their own
threads with `runner.concurrent_programs`. Evaluation is left out: the peer has none to match.

The peer is the best-practice PyTorch GPT (benchmarks/peer.py) under torch.compile with fused AdamW:
five wide models (d 64) and one small one (d 32), each taking its step on the same batch, one after
another; and batched: the five wide models' parameters stacked (`torch.func.stack_module_state`), one
`vmap` of the model over them under torch.compile, fused AdamW on the stacked tensors and each model's
own gradient clipping, the small model beside. The target takes whichever peer is faster. msg's masks
are multiplications by ones after growth; the peer's fifth wide model is a plain one of the same shape.
Both sides are timed in alternating repetitions in one process, and the ratio is taken per pair of
repetitions.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import peer
from benchmarks.common import Preset, repeat, scaled, spread

STUDY_POOL = ["exact_copy", "zero_pad", "shrink_perturb", "msg", "scratch_wide", "continue_small"]
TINY = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "data.vocab_size=256", "data.context=16"]


def study_config(tiny: bool, overrides: list[str]):
    """study_cpu_long's model, optimizer and batch (k = 2), its pool; `tiny` shrinks the model for tests."""
    from growth import presets

    base = ["experiment=study_cpu_long", f"pool=[{','.join(STUDY_POOL)}]", "growth.k=2"]
    return presets.compose(base + (TINY if tiny else []) + overrides)


def _random_data(cfg, n_seq: int = 512):
    from growth.data.batches import TokenData

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.model.vocab_size, (n_seq, cfg.model.context + 1), dtype=np.int32)
    return TokenData(tokens, tokens[:8], Path("unused"), cfg.model.vocab_size, "random", "random tokens")


def ours_runner(cfg, steps: int):
    """(run, facts): `steps` continuation steps of the cell's models, trained as the runner trains them."""
    from growth.experiment import continuation, pool
    from growth.training import train

    _, _, small = train.fresh_state(cfg)
    grown = pool.build_pool(cfg, small)
    groups = pool.group_pool(grown)
    stepper = continuation.Stepper(cfg, _random_data(cfg), groups, 0.0, batch_seed=0, mesh=None)
    holder = {"small": small, "at": 0}

    def run():
        at = holder["at"]
        holder["small"], _ = stepper.advance(holder["small"], groups, at, at + steps, lambda n: None)
        jax.block_until_ready((holder["small"], [g.state for g in groups]))
        holder["at"] = at + steps

    run()  # compile every block length
    models = [*(n for g in groups for n in g.names), pool.REFERENCE]
    facts = {
        "models": models,
        "groups": [g.names for g in groups],
        "steps_per_dispatch": cfg.runner.steps_per_dispatch,
        "stack_at_most": cfg.runner.stack_at_most,
        "concurrent_programs": cfg.runner.concurrent_programs,
        "wide_d_model": groups[0].model_cfg.d_model,
        "small_d_model": cfg.model.d_model,
    }
    return run, facts


def _torch_setup(cfg, threads: int):
    """torch's threads, seed and compile limit for a peer; the peer's eight batches of the cell's shape."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # Dynamo guards on the module instance: each of the models (per thread count) is one more compiled
    # entry of the same forward, past the default limit of 8 the rest would run eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    gen = torch.Generator().manual_seed(0)
    B, L, V = cfg.runner.batch_size, cfg.model.context, cfg.model.vocab_size
    return [torch.randint(0, V, (B, L + 1), generator=gen) for _ in range(8)]


def _step_batches(batches, steps: int):
    """(inputs, targets) of each of `steps` steps, cycling through the peer's batches."""
    for s in range(steps):
        batch = batches[s % len(batches)]
        yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


def _model_step(model, fwd, opt, inputs, targets, clip: float):
    """One best-practice training step of one torch model: cross-entropy, backward, clipping, fused AdamW."""
    import torch
    import torch.nn.functional as F

    logits = fwd(inputs)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
    opt.step()
    return loss


def peer_runner(cfg, steps: int, threads: int, compiled: bool = True):
    """(run, facts): `steps` steps of five wide and one small best-practice PyTorch GPT, one after another."""
    import torch

    from growth import widen

    batches = _torch_setup(cfg, threads)
    wide_cfg = widen.wide_config(cfg.model, cfg.growth)
    shapes = [wide_cfg] * (len(STUDY_POOL) - 1) + [cfg.model]
    models = [peer.best_practice_model(m).train() for m in shapes]
    opts = [peer.adamw(m, cfg.optim, fused=True) for m in models]
    fwds = [torch.compile(m) if compiled else m for m in models]
    clip = cfg.optim.clip_norm

    def run():
        torch.set_num_threads(threads)
        for inputs, targets in _step_batches(batches, steps):
            for model, fwd, opt in zip(models, fwds, opts, strict=True):
                loss = _model_step(model, fwd, opt, inputs, targets, clip)
        loss.item()

    run()  # warm-up and compilation
    facts = {
        "torch": torch.__version__,
        "threads": threads,
        "compiled": compiled,
        "models": len(models),
        "params": [sum(q.numel() for q in m.parameters()) for m in models],
    }
    return run, facts


def batched_peer_runner(cfg, steps: int, threads: int, compiled: bool = True):
    """(run, facts): the five wide models stacked and stepped as one vmapped model, the small one beside."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from growth import widen

    batches = _torch_setup(cfg, threads)
    n_wide = len(STUDY_POOL) - 1
    # stack_module_state needs one class: best_practice_model makes a new one per call, so copy one model
    built = [peer.best_practice_model(widen.wide_config(cfg.model, cfg.growth)).train() for _ in range(n_wide)]
    wides = [copy.deepcopy(built[0]) for _ in built]
    for model, source in zip(wides, built, strict=True):
        model.load_state_dict(source.state_dict())
    params, buffers = stack_module_state(wides)
    stacked = [q.detach().requires_grad_(True) for q in params.values()]
    params = dict(zip(params, stacked, strict=True))
    skeleton = copy.deepcopy(wides[0]).to("meta")

    def one_loss(p, b, inputs, targets):
        logits = functional_call(skeleton, (p, b), (inputs,))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def wide_losses(p, b, inputs, targets):
        return torch.vmap(one_loss, in_dims=(0, 0, None, None))(p, b, inputs, targets)

    losses = torch.compile(wide_losses) if compiled else wide_losses
    opt = peer.adamw(stacked, cfg.optim, stacked=1, fused=True)
    small = peer.best_practice_model(cfg.model).train()
    small_opt = peer.adamw(small, cfg.optim, fused=True)
    small_fwd = torch.compile(small) if compiled else small
    clip = cfg.optim.clip_norm

    def run():
        torch.set_num_threads(threads)
        for inputs, targets in _step_batches(batches, steps):
            # SDPA's fused CPU kernel has no vmap rule (torch falls back to a loop over the models); its math
            # form batches: 1.01x the sequential peer against 0.95x with the fused kernel (docs/performance.md)
            with sdpa_kernel(SDPBackend.MATH):
                wide_loss = losses(params, buffers, inputs, targets)
            opt.zero_grad(set_to_none=True)
            wide_loss.sum().backward()  # the models share nothing: each gets its own gradient
            if clip > 0:  # each model's global norm, as clip_grad_norm_ per model
                sq = torch.stack([q.grad.pow(2).reshape(n_wide, -1).sum(1) for q in stacked]).sum(0)
                scale = (clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)
                for q in stacked:
                    q.grad.mul_(scale.view(-1, *([1] * (q.ndim - 1))))
            opt.step()
            loss = _model_step(small, small_fwd, small_opt, inputs, targets, clip)
        loss.item()

    run()  # warm-up and compilation
    facts = {"torch": torch.__version__, "threads": threads, "compiled": compiled, "batched": "vmap, sdpa math"}
    facts |= {
        "models": n_wide + 1,
        "params": [sum(q[0].numel() for q in stacked)] * n_wide + [sum(q.numel() for q in small.parameters())],
    }
    return run, facts


def measure(p: Preset, tiny: bool, steps: int, threads: list[int], overrides: list[str]) -> dict:
    """Tokens/s of ours and of the peer at each thread count, alternating repetitions; the ratio per pair."""
    cfg = study_config(tiny, overrides)
    runs = {"ours": ours_runner(cfg, steps)}
    why = peer.torch_missing()
    if why is None:
        kind = "eager" if tiny else "compiled"
        for t in threads:
            runs[f"torch_{kind}_{t}t"] = peer_runner(cfg, steps, t, compiled=not tiny)
            runs[f"torch_{kind}_batched_{t}t"] = batched_peer_runner(cfg, steps, t, compiled=not tiny)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(p.reps):
        for k, (run, _) in runs.items():
            times[k] += repeat(run, 1, warmup=0)
    tokens = len(STUDY_POOL) * cfg.runner.batch_size * cfg.model.context * steps
    out: dict = {"steps": steps, "tokens_per_rep": tokens, "skipped_peer": why}
    for k, (_, facts) in runs.items():
        s = spread(times[k])
        out[k] = facts | {"seconds": s, "tokens_per_s": scaled(s, tokens)}
        if k != "ours":
            pairs = [b / a for a, b in zip(times["ours"], times[k], strict=True)]
            out[k]["ours_over_peer"] = spread(pairs)["median"]
            out[k]["ours_over_peer_spread"] = spread(pairs)
    peers = [k for k in runs if k != "ours"]
    if peers:
        out["ours_over_best_peer"] = min(out[k]["ours_over_peer"] for k in peers)
    return out | {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
