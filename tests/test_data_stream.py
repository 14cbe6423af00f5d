"""The streamed, memory-mapped data path against the in-memory reference it replaced."""

import dataclasses

import numpy as np
import pytest

from benchmarks import data_legacy
from growth.config import DataConfig
from growth.data import corpus, token_cache, tokenizer
from growth.data import pipeline as data
from tests.conftest import TRAIN_SAMPLE, VALID_SAMPLE


def _cfg(tmp_path, **kw) -> DataConfig:
    base = dict(source="local", train_path=str(TRAIN_SAMPLE), valid_path=str(VALID_SAMPLE), vocab_size=400)
    return DataConfig(**(base | dict(context=16, eval_sequences=8, cache_dir=str(tmp_path / "c")) | kw))


@pytest.mark.parametrize("source", ["local", "synthetic"])
def test_memmap_path_gives_the_in_memory_token_stream_and_batches(tmp_path, source):
    kw = dict(max_train_docs=400, max_valid_docs=60, encode_chunk_docs=37)  # chunks that do not divide the corpus
    if source == "synthetic":
        kw = dict(source="synthetic", synthetic_train_docs=300, synthetic_valid_docs=30, encode_chunk_docs=37)
    cfg = _cfg(tmp_path, **kw)
    new = data.load(cfg)
    ref, train_ids, valid_ids = data_legacy.load(cfg)
    root = token_cache.build(cfg)
    assert isinstance(token_cache.token_file(root, "train"), np.memmap)
    np.testing.assert_array_equal(token_cache.token_file(root, "train"), train_ids)
    np.testing.assert_array_equal(token_cache.token_file(root, "valid"), valid_ids)
    assert new.train_BxT1.dtype == np.uint16 and isinstance(new.train_BxT1.base, np.memmap | np.ndarray)
    np.testing.assert_array_equal(new.eval_BxT1, ref.eval_BxT1)
    for step in (0, 5, 11):
        np.testing.assert_array_equal(data.batch_at(new, 3, step, 8), data.batch_at(ref, 3, step, 8))


def test_text_is_read_in_pieces_as_if_whole(tmp_path, monkeypatch):
    whole = list(corpus.local_documents(TRAIN_SAMPLE, DataConfig(), 300))
    paragraphs = list(corpus.local_documents(VALID_SAMPLE, DataConfig(), 300, "valid"))
    monkeypatch.setattr(corpus, "_PIECE_CHARS", 7)  # separators straddle the pieces
    assert list(corpus.local_documents(TRAIN_SAMPLE, DataConfig(), 300)) == whole
    assert list(corpus.local_documents(VALID_SAMPLE, DataConfig(), 300, "valid")) == paragraphs


def test_joined_encoding_equals_encoding_each_document():
    docs = list(corpus.local_documents(VALID_SAMPLE, DataConfig(), 200, "valid"))
    tok = tokenizer.train_tokenizer(docs, 300, 2)
    eot = tok.token_to_id(corpus.EOT)
    one_by_one = np.concatenate([np.asarray(tok.encode(d).ids + [eot]) for d in docs])
    chunked = np.concatenate([ids for _, ids in tokenizer.encode_chunks(tok, docs, 23)])
    np.testing.assert_array_equal(chunked, one_by_one)


def test_tokenizer_is_trained_on_a_bounded_sample(tmp_path):
    docs = corpus.local_documents(TRAIN_SAMPLE, DataConfig(), 500)
    sampled = list(corpus.sample(docs, 5_000))
    assert 1 <= len(sampled) < 500 and sum(map(len, sampled[:-1])) < 5_000 <= sum(map(len, sampled))
    full = data.load(_cfg(tmp_path, max_train_docs=500, max_valid_docs=50))
    small = data.load(_cfg(tmp_path, max_train_docs=500, max_valid_docs=50, tokenizer_sample_chars=5_000))
    assert small.cache_key != full.cache_key
    text = "once upon a time, a little girl named lily found a shiny stone."
    assert small.tokenizer().encode(text).ids != full.tokenizer().encode(text).ids


def test_cache_key_follows_the_file_bytes_and_the_settings(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat on the mat.\n\nthe dog ran to the park.\n")
    cfg = _cfg(tmp_path, train_path=str(tmp_path / "a.txt"), context=4)
    key = token_cache.cache_key(cfg)
    assert token_cache.cache_key(dataclasses.replace(cfg, encode_chunk_docs=3, progress=False)) == key
    assert token_cache.cache_key(dataclasses.replace(cfg, vocab_size=300)) != key
    (tmp_path / "a.txt").write_text("the cat sat on the mat.\n\nthe dog ran to the zoo.\n")
    assert token_cache.cache_key(cfg) != key


def test_identity_ignores_throughput_fields_and_keeps_old_hashes():
    cfg = DataConfig()
    ident = data.identity(cfg)
    assert "tokenizer_sample_chars" not in ident and "encode_chunk_docs" not in ident and ident["cache_dir"] is None
    assert data.identity(dataclasses.replace(cfg, encode_chunk_docs=7, cache_dir="x")) == ident
    assert data.identity(dataclasses.replace(cfg, tokenizer_sample_chars=10))["tokenizer_sample_chars"] == 10


def test_ids_are_uint16_until_the_vocabulary_needs_int32():
    assert tokenizer.token_dtype(2**16) == np.uint16
    assert tokenizer.token_dtype(2**16 + 1) == np.int32


def test_piece_encoder_gives_the_tokenizers_own_ids_on_odd_text():
    docs = list(corpus.local_documents(VALID_SAMPLE, DataConfig(), 200, "valid"))
    odd = [
        "Tom's dog  can't   run!!\tIt's 42 km... \u00e9t\u00e9 \u4e2d\u6587 \U0001f600  \n\n  end",
        "  leading spaces, trailing  ",
        "a story with <|endoftext|> inside it",
        "digits 1234567 and   \r\n  crlf",
    ]
    tok = tokenizer.train_tokenizer(docs + odd, 300, 2)
    assert tokenizer._plain_byte_level(tok)
    eot = tok.token_to_id(corpus.EOT)
    want = np.concatenate([np.asarray(tok.encode(d).ids + [eot]) for d in docs + odd])
    got = np.concatenate([ids for _, ids in tokenizer.encode_chunks(tok, docs + odd, 50)])
    np.testing.assert_array_equal(got, want)
