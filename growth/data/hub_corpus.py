"""data=hub: documents of any Hugging Face dataset, streamed: one text column of one split.

`data.hub_name` is a hub id (read through `datasets` streaming; refused in one line without a network)
or a local directory written by `Dataset.save_to_disk` (memory-mapped) or holding parquet / jsonl files
(streamed), read offline. Documents are cleaned as every corpus's are (growth/data/corpus.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from growth.config import DataConfig
from growth.data.doc_clean import _clean, _hub_reachable
from growth.data.textcheck import DataError

# The repository root: a relative data.hub_name resolves here too, as local data paths do.
REPO_ROOT = Path(__file__).resolve().parents[2]
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


def documents(cfg: DataConfig, role: str, limit: int | None) -> Iterator[str]:
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
