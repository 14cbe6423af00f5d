"""Corpus loading, byte-level BPE tokenization with a content-keyed cache, and replayable batches.

The batch for training step `t` under seed `s` is a pure function of `(s, t)`: any run can replay the
batches of another exactly, and a resumed run sees the batches an uninterrupted one would have.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from growth import synthetic
from growth.config import DataConfig, DataSource

EOT = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".text")
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)


class DataError(ValueError):
    """Bad data input; the message names the path or value and the fix."""


@dataclass(frozen=True)
class TokenData:
    """Packed token sequences of length context + 1 and the tokenizer that made them."""

    train_BxT1: np.ndarray  # all training sequences (N, context + 1)
    eval_BxT1: np.ndarray  # the fixed held-out evaluation set (E, context + 1)
    tokenizer_path: Path
    vocab_size: int  # tokens the tokenizer actually has (<= data.vocab_size)
    cache_key: str

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path))


# ---------------------------------------------------------------- raw text


def _datasets_cache(cfg: DataConfig) -> str:
    path = Path(cfg.cache_dir) / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _has_eot_separators(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="ignore") as f:
        head = f.read(1 << 20)
    return EOT in head


def read_local_documents(path: str | os.PathLike, cfg: DataConfig, limit: int | None = None) -> list[str]:
    """Documents of a local file, read through `datasets`' own loaders."""
    import datasets

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(
            f"data file not found: {str(p)!r}. Point data.train_path / data.valid_path at an existing"
            " .txt, .jsonl or .parquet file, or use data=synthetic for the embedded corpus."
        )
    suffix = p.suffix.lower()
    cache = _datasets_cache(cfg)
    datasets.disable_progress_bars()
    if suffix in TEXT_SUFFIXES:
        if _has_eot_separators(p):
            whole = datasets.load_dataset("text", data_files=str(p), sample_by="document", cache_dir=cache)
            docs = [d for row in whole["train"]["text"] for d in row.split(EOT)]
        else:
            paras = datasets.load_dataset("text", data_files=str(p), sample_by="paragraph", cache_dir=cache)
            docs = list(paras["train"]["text"])
    elif suffix in JSON_SUFFIXES or suffix in PARQUET_SUFFIXES:
        builder = "parquet" if suffix in PARQUET_SUFFIXES else "json"
        table = datasets.load_dataset(builder, data_files=str(p), cache_dir=cache)["train"]
        if "text" not in table.column_names:
            raise DataError(
                f"{str(p)!r} has no 'text' field (columns: {table.column_names}); each record needs a 'text' string"
            )
        docs = list(table["text"])
    else:
        raise DataError(
            f"unknown data format {suffix!r} for {str(p)!r}; use .txt (stories separated by"
            f" '{EOT}' lines, or blank-line paragraphs), .jsonl with a 'text' field, or .parquet"
        )
    docs = [d.strip() for d in docs if d and d.strip()]
    if cfg.lowercase:
        docs = [d.lower() for d in docs]
    if not docs:
        raise DataError(f"empty corpus: {str(p)!r} holds no text; give a file with at least one story")
    return docs[:limit] if limit else docs


def _hub_reachable(timeout_s: float) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def read_hub_documents(cfg: DataConfig, split: str, limit: int | None) -> list[str]:
    """TinyStories from the Hugging Face hub; fails fast when there is no network."""
    if not _hub_reachable(cfg.hub_timeout_s):
        raise DataError(
            f"cannot reach the Hugging Face hub for {cfg.hub_name!r} (no network?). Use data=local"
            " data.train_path=... data.valid_path=... for local TinyStories files (e.g. the shared"
            " sample), or data=synthetic for the embedded corpus."
        )
    import datasets

    sliced = f"{split}[:{limit}]" if limit else split
    rows = datasets.load_dataset(cfg.hub_name, split=sliced, cache_dir=_datasets_cache(cfg))
    docs = [d.strip() for d in rows["text"] if d and d.strip()]
    return [d.lower() for d in docs] if cfg.lowercase else docs


