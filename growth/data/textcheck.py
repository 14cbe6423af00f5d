"""Checks of a local text file before it is read: present, non-empty, UTF-8, not binary.

Each refusal is one line naming the file and the fix (`DataError`).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

COMPRESSED: dict[str, Callable] = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
# role -> (what the file is, the config field that names it), for messages.
ROLES = {"train": ("training", "data.train_path"), "valid": ("validation", "data.valid_path")}
_SNIFF_BYTES = 4 << 20  # UTF-8 / binary check of a text file's first 4 MiB (the rest is checked on read)


class DataError(ValueError):
    """Bad data input; the message names the path or value and the fix."""


def role_names(role: str) -> tuple[str, str]:
    """(what the file is, the config field naming it) for `role` ("train" or "valid")."""
    return ROLES.get(role, ROLES["train"])


def open_binary(p: Path):
    """`p` opened for reading bytes, decompressed on the fly when its suffix names a compression."""
    opener = COMPRESSED.get(p.suffix.lower(), open)
    return opener(p, "rb")


def read_head(p: Path, n: int) -> bytes:
    """The first `n` (decompressed) bytes of `p`."""
    try:
        with open_binary(p) as f:
            return f.read(n)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(
            f"cannot decompress {str(p)!r} ({type(e).__name__}: {e}); give a valid {p.suffix} file or the plain text"
        ) from e


def check_text_file(p: Path, role: str = "train") -> None:
    """Refuse, with one line naming the file and the fix, an empty, whitespace-only or binary text file."""
    what, field = role_names(role)
    if p.stat().st_size == 0:
        raise DataError(f"{what} file {str(p)!r} is empty (0 bytes); give a file with text, or set {field}=...")
    head = read_head(p, _SNIFF_BYTES)
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
        raise DataError(not_utf8(p, role, e.start)) from None
    if len(head) < _SNIFF_BYTES and not head.strip():
        raise DataError(f"{what} file {str(p)!r} holds only whitespace; give a file with at least one story")


def not_utf8(p: Path, role: str, offset: int | None = None) -> str:
    """The message for a file that is not UTF-8."""
    what = role_names(role)[0]
    where = f"undecodable byte at offset {offset}" if offset is not None else "undecodable bytes"
    return (
        f"{what} file {str(p)!r} is not UTF-8 text ({where}); convert it,"
        f" e.g. iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}"
    )


def check_nonempty_table(p: Path, role: str) -> None:
    """Refuse an empty parquet file."""
    if p.stat().st_size == 0:
        what = role_names(role)[0]
        raise DataError(f"{what} file {str(p)!r} is empty (0 bytes); give a parquet file with a 'text' column")
