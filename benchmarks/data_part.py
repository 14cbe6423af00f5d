"""The `data` benchmark part: the streamed, memory-mapped data path on a generated corpus of >= 400 MB.

A corpus is generated from the in-tree TinyStories sample (its stories, shuffled anew in every
repetition, in the official `<|endoftext|>` layout) and tokenized through `growth.data.pipeline.load` with
the project's settings, in a fresh process whose peak resident memory is read back. The in-memory
path it replaced (`benchmarks.data_legacy`) runs in the same benchmark run on a ~40 MB corpus it can
hold. tokens/s is training tokens over the whole load: reading, the tokenizer's training, encoding.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MB = 1 << 20


def generate(path: Path, megabytes: float, seed: int = 0) -> dict:
    """Write a `<|endoftext|>`-separated corpus of about `megabytes` MB; returns its size and story count."""
    from growth.config import DataConfig
    from growth.data.corpus import EOT, TINYSTORIES_DIR, local_documents

    stories = list(local_documents(TINYSTORIES_DIR / "TinyStories-train-sample.txt.xz", DataConfig()))
    rng = np.random.default_rng(seed)
    written = count = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes * MB:
            block = "".join(f"{stories[i]}\n{EOT}\n" for i in rng.permutation(len(stories)))
            f.write(block)
            written += len(block.encode())
            count += len(stories)
    return {"bytes": path.stat().st_size, "stories": count}


def _measure(which: str, train: Path, valid: Path, cache: Path, overrides: list[str]) -> dict:
    """Load the corpus by `which` path ("new" or "old") in this process; time, tokens, peak RSS."""
    from benchmarks.common import compose

    cfg = compose(
        ["data=local", f"data.train_path={train}", f"data.valid_path={valid}", f"data.cache_dir={cache}"] + overrides
    ).data
    start = time.perf_counter()
    if which == "new":
        from growth.data import pipeline as data

        loaded = data.load(cfg)
        tokens = int(loaded.train_BxT1.size)
    else:
        from benchmarks import data_legacy

        _, train_ids, _ = data_legacy.load(cfg)
        tokens = len(train_ids)
    seconds = time.perf_counter() - start
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB
    return {"seconds": seconds, "train_tokens_packed": tokens, "tokens_per_s": tokens / seconds, "peak_rss_gb": rss_gb}


def _subprocess(which: str, train: Path, valid: Path, cache: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.data_part", which, str(train), str(valid), str(cache), *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"data part ({which} path) failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(new_mb: float = 400, old_mb: float = 40, overrides: list[str] | None = None, log=print) -> dict:
    """Both paths, each in its own process, on corpora generated in a temporary directory."""
    from growth.data.corpus import TINYSTORIES_DIR

    overrides = overrides or []
    valid = TINYSTORIES_DIR / "TinyStories-valid-sample.txt.xz"
    with tempfile.TemporaryDirectory(prefix="growth-data-bench-") as tmp:
        root = Path(tmp)
        out = {}
        for which, mb in (("old", old_mb), ("new", new_mb)):
            corpus = root / f"corpus-{which}.txt"
            log(f"data: generating a {mb:g} MB corpus for the {which} path")
            facts = generate(corpus, mb)
            log(f"data: tokenizing it through the {which} path")
            out[which] = facts | _subprocess(which, corpus, valid, root / f"cache-{which}", overrides)
            corpus.unlink()
    out["tokens_per_s_ratio"] = out["new"]["tokens_per_s"] / out["old"]["tokens_per_s"]
    out["overrides"] = overrides
    return out


if __name__ == "__main__":
    which, train, valid, cache, *extra = sys.argv[1:]
    print(json.dumps(_measure(which, Path(train), Path(valid), Path(cache), extra)))
