"""Byte-level BPE tokenizer: trained on a bounded sample of the text, or loaded from a saved one; chunked encoding.

Encoding never builds a Python list of the corpus' ids: documents are encoded a chunk at a time and
each chunk's ids go out as one numpy array (uint16 while the vocabulary fits, else int32).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from growth.data.corpus import EOT, REPO_ROOT
from growth.data.textcheck import DataError


def train_tokenizer(docs: Iterable[str], vocab_size: int, min_frequency: int):
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


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else int32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)


def _eot_is_special(tok) -> bool:
    """Whether <|endoftext|> in a text is split out as its own token (an added token of `tok`)."""
    return any(t.content == EOT for t in tok.get_added_tokens_decoder().values())


# The byte-level BPE's pre-tokenizer pattern (GPT-2's, which `tokenizers` applies for ByteLevel with
# use_regex): the ids of a text are the concatenated ids of its pieces, each encoded on its own.
_PIECES = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_MEMO_LIMIT = 1 << 20  # pieces remembered at once (TinyStories has ~30k distinct ones)


def _plain_byte_level(tok) -> bool:
    """Whether `tok` is a byte-level BPE with no normalizer and no added token but <|endoftext|>."""
    spec = json.loads(tok.to_str())
    pre = spec.get("pre_tokenizer") or {}
    plain = spec.get("normalizer") is None and spec["model"].get("type") == "BPE"
    plain &= pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")
    return plain and [t["content"] for t in spec.get("added_tokens", [])] in ([], [EOT])


class _PieceEncoder:
    """Encodes each distinct pre-token piece once: the same ids as `tok.encode`, several times faster."""

    def __init__(self, tok, dtype: np.dtype):
        import regex

        self.tok, self.dtype = tok, dtype
        self.memo: dict[str, list[int]] = {}
        self.pieces = regex.compile(_PIECES)
        self.eot = tok.token_to_id(EOT)

    def __call__(self, docs: list[str]) -> np.ndarray:
        out: list[int] = []
        memo, encode = self.memo, self.tok.encode
        for d in docs:
            if EOT in d:  # an <|endoftext|> inside a document: the tokenizer splits it out itself
                out.extend(encode(d, add_special_tokens=False).ids)
            else:
                for piece in self.pieces.findall(d):
                    ids = memo.get(piece)
                    if ids is None:
                        ids = memo[piece] = encode(piece, add_special_tokens=False).ids
                    out.extend(ids)
            out.append(self.eot)
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        return np.asarray(out, self.dtype)


def encode_chunks(tok, docs: Iterable[str], chunk_docs: int) -> Iterator[tuple[int, np.ndarray]]:
    """(documents, ids) of each chunk of `chunk_docs` documents; every document is followed by <|endoftext|>.

    For the plain byte-level BPE this harness trains, each distinct pre-token piece is encoded once
    and remembered (`_PieceEncoder`; tests check the ids equal the tokenizer's own on the sample).
    Otherwise, when <|endoftext|> is an added token, a chunk's documents are joined by it into 16
    long strings encoded in parallel (the tokenizer splits added tokens out before pre-tokenizing, so
    the ids are those of each document on its own); else each document is encoded on its own.
    """
    eot = tok.token_to_id(EOT)
    dtype = token_dtype(tok.get_vocab_size())
    pieces = _PieceEncoder(tok, dtype) if eot is not None and _plain_byte_level(tok) else None
    joined = eot is not None and _eot_is_special(tok)
    it = iter(docs)
    while chunk := list(islice(it, chunk_docs)):
        if pieces is not None:
            ids = pieces(chunk)
        elif joined:
            step = max(1, len(chunk) // 16)
            texts = ["".join(d + EOT for d in chunk[i : i + step]) for i in range(0, len(chunk), step)]
            encs = tok.encode_batch(texts, add_special_tokens=False)
            ids = np.concatenate([np.asarray(e.ids, dtype) for e in encs])
        else:
            encs = tok.encode_batch(chunk, add_special_tokens=False)
            tail = [eot] if eot is not None else []
            ids = np.concatenate([np.asarray(e.ids + tail, dtype) for e in encs])
        yield len(chunk), ids
