import dataclasses
import json
import lzma
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from growth.config import DataConfig
from growth.data import pipeline as data_lib
from growth.data import synthetic
from tests.conftest import REPO, TRAIN_SAMPLE, VALID_SAMPLE


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
    # The in-tree sample holds the first 5,511 stories of the train split, one per <|endoftext|> block.
    assert len(docs) == 5511
    assert all(data_lib.EOT not in d for d in docs[:100])
    assert docs[0].startswith(docs[0].strip()) and len(docs[0]) > 50


def test_local_reader_reads_blank_line_paragraphs(tmp_path):
    docs = data_lib.read_local_documents(VALID_SAMPLE, DataConfig(cache_dir=str(tmp_path)))
    with lzma.open(VALID_SAMPLE, "rt", encoding="utf-8") as f:
        text = f.read()
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


def test_in_tree_sample_resolves_from_any_directory_and_compressed_or_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = "data/tinystories/TinyStories-valid-sample.txt.xz"
    assert data_lib.resolve_path(rel) == VALID_SAMPLE  # relative to the repository, not the cwd
    assert data_lib.resolve_path("data/tinystories/TinyStories-valid-sample.txt") == VALID_SAMPLE
    plain = tmp_path / "v.txt"
    plain.write_text("one story.\n\nanother story.\n")
    assert data_lib.resolve_path(tmp_path / "v.txt.xz") == plain  # a compressed name finds the plain file
    with lzma.open(tmp_path / "w.jsonl.xz", "wt") as f:
        f.write(json.dumps({"text": "a compressed story."}) + "\n")
    cfg = DataConfig(cache_dir=str(tmp_path / "c"))
    assert data_lib.read_local_documents(tmp_path / "w.jsonl.xz", cfg) == ["a compressed story."]


def test_data_presets_read_the_in_tree_sample():
    from hydra import compose, initialize_config_dir

    from growth.config import register_configs
    from growth.validate import to_config

    register_configs()
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        for overrides in ([], ["experiment=smoke"], ["experiment=paper_cpu"]):
            cfg = to_config(compose("config", overrides=overrides)).data
            assert cfg.source == "local" and "../shared" not in cfg.train_path + cfg.valid_path, overrides
            assert data_lib.resolve_path(cfg.train_path).resolve() == TRAIN_SAMPLE
            assert data_lib.resolve_path(cfg.valid_path, "valid").resolve() == VALID_SAMPLE
        assert to_config(compose("config", overrides=["experiment=smoke", "data=synthetic"])).data.source == "synthetic"


def test_missing_file_is_a_clear_error(tmp_path):
    cfg = _local_cfg(tmp_path, tmp_path / "nope.txt", VALID_SAMPLE)
    with pytest.raises(data_lib.DataError, match="training file not found: .*nope.txt.*data.train_path="):
        data_lib.load(cfg)


def test_missing_validation_file_is_a_clear_error(tmp_path):
    cfg = _local_cfg(tmp_path, TRAIN_SAMPLE, tmp_path / "valid.txt", max_train_docs=50)
    with pytest.raises(data_lib.DataError, match="validation file not found: .*valid.txt.*data.valid_path="):
        data_lib.load(cfg)
    with pytest.raises(data_lib.DataError, match="needs both data.train_path=... and data.valid_path="):
        data_lib.load(dataclasses.replace(cfg, valid_path=None))


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.txt", b"", "training file .*empty.txt' is empty \\(0 bytes\\)"),
        ("blank.txt", b"\n \n\t\n\n", "training file .*blank.txt' holds only whitespace"),
        ("image.txt", bytes(range(256)) * 4, "training file .*image.txt' is binary .*NUL bytes"),
        ("latin1.txt", "the caf\u00e9 was warm.".encode("latin-1"), "latin1.txt' is not UTF-8 text .*iconv"),
        ("rows.jsonl", b'{"story": "a cat."}\n', "rows.jsonl' has no 'text' field \\(columns: \\['story'\\]\\)"),
        ("broken.jsonl", b"not json at all\n", "cannot read training file .*broken.jsonl' as json"),
        ("empty.jsonl", b"", "empty.jsonl' is empty"),
        ("broken.txt.xz", b"not xz data", "cannot decompress .*broken.txt.xz"),
    ],
)
def test_bad_training_files_are_clear_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(data_lib.DataError, match=message):
        data_lib.load(_local_cfg(tmp_path, tmp_path / name, VALID_SAMPLE, max_valid_docs=50))


def test_bad_corpus_exits_with_one_line_naming_the_file(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    cmd = [sys.executable, "-m", "experiments.pretrain", "data=local", f"data.train_path={tmp_path / 'empty.txt'}"]
    cmd += [f"data.valid_path={tmp_path / 'empty.txt'}", f"data.cache_dir={tmp_path / 'c'}", f"out_dir={tmp_path}"]
    cmd += ["logger.wandb.mode=disabled"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: training file") and "empty.txt' is empty" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text(f"{data_lib.EOT}\n  \n{data_lib.EOT}\n")  # separators, no story
    with pytest.raises(data_lib.DataError, match="empty corpus: .*empty.txt"):
        data_lib.load(_local_cfg(tmp_path, tmp_path / "empty.txt", VALID_SAMPLE))


def test_unknown_format_is_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(data_lib.DataError, match="unknown data format '.csv'"):
        data_lib.load(_local_cfg(tmp_path, tmp_path / "x.csv", VALID_SAMPLE))


def test_corpus_smaller_than_one_batch_is_a_clear_error(tmp_path):
    (tmp_path / "small.txt").write_text("the cat sat on the mat. " * 20)
    data = data_lib.load(_local_cfg(tmp_path, tmp_path / "small.txt", VALID_SAMPLE, max_valid_docs=50))
    with pytest.raises(data_lib.DataError, match="corpus from .*small.txt.* fewer than one batch of 64"):
        data_lib.check_batch_size(data, 64)
    (tmp_path / "tiny.txt").write_text("the cat.")
    with pytest.raises(data_lib.DataError, match="training corpus from .*tiny.txt.* fewer than data.context"):
        data_lib.load(_local_cfg(tmp_path, tmp_path / "tiny.txt", VALID_SAMPLE, max_valid_docs=50))


def test_hub_without_network_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = DataConfig(source="tinystories", cache_dir=str(tmp_path))
    with pytest.raises(data_lib.DataError, match="data=local.*data=synthetic"):
        data_lib.load(cfg)
