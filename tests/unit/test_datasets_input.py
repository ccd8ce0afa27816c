"""--data as Hugging Face `datasets` holds reviews: a save_to_disk folder (Dataset or DatasetDict,
ClassLabel labels read by their names) and a hub id that cannot be reached. Real `datasets`
objects written to disk; the search's own entry point for the refusals."""

import datasets
import pytest

from core.data import load_reviews, read_table
from tune.search import main


def reviews_dataset(names=("real", "fake"), n=40):
    """Half fake; ClassLabel index 0 is `real` here, so only the names can map it right."""
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names)),
                                  "category": datasets.ClassLabel(names=["Books", "Toys"])})
    rows = {"text": [f"review {i} of product {i * 3}" for i in range(n)],
            "label": [i % 2 for i in range(n)], "category": [i // (n // 2) for i in range(n)]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_a_saved_dataset_is_read_with_its_class_label_names(tmp_path):
    ds = reviews_dataset()
    ds.save_to_disk(str(tmp_path / "ds"))
    frame, report = load_reviews(tmp_path / "ds")
    # index 1 is `fake` in this ClassLabel: those rows must be fake (0), whatever the integer
    expected = {f"review {i} of product {i * 3}": 0 if i % 2 else 1 for i in range(40)}
    assert dict(zip(frame["text"], frame["label"])) == expected
    assert report.label_mapping == "fake = fake, real = real"
    assert set(frame["group"]) == {"Books", "Toys"}  # a ClassLabel group column, by its names too


def test_a_dataset_dict_reads_one_split_or_every_split(tmp_path):
    ds = reviews_dataset().train_test_split(test_size=0.25, seed=0)
    ds.save_to_disk(str(tmp_path / "dd"))
    assert len(read_table(tmp_path / "dd", "test")) == 10
    assert sorted(read_table(tmp_path / "dd")["text"]) == sorted(reviews_dataset()["text"])


def search(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unknown_class_label_names_are_refused(capsys, tmp_path):
    reviews_dataset(names=("neg", "pos")).save_to_disk(str(tmp_path / "ds"))
    code, out, err = search(capsys, "minilm", "--data", str(tmp_path / "ds"), "--storage", str(tmp_path))
    assert code == 2
    assert "Unknown label values 'neg', 'pos'" in err and "--fake-label" in err
    assert "Traceback" not in out + err


def test_a_missing_split_is_named(capsys, tmp_path):
    reviews_dataset().train_test_split(test_size=0.25, seed=0).save_to_disk(str(tmp_path / "dd"))
    code, _, err = search(capsys, "minilm", "--data", str(tmp_path / "dd"), "--data-split", "validation",
                          "--storage", str(tmp_path))
    assert code == 2 and "has no split 'validation'; its splits: train, test." in err


def test_an_unreachable_hub_dataset_exits_2_in_one_line(capsys, monkeypatch, tmp_path):
    import datasets
    import huggingface_hub

    # As on a machine without a network, told so (HF_HUB_OFFLINE=1); the libraries read that
    # variable once, at import, so this process sets their flags too. Without the flag the same
    # error comes after the hub client's connection retries (about 20 s here).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # an empty cache
    code, out, err = search(capsys, "minilm", "--data", "hf:nobody/no-such-reviews", "--storage", str(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "Could not load hf:nobody/no-such-reviews: it is not in the local datasets cache" in err
    assert "save_to_disk" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, message", [
    (["--data-split", "train"], "--data-split applies to a `datasets` folder or hub dataset"),
])
def test_data_split_on_a_file_is_refused(capsys, tmp_path, extra, message):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"r{i},{'CG' if i % 2 else 'OR'}\n" for i in range(40)))
    code, _, err = search(capsys, "minilm", "--data", str(path), "--storage", str(tmp_path), *extra)
    assert code == 2 and message in err


def test_an_unlabelled_split_is_not_mixed_in(capsys, tmp_path):
    labelled = reviews_dataset()
    unlabelled = datasets.Dataset.from_dict(
        {"text": [f"unlabelled {i}" for i in range(10)], "label": [-1] * 10, "category": [0] * 10},
        features=labelled.features)
    datasets.DatasetDict({"train": labelled, "test": unlabelled}).save_to_disk(str(tmp_path / "dd"))
    capsys.readouterr()  # save_to_disk's progress bars
    code, out, err = search(capsys, "minilm", "--data", str(tmp_path / "dd"), "--profile", "smoke",
                            "--storage", str(tmp_path / "runs"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Split 'test'" in err and "--data-split" in err and "(train)" in err
    assert len(read_table(tmp_path / "dd", "train")) == 40  # the labelled split alone reads
