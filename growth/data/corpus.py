"""Documents of a corpus, streamed one at a time: local files, the hub dataset, or the synthetic corpus.

Nothing here holds a corpus in memory. `data=hub` reads any Hugging Face dataset (growth/data/hub_corpus.py).
Local files are read incrementally: `.txt` in 1 MiB pieces
split on `<|endoftext|>` lines (the official TinyStories layout) or on blank lines, `.jsonl` line by
line, `.parquet` in record batches. The hub dataset is read through `datasets` streaming. Every
document is stripped (empty ones dropped) and lowercased when `data.lowercase` is set.

Local paths are read as given, or relative to the repository (so `data/tinystories/...` works from any
directory); a file `X` may be stored compressed as `X.xz`, `X.gz` or `X.bz2` (read directly), and a
compressed name falls back to the plain file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from growth.config import DataConfig, DataSource
from growth.data import hub_corpus, synthetic
from growth.data.doc_clean import _clean, _hub_reachable
from growth.data.textcheck import (
    COMPRESSED,
    DataError,
    check_nonempty_table,
    check_text_file,
    not_utf8,
    open_binary,
    read_head,
    role_names,
)

EOT = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".text")
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
# The repository root: relative data paths (e.g. the in-tree data/tinystories sample) resolve here too.
REPO_ROOT = Path(__file__).resolve().parents[2]
TINYSTORIES_DIR = REPO_ROOT / "data" / "tinystories"
_PIECE_CHARS = 1 << 20  # characters of a text file read at once


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
    what, field = role_names(role)
    raise DataError(
        f"{what} file not found: {str(p)!r} (also looked for {', '.join(tried[1:]) or 'nothing else'});"
        f" point {field}=... at an existing .txt, .jsonl or .parquet file (optionally .xz/.gz/.bz2), or"
        " use data=synthetic for the embedded corpus"
    )


def format_suffix(p: Path) -> str:
    """The data format of `p` (`.txt`, `.jsonl`, ...), under any compression suffix."""
    suffixes = [x.lower() for x in p.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _split_stream(p: Path, sep: str, role: str) -> Iterator[str]:
    """The pieces of a text file between separators `sep`, read 1 MiB at a time (universal newlines)."""
    with io.TextIOWrapper(open_binary(p), encoding="utf-8") as f:
        rest = ""
        try:
            while piece := f.read(_PIECE_CHARS):
                parts = (rest + piece).split(sep)
                rest = parts.pop()
                yield from parts
        except UnicodeDecodeError:
            raise DataError(not_utf8(p, role)) from None
        yield rest


def _json_rows(p: Path, role: str) -> Iterator[str]:
    what = role_names(role)[0]
    with io.TextIOWrapper(open_binary(p), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"cannot read {what} file {str(p)!r} as json (JSONDecodeError: {e}); give one JSON object"
                    " with a 'text' string per line"
                ) from None
            if not isinstance(row, dict) or "text" not in row:
                columns = list(row) if isinstance(row, dict) else type(row).__name__
                raise DataError(
                    f"{str(p)!r} has no 'text' field (columns: {columns}); each record needs a 'text' string"
                )
            yield row["text"]


def _parquet_rows(p: Path, role: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    what = role_names(role)[0]
    try:
        table = pq.ParquetFile(open_binary(p))
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a broken file
        detail = " ".join(str(e).split())[:300]
        raise DataError(
            f"cannot read {what} file {str(p)!r} as parquet ({type(e).__name__}: {detail}); give a valid parquet file"
        ) from None
    names = table.schema_arrow.names
    if "text" not in names:
        raise DataError(f"{str(p)!r} has no 'text' field (columns: {names}); each record needs a 'text' string")
    for batch in table.iter_batches(columns=["text"], batch_size=8192):
        yield from batch.column(0).to_pylist()


def _raw_local(p: Path, role: str) -> Iterator[str]:
    suffix = format_suffix(p)
    if suffix not in TEXT_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(
            f"unknown data format {suffix!r} for {str(p)!r}; use .txt (stories separated by"
            f" '{EOT}' lines, or blank-line paragraphs), .jsonl with a 'text' field, or .parquet"
        )
    if suffix in PARQUET_SUFFIXES:
        check_nonempty_table(p, role)
        return _parquet_rows(p, role)
    check_text_file(p, role)
    if suffix in JSON_SUFFIXES:
        return _json_rows(p, role)
    sep = EOT if EOT.encode() in read_head(p, 1 << 20) else "\n\n"
    return _split_stream(p, sep, role)


def local_documents(
    path: str | os.PathLike, cfg: DataConfig, limit: int | None = None, role: str = "train"
) -> Iterator[str]:
    """The documents of a local file, streamed."""
    p = resolve_path(path, role)
    return _clean(_raw_local(p, role), cfg, p, limit)


def read_local_documents(
    path: str | os.PathLike, cfg: DataConfig, limit: int | None = None, role: str = "train"
) -> list[str]:
    """The documents of a local file as a list (small files: examples, tests)."""
    return list(local_documents(path, cfg, limit, role))


def hub_documents(cfg: DataConfig, split: str, limit: int | None) -> Iterator[str]:
    """TinyStories from the Hugging Face hub through `datasets` streaming; fails fast without a network."""
    if not _hub_reachable(cfg.hub_timeout_s):
        raise DataError(
            f"cannot reach the Hugging Face hub for {cfg.hub_name!r} (no network?). Use data=local"
            " data.train_path=... data.valid_path=... for local TinyStories files (e.g. the shared"
            " sample), or data=synthetic for the embedded corpus."
        )
    import datasets

    rows = datasets.load_dataset(
        cfg.hub_name, split=split, streaming=True, cache_dir=str(Path(cfg.cache_dir) / "datasets")
    )
    return _clean((r["text"] for r in rows), cfg, f"{cfg.hub_name}:{split}", limit)


def check_source(cfg: DataConfig) -> None:
    """Refuse an unknown source or a local source without both files."""
    if cfg.source not in [s.value for s in DataSource]:
        raise DataError(f"data.source={cfg.source!r} is unknown; use one of {', '.join(DataSource)}")
    if cfg.source == DataSource.local and (not cfg.train_path or not cfg.valid_path):
        raise DataError(
            "data=local needs both data.train_path=... and data.valid_path=... (got"
            f" train_path={cfg.train_path!r}, valid_path={cfg.valid_path!r})"
        )


def documents(cfg: DataConfig, role: str) -> Iterator[str]:
    """The training (`role="train"`) or validation documents of the configured source, streamed."""
    check_source(cfg)
    limit = cfg.max_train_docs if role == "train" else cfg.max_valid_docs
    if cfg.source == DataSource.synthetic:
        n = cfg.synthetic_train_docs
        start, count = (0, n) if role == "train" else (n, cfg.synthetic_valid_docs)
        return (synthetic.story(cfg.synthetic_seed, i) for i in range(start, start + count))
    if cfg.source == DataSource.local:
        return local_documents(cfg.train_path if role == "train" else cfg.valid_path, cfg, limit, role)  # type: ignore[arg-type]
    if cfg.source == DataSource.hub:
        return hub_corpus.documents(cfg, role, limit)
    return hub_documents(cfg, "train" if role == "train" else "validation", limit)


def sample(docs: Iterator[str], max_chars: int) -> Iterator[str]:
    """The first documents of `docs` up to `max_chars` characters in all (at least one document)."""
    total = 0
    for d in docs:
        yield d
        total += len(d)
        if total >= max_chars:
            return


def first(docs: Iterator[str], n: int) -> list[str]:
    """The first `n` documents as a list."""
    return list(islice(docs, n))


def describe(cfg: DataConfig) -> str:
    """Where the corpus comes from, for messages: the files, the hub name or the synthetic seed."""
    if cfg.source == DataSource.local:
        return f"from {cfg.train_path!r} (validation {cfg.valid_path!r})"
    if cfg.source == DataSource.tinystories:
        return f"from the hub dataset {cfg.hub_name!r}"
    if cfg.source == DataSource.hub:
        held = cfg.hub_valid_split or f"the first {cfg.max_valid_docs} of {cfg.hub_split}"
        return f"from the dataset {cfg.hub_name!r} (config {cfg.hub_config}, split {cfg.hub_split}, held out {held})"
    return f"from the synthetic corpus (seed {cfg.synthetic_seed})"
