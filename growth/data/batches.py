"""Packed sequences over a token file, and replayable batches gathered from it.

The batch for training step `t` under seed `s` is a pure function of `(s, t)`: any run can replay the
batches of another exactly, and a resumed run sees the batches an uninterrupted one would have. The
training sequences are a view of the memory-mapped token file; a batch reads only its own rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from growth.data.textcheck import DataError


@dataclass(frozen=True)
class TokenData:
    """Packed token sequences of length context + 1 and the tokenizer that made them."""

    train_BxT1: np.ndarray  # all training sequences (N, context + 1): a view of the memory-mapped token file
    eval_BxT1: np.ndarray  # the fixed held-out evaluation set (E, context + 1), in memory
    tokenizer_path: Path
    vocab_size: int  # tokens the tokenizer actually has (<= data.vocab_size)
    cache_key: str
    description: str = ""  # where the text came from (file names), for error messages

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path))


def pack(tokens: np.ndarray, length: int) -> np.ndarray:
    """Consecutive sequences of `length` tokens (the tail that fills no sequence is dropped); a view, no copy."""
    n = len(tokens) // length
    return tokens[: n * length].reshape(n, length)


def check_batch_size(data: TokenData, batch_size: int) -> None:
    """Raise DataError when the corpus cannot fill one batch."""
    n = len(data.train_BxT1)
    if n < batch_size:
        where = f" {data.description}" if data.description else ""
        raise DataError(
            f"the training corpus{where} holds {n} sequences of context + 1 tokens, fewer than one batch of"
            f" {batch_size}; give more text, or lower the batch size or data.context"
        )


@functools.lru_cache(maxsize=8)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0xB47C]).permutation(n)


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Sequence indices of the batch for `step` under `seed`: epoch-wise permutations, no state."""
    flat = step * batch_size + np.arange(batch_size)
    epochs, pos = np.divmod(flat, n)
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = _epoch_order(seed, int(e), n)[pos[sel]]
    return out


def batch_at(data: TokenData, seed: int, step: int, batch_size: int) -> np.ndarray:
    """The (batch_size, context + 1) int32 batch for training step `step` under `seed`, read from the token file."""
    idx = batch_indices(seed, step, batch_size, len(data.train_BxT1))
    return np.asarray(data.train_BxT1[idx], dtype=np.int32)
