"""The train step's matrix products one at a time, XLA against torch on the same arrays (`explore products`).

The attention's batched products of one layer (B x H products of one head: the scores and the value
product with two batch dims as the library writes them and with one (B*H) batch dim, the value product
with its output transposed as XLA lays it out in the step, and a backward product with its left operand
transposed), and the dense layers' three products (forward, input gradient, weight gradient) at the
model's shapes. GFLOP/s of the best of `--reps` timings of `--steps` calls; torch at two threads when the
torch extra is installed. It shows which products XLA's CPU backend runs far below the machine's matmul
rate (docs/performance.md, issue 29, fourth session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from benchmarks.common import repeat
from benchmarks.explore.setup import machine_info_brief, setup
from benchmarks.peer import torch_missing


class Product(NamedTuple):
    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    contracted: int  # the contraction's length: FLOPs = 2 * output size * contracted
    xla: Callable  # jitted dot_general over (lhs, rhs)
    torch: Callable  # the same product over torch tensors of the same arrays


def _dot(lhs_contract: int, rhs_contract: int, batch: tuple[int, ...]) -> Callable:
    dims = (((lhs_contract,), (rhs_contract,)), (batch, batch))
    return jax.jit(lambda a, b: jax.lax.dot_general(a, b, dims))


def attention_products(B: int, H: int, L: int, d: int) -> dict[str, Product]:
    two, one = (0, 1), (0,)
    return {
        "scores q k^T, (L, d) x (d, L), batch (B, H)": Product(
            (B, H, L, d), (B, H, d, L), d, _dot(3, 2, two), lambda a, b: a @ b
        ),
        "scores, batch (B*H)": Product((B * H, L, d), (B * H, d, L), d, _dot(2, 1, one), lambda a, b: a @ b),
        "value P v, (L, L) x (L, d), batch (B, H)": Product(
            (B, H, L, L), (B, H, L, d), L, _dot(3, 2, two), lambda a, b: a @ b
        ),
        "value, batch (B*H)": Product((B * H, L, L), (B * H, L, d), L, _dot(2, 1, one), lambda a, b: a @ b),
        "value, output (d, L), batch (B, H)": Product(
            (B, H, L, d), (B, H, L, L), L, _dot(2, 3, two), lambda a, b: a.mT @ b.mT
        ),
        "P^T dO, left operand transposed, batch (B*H)": Product(
            (B * H, L, L), (B * H, L, d), L, _dot(1, 1, one), lambda a, b: a.mT @ b
        ),
    }


def dense_products(N: int, D: int, F: int, V: int) -> dict[str, Product]:
    out = {}
    for name, (i, o) in {"qkv": (D, 3 * D), "mlp in": (D, F), "mlp out": (F, D), "head": (D, V)}.items():
        out[f"{name}: forward x W"] = Product((N, i), (i, o), i, _dot(1, 0, ()), lambda a, b: a @ b)
        out[f"{name}: input gradient g W^T"] = Product((N, o), (i, o), o, _dot(1, 1, ()), lambda a, b: a @ b.T)
        out[f"{name}: weight gradient x^T g"] = Product((N, i), (N, o), N, _dot(0, 0, ()), lambda a, b: a.T @ b)
    return out


def _best_seconds(fn: Callable, args: tuple, calls: int, reps: int, block: Callable) -> float:
    """Seconds a call of the best of `reps` timings of `calls` calls (after one untimed round)."""

    def run() -> None:
        for _ in range(calls):
            out = fn(*args)
        block(out)

    return min(repeat(run, reps)) / calls


def products(args) -> dict:
    _, m, batch_size = setup(args)
    B, L, H, D = batch_size, m.context, m.n_heads, m.d_model
    table = attention_products(B, H, L, D // H) | dense_products(B * L, D, m.mlp_ratio * D, m.vocab_size)
    torch = None if torch_missing() else __import__("torch")
    if torch is not None:
        torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    out = {}
    for name, p in table.items():
        a, b = rng.standard_normal(p.lhs, dtype=np.float32), rng.standard_normal(p.rhs, dtype=np.float32)
        ja, jb = jax.numpy.asarray(a), jax.numpy.asarray(b)
        flops = 2 * p.xla(ja, jb).size * p.contracted
        row = {"shapes": [list(p.lhs), list(p.rhs)]}
        row["xla_gflops"] = flops / _best_seconds(p.xla, (ja, jb), args.steps, args.reps, jax.block_until_ready) / 1e9
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            row["torch_gflops"] = flops / _best_seconds(p.torch, (ta, tb), args.steps, args.reps, lambda x: x) / 1e9
        out[name] = row
    model = {"batch": B, "context": L, "heads": H, "d_model": D}
    return {"model": model, "machine": machine_info_brief(), "products": out}
