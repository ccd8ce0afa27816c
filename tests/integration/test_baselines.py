"""Baselines on a small real sample of the shared data, with real embeddings from MiniLM."""

from pathlib import Path

import pytest

from search_spaces.baselines import GRIDS
from trainables.baselines import BaselineConfig, run_baseline
from trainables.embeddings import cached_embeddings, read_embeddings
from tune.prepare import prepare_data
from tune.profiles import RunProfile

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sample(tmp_path_factory, reviews_path, minilm_tokenizer):
    profile = RunProfile("sample", 1, {"train": 800, "val": 200, "test": 300}, 128, epochs=1)
    data = prepare_data(str(reviews_path), profile, minilm_tokenizer, "minilm", tmp_path_factory.mktemp("run"))
    args = (data.data_dir, data.tokens_file, "minilm", data.split_hash, data.max_length, "mean",
            minilm_tokenizer.pad_token_id)
    path, computed = cached_embeddings(*args)
    again, computed_again = cached_embeddings(*args)
    return data, path, (computed, computed_again, again)


def test_embeddings_are_computed_once_per_key(sample):
    data, path, (computed, computed_again, again) = sample
    assert computed and not computed_again and again == path
    arrays = read_embeddings(path)
    assert arrays["train"][0].shape == (800, 384) and arrays["test"][0].shape == (300, 384)
    assert len(arrays["val"][1]) == 200


@pytest.mark.parametrize("method", list(GRIDS))
def test_each_baseline_beats_chance_and_writes_the_standard_record(sample, method, tmp_path):
    data, path, _ = sample
    config = BaselineConfig(method=method, data_dir=data.data_dir, embeddings_file=Path(path).name,
                            split_hash=data.split_hash, **GRIDS[method][0])
    record = run_baseline(config, tmp_path / method / "record.json", tmp_path / method / "model.joblib")
    majority = max(sum(record["test_labels"]), len(record["test_labels"]) - sum(record["test_labels"]))
    assert record["test"]["accuracy"] > majority / len(record["test_labels"]) + 0.1, record["test"]
    assert record["test"]["roc_auc"] > 0.75
    assert record["method"] == method and record["split_hash"] == data.split_hash
    assert len(record["test_prob_real"]) == 300 and record["params"] == config.params
    assert (tmp_path / method / "record.json").exists()


def test_bad_baseline_settings_are_named():
    with pytest.raises(Exception) as error:
        BaselineConfig(method="embed-knn", C=0, dropout=1.5)
    assert str(error.value) == ("Invalid baseline configuration: method='embed-knn' (allowed: tfidf-logreg, "
                                "embed-logreg, embed-svm, embed-mlp); C=0 (allowed: above 0, at most 1e6); "
                                "dropout=1.5 (allowed: 0 to below 1).")


def test_the_embedding_cache_is_keyed_by_the_pinned_revision():
    from trainables.embeddings import embeddings_path

    local = embeddings_path("/run/data", "minilm", "abc", 128, "mean")
    assert local == embeddings_path("/run/data", "minilm", "abc", 128, "mean", None)  # a local model: as before
    assert embeddings_path("/run/data", "org/model", "abc", 128, "mean", "1111") != \
        embeddings_path("/run/data", "org/model", "abc", 128, "mean", "2222")
