import json

import numpy as np
import pandas as pd
import pytest

from growth import data as data_lib
from growth import synthetic
from growth.config import DataConfig
from tests.conftest import TRAIN_SAMPLE, VALID_SAMPLE


def _local_cfg(tmp_path, train, valid, **kw) -> DataConfig:
    base = dict(
        source="local",
        train_path=str(train),
        valid_path=str(valid),
        vocab_size=300,
        context=16,
        eval_sequences=4,
        cache_dir=str(tmp_path / "cache"),
    )
    return DataConfig(**(base | kw))


def test_synthetic_is_deterministic_and_varied():
    a, b = synthetic.stories(7, 50), synthetic.stories(7, 50)
    assert a == b
    assert len(set(a)) == 50
    assert synthetic.stories(8, 5) != a[:5]


def test_local_reader_reads_the_endoftext_layout(tmp_path):
    docs = data_lib.read_local_documents(TRAIN_SAMPLE, DataConfig(cache_dir=str(tmp_path)))
    # The shared sample holds the first 5,511 stories of the train split, one per <|endoftext|> block.
    assert len(docs) == 5511
    assert all(data_lib.EOT not in d for d in docs[:100])
    assert docs[0].startswith(docs[0].strip()) and len(docs[0]) > 50


def test_local_reader_reads_blank_line_paragraphs(tmp_path):
    docs = data_lib.read_local_documents(VALID_SAMPLE, DataConfig(cache_dir=str(tmp_path)))
    text = VALID_SAMPLE.read_text()
    assert len(docs) > 500
    assert all("\n\n" not in d for d in docs[:200])
    assert docs[0] in text


def test_local_reader_reads_jsonl_and_parquet(tmp_path):
    rows = [{"text": f"story number {i}. the cat sat."} for i in range(5)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    cfg = DataConfig(cache_dir=str(tmp_path / "c"))
    assert data_lib.read_local_documents(tmp_path / "d.jsonl", cfg) == [r["text"] for r in rows]
    assert data_lib.read_local_documents(tmp_path / "d.parquet", cfg) == [r["text"] for r in rows]


def test_tokenizer_round_trip_and_cache(tmp_path):
    cfg = _local_cfg(tmp_path, TRAIN_SAMPLE, VALID_SAMPLE, max_train_docs=300, max_valid_docs=50)
    data = data_lib.load(cfg)
    tok = data.tokenizer()
    text = "once upon a time, a little girl named lily found a shiny stone."
    assert tok.decode(tok.encode(text).ids) == text
    assert data.vocab_size <= 300
    assert data.train_BxT1.shape[1] == 17 and data.eval_BxT1.shape == (4, 17)
    again = data_lib.load(cfg)
    assert again.cache_key == data.cache_key
    np.testing.assert_array_equal(again.train_BxT1, data.train_BxT1)
    other = data_lib.load(
        _local_cfg(tmp_path, TRAIN_SAMPLE, VALID_SAMPLE, max_train_docs=300, max_valid_docs=50, vocab_size=280)
    )
    assert other.cache_key != data.cache_key


def test_same_seed_and_step_give_the_same_batch(tmp_path):
    cfg = DataConfig(
        vocab_size=256, context=16, synthetic_train_docs=200, synthetic_valid_docs=20, cache_dir=str(tmp_path)
    )
    data = data_lib.load(cfg)
    a = data_lib.batch_at(data, seed=3, step=17, batch_size=8)
    b = data_lib.batch_at(data, seed=3, step=17, batch_size=8)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8, 17) and a.dtype == np.int32
    assert not np.array_equal(a, data_lib.batch_at(data, seed=3, step=18, batch_size=8))
    assert not np.array_equal(a, data_lib.batch_at(data, seed=4, step=17, batch_size=8))
    # One epoch visits every sequence exactly once.
    n = len(data.train_BxT1)
    seen = np.concatenate([data_lib.batch_indices(0, t, 5, n) for t in range(n // 5)])
    assert len(np.unique(seen)) == len(seen) == (n // 5) * 5


def test_missing_file_is_a_clear_error(tmp_path):
    cfg = _local_cfg(tmp_path, tmp_path / "nope.txt", VALID_SAMPLE)
    with pytest.raises(data_lib.DataError, match="data file not found: .*nope.txt"):
        data_lib.load(cfg)


def test_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    with pytest.raises(data_lib.DataError, match="empty corpus: .*empty.txt"):
        data_lib.load(_local_cfg(tmp_path, tmp_path / "empty.txt", VALID_SAMPLE))


def test_unknown_format_is_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(data_lib.DataError, match="unknown data format '.csv'"):
        data_lib.load(_local_cfg(tmp_path, tmp_path / "x.csv", VALID_SAMPLE))


def test_corpus_smaller_than_one_batch_is_a_clear_error(tmp_path):
    (tmp_path / "small.txt").write_text("the cat sat on the mat. " * 20)
    data = data_lib.load(_local_cfg(tmp_path, tmp_path / "small.txt", VALID_SAMPLE, max_valid_docs=50))
    with pytest.raises(data_lib.DataError, match="fewer than one batch of 64"):
        data_lib.check_batch_size(data, 64)


def test_hub_without_network_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = DataConfig(source="tinystories", cache_dir=str(tmp_path))
    with pytest.raises(data_lib.DataError, match="data=local.*data=synthetic"):
        data_lib.load(cfg)
