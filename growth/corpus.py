"""Documents of a corpus, streamed one at a time: local files, the hub dataset, or the synthetic corpus.

Nothing here holds a corpus in memory. `data=hub` reads any Hugging Face dataset (a hub id through `datasets` streaming, or a local directory
written by `Dataset.save_to_disk` or holding parquet / jsonl files), one text column of one split.
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
import socket
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from growth import synthetic
from growth.config import DataConfig, DataSource
from growth.textcheck import (
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
REPO_ROOT = Path(__file__).resolve().parents[1]
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


def _bad_field(p: Path, value: object) -> DataError:
    return DataError(
        f"{str(p)!r}: a 'text' field holds {type(value).__name__} {str(value)[:40]!r}; every 'text' must be a string"
    )


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


def _clean(raw: Iterator, cfg: DataConfig, p: Path | str, limit: int | None) -> Iterator[str]:
    """Stripped, non-empty (lowercased) documents, at most `limit`; refuses a corpus without any."""
    n = 0
    for d in raw:
        if d is None:
            continue
        if not isinstance(d, str):
            raise _bad_field(Path(p), d)
        d = d.strip()
        if not d:
            continue
        yield d.lower() if cfg.lowercase else d
        n += 1
        if limit and n >= limit:
            return
    if n == 0:
        raise DataError(f"empty corpus: {str(p)!r} holds no text; give a file with at least one story")


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


def _hub_reachable(timeout_s: float) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return True
    except OSError:
        return False


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


SAVED_MARKERS = ("state.json", "dataset_dict.json")  # a directory written by Dataset(Dict).save_to_disk


def local_dataset_dir(cfg: DataConfig) -> Path | None:
    """data.hub_name as a local dataset directory (save_to_disk, or parquet / jsonl files), if it is one."""
    p = Path(cfg.hub_name).expanduser()
    for base in [p] if p.is_absolute() else [p, REPO_ROOT / p]:
        if base.is_dir():
            return base
    return None


def _open_split(cfg: DataConfig, split: str):
    """The rows of one split of data=hub's dataset, streamed (a save_to_disk directory is memory-mapped)."""
    import datasets

    local = local_dataset_dir(cfg)
    try:
        if local is not None and any((local / m).is_file() for m in SAVED_MARKERS):
            saved = datasets.load_from_disk(str(local))
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise DataError(
                        f"{str(local)!r} has no split {split!r} (splits: {list(saved)}); set data.hub_split /"
                        " data.hub_valid_split (null: hold out the first data.max_valid_docs documents)"
                    )
                saved = saved[split]
            return saved
        if local is None and not _hub_reachable(cfg.hub_timeout_s):
            raise DataError(
                f"cannot reach the Hugging Face hub for {cfg.hub_name!r} (no network?); save the dataset with"
                " Dataset.save_to_disk(DIR) where there is one and give data.hub_name=DIR, or use data=local"
            )
        return datasets.load_dataset(
            str(local or cfg.hub_name), cfg.hub_config, split=split, streaming=True,
            cache_dir=str(Path(cfg.cache_dir) / "datasets"),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:  # an unknown split, config or dataset
        if isinstance(e, DataError):
            raise
        detail = " ".join(str(e).split())[:300]
        raise DataError(
            f"cannot open split {split!r} of {cfg.hub_name!r} (config {cfg.hub_config!r}): {detail}; check"
            " data.hub_name, data.hub_config and data.hub_split"
        ) from None


def _texts(rows, cfg: DataConfig) -> Iterator:
    field = cfg.hub_text_field
    for row in rows:
        if field not in row:
            raise DataError(f"{cfg.hub_name!r} has no column {field!r} (columns: {list(row)}); set data.hub_text_field")
        yield row[field]


def any_hub_documents(cfg: DataConfig, role: str, limit: int | None) -> Iterator[str]:
    """data=hub: documents of data.hub_split (train) or data.hub_valid_split; with no held-out split, the
    first max_valid_docs documents of hub_split are held out and training skips them."""
    where = f"{cfg.hub_name}:{cfg.hub_split}"
    if cfg.hub_valid_split is not None:
        split = cfg.hub_split if role == "train" else cfg.hub_valid_split
        return _clean(_texts(_open_split(cfg, split), cfg), cfg, f"{cfg.hub_name}:{split}", limit)
    held = cfg.max_valid_docs or 0
    if not held:
        raise DataError("data.hub_valid_split=null holds out data.max_valid_docs documents; set it >= 1")
    docs = _clean(_texts(_open_split(cfg, cfg.hub_split), cfg), cfg, where, None)
    if role != "train":
        return islice(docs, held)
    return islice(docs, held, None if limit is None else held + limit)


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
        return any_hub_documents(cfg, role, limit)
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
