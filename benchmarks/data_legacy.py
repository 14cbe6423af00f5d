"""The in-memory data path this project used before issue 22, kept as the reference it is measured against.

Every document is a Python string and every id a Python int in one list (about 175 bytes of
resident memory per token). The `data` benchmark part times it on a corpus it can hold, and the
tests check that the streamed, memory-mapped path gives the same token stream and batches.
Local `.txt`/`.jsonl` files and the synthetic corpus only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from growth.config import DataConfig, DataSource
from growth.data import synthetic
from growth.data.batches import TokenData, pack
from growth.data.corpus import EOT, format_suffix, resolve_path
from growth.data.textcheck import read_head
from growth.data.tokenizer import train_tokenizer


def read_documents(path: str, cfg: DataConfig, limit: int | None) -> list[str]:
    """A local file's documents through `datasets`' loaders, as the old path read them."""
    import datasets

    p = resolve_path(path)
    cache = str(Path(cfg.cache_dir) / "legacy-datasets")
    datasets.disable_progress_bars()
    if format_suffix(p) in (".jsonl", ".json"):
        docs = list(datasets.load_dataset("json", data_files=str(p), cache_dir=cache)["train"]["text"])
    elif EOT.encode() in read_head(p, 1 << 20):
        whole = datasets.load_dataset("text", data_files=str(p), cache_dir=cache, sample_by="document")["train"]
        docs = [d for row in whole["text"] for d in row.split(EOT)]
    else:
        docs = list(
            datasets.load_dataset("text", data_files=str(p), cache_dir=cache, sample_by="paragraph")["train"]["text"]
        )
    docs = [d.strip() for d in docs if d and d.strip()]
    if cfg.lowercase:
        docs = [d.lower() for d in docs]
    return docs[:limit] if limit else docs


def encode(tok, docs: list[str]) -> np.ndarray:
    """Every document's ids, each followed by <|endoftext|>, through one Python list."""
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        if eot is not None:
            ids.append(eot)
    dtype = np.uint16 if tok.get_vocab_size() < 2**16 else np.int32
    return np.asarray(ids, dtype=dtype)


def load(cfg: DataConfig) -> tuple[TokenData, np.ndarray, np.ndarray]:
    """(packed data, train ids, valid ids) built in memory: the tokenizer is trained on all the training text."""
    if cfg.source == DataSource.synthetic:
        n = cfg.synthetic_train_docs
        train = synthetic.stories(cfg.synthetic_seed, n)
        valid = synthetic.stories(cfg.synthetic_seed, cfg.synthetic_valid_docs, start=n)
    else:
        train = read_documents(cfg.train_path, cfg, cfg.max_train_docs)  # type: ignore[arg-type]
        valid = read_documents(cfg.valid_path, cfg, cfg.max_valid_docs)  # type: ignore[arg-type]
    tok = train_tokenizer(train, cfg.vocab_size, cfg.min_frequency)
    train_ids, valid_ids = encode(tok, train), encode(tok, valid)
    length = cfg.context + 1
    data = TokenData(
        train_BxT1=pack(train_ids, length),
        eval_BxT1=pack(valid_ids, length)[: cfg.eval_sequences],
        tokenizer_path=Path(),
        vocab_size=tok.get_vocab_size(),
        cache_key="",
    )
    return data, train_ids, valid_ids