def read_documents(cfg: DataConfig) -> tuple[list[str], list[str], str]:
    """(train docs, valid docs, a description of the source for the cache key)."""
    if cfg.source == "synthetic":
        n = cfg.synthetic_train_docs
        train = synthetic.stories(cfg.synthetic_seed, n)
        valid = synthetic.stories(cfg.synthetic_seed, cfg.synthetic_valid_docs, start=n)
        return train, valid, f"synthetic:{cfg.synthetic_seed}"
    if cfg.source == "local":
        if not cfg.train_path or not cfg.valid_path:
            raise DataError(
                "data=local needs both data.train_path=... and data.valid_path=... (got"
                f" train_path={cfg.train_path!r}, valid_path={cfg.valid_path!r})"
            )
        train = read_local_documents(cfg.train_path, cfg, cfg.max_train_docs)
        valid = read_local_documents(cfg.valid_path, cfg, cfg.max_valid_docs)
        return train, valid, f"local:{Path(cfg.train_path).name}:{Path(cfg.valid_path).name}"
    if cfg.source == "tinystories":
        train = read_hub_documents(cfg, "train", cfg.max_train_docs)
        valid = read_hub_documents(cfg, "validation", cfg.max_valid_docs)
        return train, valid, f"hub:{cfg.hub_name}"
    raise DataError(f"data.source={cfg.source!r} is unknown; use one of {', '.join(DataSource)}")


# ---------------------------------------------------------------- tokenizer and cache


def train_tokenizer(docs: list[str], vocab_size: int, min_frequency: int):
    """A byte-level BPE tokenizer trained on `docs`, with <|endoftext|> as its only special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def _encode(tok, docs: list[str]) -> np.ndarray:
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for enc in tok.encode_batch(docs):
        ids.extend(enc.ids)
        ids.append(eot)
    dtype = np.uint16 if tok.get_vocab_size() < 2**16 else np.int32
    return np.asarray(ids, dtype=dtype)


def cache_key(source: str, train: list[str], valid: list[str], cfg: DataConfig) -> str:
    """Hash of the data source, the text itself and the tokenizer settings."""
    h = hashlib.sha256()
    h.update(json.dumps([source, cfg.vocab_size, cfg.min_frequency, cfg.lowercase, "bpe-v1"]).encode())
    for part in (train, valid):
        for d in part:
            h.update(d.encode())
            h.update(b"\x00")
        h.update(b"\x01")
    return h.hexdigest()[:16]


def _atomic_dir_write(final: Path, write) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        write(tmp)
        if final.exists():  # a concurrent writer finished first: its content is identical
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pack(tokens: np.ndarray, length: int) -> np.ndarray:
    n = len(tokens) // length
    return tokens[: n * length].reshape(n, length)


def load(cfg: DataConfig) -> TokenData:
    """Tokenized, packed training and evaluation data, trained and cached on first use."""
    train, valid, source = read_documents(cfg)
    if not train:
        raise DataError(f"empty training corpus from {source}; give at least one document")
    if not valid:
        raise DataError(f"empty validation corpus from {source}; give at least one document")
    key = cache_key(source, train, valid, cfg)
    root = Path(cfg.cache_dir) / "tokens" / key

    if not (root / "meta.json").exists():

        def write(tmp: Path) -> None:
            tok = train_tokenizer(train, cfg.vocab_size, cfg.min_frequency)
            tok.save(str(tmp / "tokenizer.json"))
            np.save(tmp / "train.npy", _encode(tok, train))
            np.save(tmp / "valid.npy", _encode(tok, valid))
            meta = {"source": source, "vocab_size": tok.get_vocab_size(), "key": key}
            (tmp / "meta.json").write_text(json.dumps(meta))

        _atomic_dir_write(root, write)

    meta = json.loads((root / "meta.json").read_text())
    length = cfg.context + 1
    train_seq = _pack(np.load(root / "train.npy"), length)
    valid_seq = _pack(np.load(root / "valid.npy"), length)
    if len(train_seq) == 0:
        raise DataError(
            f"training corpus from {source} has fewer than data.context + 1 = {length} tokens;"
            " give more text or lower data.context"
        )
    if len(valid_seq) == 0:
        raise DataError(
            f"validation corpus from {source} has fewer than data.context + 1 = {length} tokens;"
            " give more validation text or lower data.context"
        )
    return TokenData(
        train_BxT1=train_seq,
        eval_BxT1=valid_seq[: cfg.eval_sequences],
        tokenizer_path=root / "tokenizer.json",
        vocab_size=int(meta["vocab_size"]),
        cache_key=key,
    )


# ---------------------------------------------------------------- batches


def check_batch_size(data: TokenData, batch_size: int) -> None:
    """Raise DataError when the corpus cannot fill one batch."""
    n = len(data.train_BxT1)
    if n < batch_size:
        raise DataError(
            f"the training corpus holds {n} sequences of context + 1 tokens, fewer than one batch of"
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
    """The (batch_size, context + 1) int32 batch for training step `step` under `seed`."""
    idx = batch_indices(seed, step, batch_size, len(data.train_BxT1))
    return data.train_BxT1[idx].astype(np.int32)
