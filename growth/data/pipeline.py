"""The data path: streamed documents -> BPE tokenizer -> memory-mapped token files -> replayable batches.

One module per concern; this one joins them and is what the rest of the harness imports:
`growth.data.corpus` (reading documents, streamed), `growth.data.textcheck` (checks of a text file),
`growth.data.tokenizer` (training on a bounded sample, chunked encoding), `growth.data.token_cache` (the
cache key and the token files), `growth.data.batches` (packed sequences and batches). With
`data.tokenizer_path` (an imported checkpoint's tokenizer) the corpus is tokenized with that
tokenizer instead of a freshly trained BPE.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from growth.config import DataConfig
from growth.data import token_cache
from growth.data.batches import TokenData, batch_at, batch_indices, check_batch_size, pack
from growth.data.corpus import (
    EOT,
    REPO_ROOT,
    TINYSTORIES_DIR,
    describe,
    documents,
    local_documents,
    read_local_documents,
    resolve_path,
)
from growth.data.textcheck import DataError, check_text_file
from growth.data.tokenizer import load_pretrained_tokenizer, train_tokenizer

__all__ = [
    "EOT",
    "REPO_ROOT",
    "TINYSTORIES_DIR",
    "DataError",
    "TokenData",
    "batch_at",
    "batch_indices",
    "check_batch_size",
    "check_text_file",
    "describe",
    "documents",
    "identity",
    "load",
    "load_pretrained_tokenizer",
    "local_documents",
    "read_local_documents",
    "resolve_path",
    "train_tokenizer",
]

# Fields that change how fast the token files are written, never what they hold.
_THROUGHPUT_FIELDS = ("cache_dir", "encode_chunk_docs", "progress")
# Fields added after run directories were first hashed: they enter the identity only when set away
# from their default, so the run directories and cell hashes of earlier results stay valid.
HUB_FIELDS = ("hub_config", "hub_split", "hub_valid_split", "hub_text_field")  # data=hub's, added last
_LATER_FIELDS = ("tokenizer_sample_chars", *HUB_FIELDS)


def without_later_defaults(cfg: DataConfig, later: tuple[str, ...] = _LATER_FIELDS) -> dict:
    """asdict(cfg) less the `later` fields (added after hashes were first taken) that sit at their default."""
    out, default = dataclasses.asdict(cfg), DataConfig()
    for name in later:
        if getattr(cfg, name) == getattr(default, name):
            out.pop(name)
    return out


def identity(cfg: DataConfig) -> dict:
    """The data settings that fix the token stream, for run-directory hashes."""
    out = without_later_defaults(cfg)
    for name in _THROUGHPUT_FIELDS:
        out.pop(name)
    return out | {"cache_dir": None}


def load(cfg: DataConfig) -> TokenData:
    """Tokenized, packed training and evaluation data; tokenized into the cache on first use."""
    given = load_pretrained_tokenizer(cfg.tokenizer_path) if cfg.tokenizer_path else None
    fingerprint = hashlib.sha256(given.to_str().encode()).hexdigest()[:16] if given is not None else None
    root = token_cache.open_verified(cfg, given, fingerprint)  # checked against its manifest
    meta = json.loads((root / "meta.json").read_text())
    length = cfg.context + 1
    described = describe(cfg)
    train_seq = pack(token_cache.token_file(root, "train"), length)
    valid_seq = pack(token_cache.token_file(root, "valid"), length)
    if len(train_seq) == 0:
        raise DataError(
            f"training corpus {described} has fewer than data.context + 1 = {length} tokens;"
            " give more text or lower data.context"
        )
    if len(valid_seq) == 0:
        raise DataError(
            f"validation corpus {described} has fewer than data.context + 1 = {length} tokens;"
            " give more validation text or lower data.context"
        )
    return TokenData(
        train_BxT1=train_seq,
        eval_BxT1=np.array(valid_seq[: cfg.eval_sequences]),
        tokenizer_path=root / "tokenizer.json",
        vocab_size=int(meta["vocab_size"]),
        cache_key=meta["key"],
        description=described,
    )
