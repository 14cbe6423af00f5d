"""Corpus loading, byte-level BPE tokenization with a content-keyed cache, and replayable batches.

The batch for training step `t` under seed `s` is a pure function of `(s, t)`: any run can replay the
batches of another exactly, and a resumed run sees the batches an uninterrupted one would have.

Local paths are read as given, or relative to the repository (so `data/tinystories/...` works from any
directory); a file `X` may be stored compressed as `X.xz`, `X.gz` or `X.bz2` (read directly), and a
compressed name falls back to the plain file. With `data.tokenizer_path` (an imported checkpoint's
tokenizer) the corpus is tokenized with that tokenizer instead of a freshly trained BPE.
"""

from __future__ import annotations

import bz2
import codecs
import functools
import gzip
import hashlib
import json
import logging
import lzma
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from growth import files, synthetic
from growth.config import DataConfig, DataSource

log = logging.getLogger(__name__)

EOT = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".text")
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSED: dict[str, Callable] = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
# The repository root: relative data paths (e.g. the in-tree data/tinystories sample) resolve here too.
REPO_ROOT = Path(__file__).resolve().parents[1]
TINYSTORIES_DIR = REPO_ROOT / "data" / "tinystories"
_SNIFF_BYTES = 4 << 20  # UTF-8 / binary check of a text file's first 4 MiB (the rest is checked on read)
ROLES = {"train": ("training", "data.train_path"), "valid": ("validation", "data.valid_path")}


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
    description: str = ""  # where the text came from (file names), for error messages

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path))


# ---------------------------------------------------------------- raw text


def _datasets_cache(cfg: DataConfig) -> str:
    path = Path(cfg.cache_dir) / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def resolve_path(path: str | os.PathLike, role: str = "train") -> Path:
    """The existing file `path` names: as given, else relative to the repository; compressed or not."""
    p = Path(path).expanduser()
    bases = [p] if p.is_absolute() else [p, REPO_ROOT / p]
    tried = []
    for base in bases:
        if base.suffix in COMPRESSED:
            variants = [base, base.with_suffix("")]
        else:
            variants = [base] + [base.with_name(base.name + ext) for ext in COMPRESSED]
        for v in variants:
            if v.is_file():
                return v
            tried.append(str(v))
    what, field = ROLES.get(role, ROLES["train"])
    raise DataError(
        f"{what} file not found: {str(p)!r} (also looked for {', '.join(tried[1:]) or 'nothing else'});"
        f" point {field}=... at an existing .txt, .jsonl or .parquet file (optionally .xz/.gz/.bz2), or"
        " use data=synthetic for the embedded corpus"
    )


