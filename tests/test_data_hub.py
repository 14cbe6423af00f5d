"""data=hub (growth/data/corpus.py): any `datasets` dataset, offline from a directory saved in the test."""

import dataclasses

import numpy as np
import pytest

from growth import presets
from growth.config import DataConfig
from growth.data import corpus
from growth.data import pipeline as data_lib
from growth.experiment import pretrain
from growth.store.files import read_jsonl
from tests.conftest import PRETRAIN_LONGER, VALID_SAMPLE

datasets = pytest.importorskip("datasets")


def _stories(n: int) -> list[str]:
    return data_lib.read_local_documents(VALID_SAMPLE, DataConfig(), n, "valid")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple:
    """A DatasetDict (train / validation) with the text in a column named 'story', saved to disk."""
    docs = _stories(300)
    root = tmp_path_factory.mktemp("hub") / "stories"
    split = {"train": docs[:240], "validation": docs[240:]}
    data = datasets.DatasetDict(
        {k: datasets.Dataset.from_dict({"story": v, "id": list(range(len(v)))}) for k, v in split.items()}
    )
    data.save_to_disk(str(root))
    return root, split


def _hub(root, **kw) -> DataConfig:
    fields = dict(source="hub", hub_name=str(root), hub_config=None, hub_text_field="story") | kw
    return DataConfig(**fields)  # type: ignore[arg-type]


def test_a_saved_dataset_streams_through_data_hub_and_trains(tmp_path, saved):
    root, split = saved
    cfg = presets.tiny(
        tmp_path,
        [*PRETRAIN_LONGER, "data=hub", f"data.hub_name={root}", "data.hub_config=null", "data.hub_text_field=story",
         "data.hub_valid_split=validation", "data.vocab_size=320", "data.max_valid_docs=60", "pretrain.steps=4",
         "pretrain.checkpoint_steps=[4]", "pretrain.log_every=2", "pretrain.eval_every=2"],
    )  # fmt: skip
    assert cfg.data.source == "hub" and cfg.data.hub_split == "train"
    assert list(corpus.documents(cfg.data, "train")) == split["train"]
    assert list(corpus.documents(cfg.data, "valid")) == split["validation"]
    run = pretrain.run(cfg)
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4] and all(np.isfinite(r["eval_loss"]) for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"] + 1.0 and rows[-1]["tokens_per_s"] > 0
    # the token cache holds exactly the saved dataset's text, tokenized
    data = data_lib.load(cfg.data)
    tok = data.tokenizer()
    eot = tok.token_to_id(data_lib.EOT)
    want = [i for d in split["validation"] for i in [*tok.encode(d).ids, eot]]
    np.testing.assert_array_equal(data.eval_BxT1.reshape(-1), want[: data.eval_BxT1.size])


def test_another_dataset_is_another_cache_entry(saved, tmp_path):
    root, _ = saved
    a = data_lib.load(_hub(root, cache_dir=str(tmp_path), vocab_size=320))
    b = data_lib.load(_hub(root, cache_dir=str(tmp_path), vocab_size=320, hub_valid_split=None, max_valid_docs=50))
    assert a.cache_key != b.cache_key


def test_without_a_held_out_split_the_first_documents_are_held_out(tmp_path):
    docs = _stories(120)
    folder = tmp_path / "parquet"
    folder.mkdir()
    datasets.Dataset.from_dict({"text": docs}).to_parquet(str(folder / "train.parquet"))
    cfg = DataConfig(source="hub", hub_name=str(folder), hub_config=None, hub_valid_split=None, max_valid_docs=20,
                     max_train_docs=50, cache_dir=str(tmp_path / "c"))  # type: ignore[arg-type]  # fmt: skip
    assert list(corpus.documents(cfg, "valid")) == docs[:20]
    assert list(corpus.documents(cfg, "train")) == docs[20:70]


def test_bad_settings_are_one_line(saved, monkeypatch):
    root, _ = saved
    with pytest.raises(data_lib.DataError, match=r"has no column 'text' \(columns: \['story', 'id'\]\)"):
        list(corpus.documents(_hub(root, hub_text_field="text"), "train"))
    with pytest.raises(data_lib.DataError, match=r"has no split 'test' \(splits: \['train', 'validation'\]\)"):
        list(corpus.documents(_hub(root, hub_valid_split="test"), "valid"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(data_lib.DataError) as e:
        list(corpus.documents(dataclasses.replace(_hub(root), hub_name="someone/corpus"), "train"))
    assert str(e.value).startswith("cannot reach the Hugging Face hub for 'someone/corpus' (no network?)")
    assert "\n" not in str(e.value)
