"""What every corpus source shares: a document stream cleaned (stripped, non-empty, lowercased, limited)
and whether the Hugging Face hub can be reached."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

from growth.config import DataConfig
from growth.data.textcheck import DataError


def _bad_field(p: Path, value: object) -> DataError:
    return DataError(
        f"{str(p)!r}: a 'text' field holds {type(value).__name__} {str(value)[:40]!r}; every 'text' must be a string"
    )


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


def _hub_reachable(timeout_s: float) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return True
    except OSError:
        return False
