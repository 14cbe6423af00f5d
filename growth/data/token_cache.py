"""Tokenized corpora on disk: a streaming-hash cache key, ids written in chunks to a memory-mapped token file.

`build(cfg)` makes `cache_dir/tokens/<key>/` once: `tokenizer.json`, `train.bin` and `valid.bin`
(raw ids, uint16 while the vocabulary fits, else int32), `manifest.json` (growth.data.token_manifest) and
`meta.json`. `open_verified(cfg)` builds it if needed and checks it against its manifest, rebuilding
a cache that fails the check (or refusing in one line when it cannot be rebuilt). Memory stays bounded by one
chunk of documents and the tokenizer's training sample, whatever the corpus size. The key hashes the
source files' bytes as they stream (or the hub name / synthetic seed) with every setting that
changes the ids, so another corpus or setting never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from growth.config import DataConfig, DataSource
from growth.data import corpus, hub_corpus, token_manifest
from growth.data import tokenizer as tok_lib
from growth.data.textcheck import DataError
from growth.store import files

log = logging.getLogger(__name__)

FORMAT = "bpe-v2"  # bump when the token files' layout or the ids for given text change
file_digest = token_manifest.file_digest


def content_id(cfg: DataConfig) -> list:
    """What identifies the text: the files' streamed digests, the hub name, or the synthetic seed and counts."""
    corpus.check_source(cfg)
    if cfg.source == DataSource.local:
        train = corpus.resolve_path(cfg.train_path, "train")  # type: ignore[arg-type]
        valid = corpus.resolve_path(cfg.valid_path, "valid")  # type: ignore[arg-type]
        return ["local", file_digest(train), file_digest(valid)]
    if cfg.source == DataSource.synthetic:
        return ["synthetic", cfg.synthetic_seed, cfg.synthetic_train_docs, cfg.synthetic_valid_docs]
    if cfg.source == DataSource.hub:
        where = [cfg.hub_config, cfg.hub_split, cfg.hub_valid_split, cfg.hub_text_field]
        local = hub_corpus.local_dataset_dir(cfg)
        return ["any-hub", cfg.hub_name, *where, *([] if local is None else _dir_listing(local))]
    return ["hub", cfg.hub_name]


def _dir_listing(root: Path) -> list:
    """What identifies a local dataset directory cheaply: every file's name and size, and the small
    metadata files' contents (save_to_disk's state.json holds the dataset's fingerprint)."""
    out: list = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out.append([str(p.relative_to(root)), p.stat().st_size])
            if p.suffix == ".json" and p.stat().st_size < 1 << 20:
                out.append(file_digest(p))
    return out


def cache_key(cfg: DataConfig, tokenizer_fingerprint: str | None = None) -> str:
    """Hash of the text's identity and every setting that changes the ids (or the given tokenizer)."""
    limits = [cfg.max_train_docs, cfg.max_valid_docs, cfg.lowercase]
    if tokenizer_fingerprint is None:
        settings = [cfg.vocab_size, cfg.min_frequency, cfg.tokenizer_sample_chars, FORMAT]
    else:
        settings = ["pretrained", tokenizer_fingerprint, FORMAT]
    payload = json.dumps([content_id(cfg), limits, settings], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _bar(cfg: DataConfig, desc: str) -> tqdm:
    return tqdm(desc=desc, unit=" docs", disable=not (cfg.progress and sys.stderr.isatty()), leave=False)


def write_tokens(tok, docs, path: Path, cfg: DataConfig, desc: str) -> dict:
    """Encode `docs` chunk by chunk straight into the raw token file `path`; returns counts and speed."""
    n_docs = n_tokens = 0
    start = time.perf_counter()
    bar = _bar(cfg, desc)
    try:
        with open(path, "wb") as f:
            for count, ids in tok_lib.encode_chunks(tok, docs, cfg.encode_chunk_docs):
                f.write(ids.tobytes())
                n_docs, n_tokens = n_docs + count, n_tokens + len(ids)
                bar.update(count)
                bar.set_postfix(tokens_per_s=f"{n_tokens / max(time.perf_counter() - start, 1e-9):.3g}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {"docs": n_docs, "tokens": n_tokens, "seconds": seconds}


def build(cfg: DataConfig, given=None, fingerprint: str | None = None) -> Path:
    """The cache directory of `cfg`'s tokenized corpus, written (atomically) on first use."""
    key = cache_key(cfg, fingerprint)
    root = Path(cfg.cache_dir) / "tokens" / key
    if (root / "meta.json").exists():
        return root

    def write(tmp: Path) -> None:
        start = time.perf_counter()
        if given is not None:
            tok = given
        else:
            sample = corpus.sample(corpus.documents(cfg, "train"), cfg.tokenizer_sample_chars)
            tok = tok_lib.train_tokenizer(sample, cfg.vocab_size, cfg.min_frequency)
        tok.save(str(tmp / "tokenizer.json"))
        trained_s = time.perf_counter() - start
        counts = {}
        for role in ("train", "valid"):
            counts[role] = write_tokens(tok, corpus.documents(cfg, role), tmp / f"{role}.bin", cfg, f"tokenize {role}")
            if counts[role]["docs"] == 0:
                what = "training" if role == "train" else "validation"
                raise DataError(f"empty {what} corpus {corpus.describe(cfg)}; give at least one document")
        vocab = tok.get_vocab_size()
        token_manifest.write(tmp, tok_lib.token_dtype(vocab), vocab, {r: c["tokens"] for r, c in counts.items()})
        meta = {"key": key, "format": FORMAT, "vocab_size": vocab, "dtype": tok_lib.token_dtype(vocab).name}
        meta |= {"tokenizer_s": trained_s, **{role: c for role, c in counts.items()}}
        (tmp / "meta.json").write_text(json.dumps(meta))
        t = counts["train"]
        log.info(
            "tokenized %d documents, %d tokens (%.3g tokens/s)", t["docs"], t["tokens"], t["tokens"] / t["seconds"]
        )

    files.atomic_write_dir(root, write)
    return root


def open_verified(cfg: DataConfig, given=None, fingerprint: str | None = None) -> Path:
    """`build`'s cache directory, checked against its manifest; a cache that fails the check is rebuilt
    from the source with one warning line, or refused with one DataError line if that cannot be done."""
    root = build(cfg, given, fingerprint)
    try:
        token_manifest.verify(root)
        return root
    except token_manifest.CacheMismatch as e:
        why = str(e)
    log.warning("%s; rebuilding the token cache %s", why, corpus.describe(cfg))
    _discard(root)
    try:
        root = build(cfg, given, fingerprint)
        token_manifest.verify(root)
    except Exception as e:  # the source is gone (a hub corpus offline, a moved file) or unreadable
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{why}, and the cache cannot be rebuilt from its source: {first}") from None
    return root


def _discard(root: Path) -> None:
    """Move a failed cache aside (one rename: a concurrent reader keeps its open files) and delete it."""
    aside = root.parent / f".discarded-{root.name}-{uuid.uuid4().hex[:8]}"
    try:
        root.rename(aside)
    except FileNotFoundError:  # another worker discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def token_file(root: Path, role: str) -> np.ndarray:
    """The ids of `role` ("train" or "valid") in the cache directory `root`, memory-mapped read-only."""
    meta = json.loads((root / "meta.json").read_text())
    n = int(meta[role]["tokens"])
    if n == 0:
        return np.zeros(0, np.dtype(meta["dtype"]))
    return np.memmap(root / f"{role}.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(n,))