def _format_suffix(p: Path) -> str:
    """The data format of `p` (`.txt`, `.jsonl`, ...), under any compression suffix."""
    suffixes = [x.lower() for x in p.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_binary(p: Path):
    opener = COMPRESSED.get(p.suffix.lower(), open)
    return opener(p, "rb")


def _read_head(p: Path, n: int) -> bytes:
    try:
        with _open_binary(p) as f:
            return f.read(n)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(
            f"cannot decompress {str(p)!r} ({type(e).__name__}: {e}); give a valid {p.suffix} file or the plain text"
        ) from e


def check_text_file(p: Path, role: str = "train") -> None:
    """Refuse, with one line naming the file and the fix, an empty, whitespace-only or binary text file."""
    what, field = ROLES.get(role, ROLES["train"])
    if p.stat().st_size == 0:
        raise DataError(f"{what} file {str(p)!r} is empty (0 bytes); give a file with text, or set {field}=...")
    head = _read_head(p, _SNIFF_BYTES)
    if not head:
        raise DataError(f"{what} file {str(p)!r} decompresses to nothing; give a file with text")
    if b"\x00" in head:
        raise DataError(
            f"{what} file {str(p)!r} is binary (it holds NUL bytes), not text; give a UTF-8 .txt/.jsonl file"
            " (or .parquet for a table)"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{what} file {str(p)!r} is not UTF-8 text (undecodable byte at offset {e.start}); convert it,"
            f" e.g. iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}"
        ) from None
    if len(head) < _SNIFF_BYTES and not head.strip():
        raise DataError(f"{what} file {str(p)!r} holds only whitespace; give a file with at least one story")


def _has_eot_separators(path: Path) -> bool:
    return EOT.encode() in _read_head(path, 1 << 20)


def _load_dataset(builder: str, p: Path, role: str, cache: str, **kw):
    import datasets

    try:
        return datasets.load_dataset(builder, data_files=str(p), cache_dir=cache, **kw)["train"]
    except Exception as e:  # datasets wraps parse errors in DatasetGenerationError; name the file instead
        cause = e.__cause__ or e
        what = ROLES.get(role, ROLES["train"])[0]
        detail = " ".join(str(cause).split())[:300]
        fix = "one JSON object with a 'text' string per line" if builder == "json" else f"a valid {builder} file"
        raise DataError(
            f"cannot read {what} file {str(p)!r} as {builder} ({type(cause).__name__}: {detail}); give {fix}"
        ) from e


def read_local_documents(
    path: str | os.PathLike, cfg: DataConfig, limit: int | None = None, role: str = "train"
) -> list[str]:
    """Documents of a local file, read through `datasets`' own loaders (compressed files included)."""
    import datasets

    p = resolve_path(path, role)
    what = ROLES.get(role, ROLES["train"])[0]
    suffix = _format_suffix(p)
    known = TEXT_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES
    if suffix not in known:
        raise DataError(
            f"unknown data format {suffix!r} for {str(p)!r}; use .txt (stories separated by"
            f" '{EOT}' lines, or blank-line paragraphs), .jsonl with a 'text' field, or .parquet"
        )
    if suffix in PARQUET_SUFFIXES:
        if p.stat().st_size == 0:
            raise DataError(f"{what} file {str(p)!r} is empty (0 bytes); give a parquet file with a 'text' column")
    else:
        check_text_file(p, role)
    cache = _datasets_cache(cfg)
    datasets.disable_progress_bars()
    if suffix in TEXT_SUFFIXES:
        if _has_eot_separators(p):
            whole = _load_dataset("text", p, role, cache, sample_by="document")
            docs = [d for row in whole["text"] for d in row.split(EOT)]
        else:
            docs = list(_load_dataset("text", p, role, cache, sample_by="paragraph")["text"])
    else:
        table = _load_dataset("parquet" if suffix in PARQUET_SUFFIXES else "json", p, role, cache)
        if "text" not in table.column_names:
            raise DataError(
                f"{str(p)!r} has no 'text' field (columns: {table.column_names}); each record needs a 'text' string"
            )
        docs = list(table["text"])
        bad = next((d for d in docs if d is not None and not isinstance(d, str)), None)
        if bad is not None:
            raise DataError(
                f"{str(p)!r}: a 'text' field holds {type(bad).__name__} {str(bad)[:40]!r}; every 'text' must be a string"
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
        train = read_local_documents(cfg.train_path, cfg, cfg.max_train_docs, role="train")
        valid = read_local_documents(cfg.valid_path, cfg, cfg.max_valid_docs, role="valid")
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


def load_pretrained_tokenizer(path: str | os.PathLike):
    """A saved tokenizer: a `tokenizer.json` file, or a directory holding one or GPT-2's vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    path = Path(path).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if path.is_file():
        if path.suffix != ".json":
            raise DataError(f"tokenizer {str(path)!r} is not a tokenizer.json; give the file or its directory")
        try:
            return Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise DataError(
                f"cannot read tokenizer {str(path)!r} ({e}); give a tokenizer.json from save_pretrained"
            ) from e
    if (path / "tokenizer.json").is_file():
        return load_pretrained_tokenizer(path / "tokenizer.json")
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        tok = Tokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok
    raise DataError(
        f"no tokenizer in {str(path)!r}: looked for tokenizer.json, or vocab.json + merges.txt;"
        " save it with tokenizer.save_pretrained(DIR)"
    )


def _encode(tok, docs: list[str]) -> np.ndarray:
    """Every document's ids, each followed by <|endoftext|> when the tokenizer has that token."""
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        if eot is not None:
            ids.append(eot)
    dtype = np.uint16 if tok.get_vocab_size() < 2**16 else np.int32
    return np.asarray(ids, dtype=dtype)


def cache_key(source: str, train: list[str], valid: list[str], cfg: DataConfig, tokenizer: str | None = None) -> str:
    """Hash of the data source, the text itself and the tokenizer settings (or the given tokenizer)."""
    h = hashlib.sha256()
    if tokenizer is None:
        h.update(json.dumps([source, cfg.vocab_size, cfg.min_frequency, cfg.lowercase, "bpe-v1"]).encode())
    else:
        h.update(json.dumps([source, cfg.lowercase, "pretrained-v1", tokenizer]).encode())
    for part in (train, valid):
        for d in part:
            h.update(d.encode())
            h.update(b"\x00")
        h.update(b"\x01")
    return h.hexdigest()[:16]


def _pack(tokens: np.ndarray, length: int) -> np.ndarray:
    n = len(tokens) // length
    return tokens[: n * length].reshape(n, length)


def load(cfg: DataConfig) -> TokenData:
    """Tokenized, packed training and evaluation data, trained and cached on first use."""
    train, valid, source = read_documents(cfg)
    described = describe(cfg)
    if not train:
        raise DataError(f"empty training corpus {described}; give at least one document")
    if not valid:
        raise DataError(f"empty validation corpus {described}; give at least one document")
    given = load_pretrained_tokenizer(cfg.tokenizer_path) if cfg.tokenizer_path else None
    fingerprint = hashlib.sha256(given.to_str().encode()).hexdigest()[:16] if given is not None else None
    key = cache_key(source, train, valid, cfg, fingerprint)
    root = Path(cfg.cache_dir) / "tokens" / key

    if not (root / "meta.json").exists():

        def write(tmp: Path) -> None:
            tok = given if given is not None else train_tokenizer(train, cfg.vocab_size, cfg.min_frequency)
            tok.save(str(tmp / "tokenizer.json"))
            np.save(tmp / "train.npy", _encode(tok, train))
            np.save(tmp / "valid.npy", _encode(tok, valid))
            meta = {"source": source, "vocab_size": tok.get_vocab_size(), "key": key}
            (tmp / "meta.json").write_text(json.dumps(meta))

        files.atomic_write_dir(root, write)

    meta = json.loads((root / "meta.json").read_text())
    length = cfg.context + 1
    train_seq = _pack(np.load(root / "train.npy"), length)
    valid_seq = _pack(np.load(root / "valid.npy"), length)
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
        eval_BxT1=valid_seq[: cfg.eval_sequences],
        tokenizer_path=root / "tokenizer.json",
        vocab_size=int(meta["vocab_size"]),
        cache_key=key,
        description=described,
    )


def describe(cfg: DataConfig) -> str:
    """Where the corpus comes from, for messages: the files, the hub name or the synthetic seed."""
    if cfg.source == "local":
        return f"from {cfg.train_path!r} (validation {cfg.valid_path!r})"
    if cfg.source == "tinystories":
        return f"from the hub dataset {cfg.hub_name!r}"
    return f"from the synthetic corpus (seed {cfg.synthetic_seed})"


# ---------------------------------------------------------------- batches


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
    """The (batch_size, context + 1) int32 batch for training step `step` under `seed`."""
    idx = batch_indices(seed, step, batch_size, len(data.train_BxT1))
    return data.train_BxT1[idx].astype(np.int32)
