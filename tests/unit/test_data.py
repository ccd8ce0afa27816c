import gzip

import pandas as pd
import pytest

from core.data import (
    load_reviews,
    map_labels,
    split_hash,
    split_reviews,
    subsample,
)
from core.errors import DataError


def write_csv(path, rows, columns=("text_", "label")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def balanced(n=12, fake="CG", real="OR"):
    return [(f"fake review number {i}", fake) for i in range(n)] + [(f"real review number {i}", real) for i in range(n)]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """2,500 distinct reviews, 40 % fake: big enough for the split's proportions to show."""
    rows = [(f"review {i} about product {i % 37}", "CG" if i % 5 < 2 else "OR") for i in range(2500)]
    return write_csv(tmp_path_factory.mktemp("reviews") / "reviews.csv", rows)


@pytest.mark.parametrize("values, expected", [
    (["CG", "OR", "cg"], [0, 1, 0]),
    (["fake", "real", "Real"], [0, 1, 1]),
    (["0", "1", "1.0"], [0, 1, 1]),
    ([0, 1, 0], [0, 1, 0]),
])
def test_label_spellings_map_to_fake_0_real_1(values, expected):
    assert map_labels(pd.Series(values))[0].tolist() == expected


def test_fake_label_names_the_fake_value_and_the_mapping_is_reported(tmp_path):
    path = write_csv(tmp_path / "d.csv", balanced(fake="1", real="0"))
    frame, report = load_reviews(path, fake_label="1")
    assert set(frame.loc[frame["text"].str.startswith("fake"), "label"]) == {0}
    assert set(frame.loc[frame["text"].str.startswith("real"), "label"]) == {1}
    assert report.label_mapping == "1 = fake, 0 = real"
    assert load_reviews(path)[1].label_mapping == "0 = fake, 1 = real"  # the default, shown
    frame, _ = load_reviews(write_csv(tmp_path / "e.csv", balanced(fake="2", real="5")), fake_label="2")
    assert frame.groupby(frame["text"].str[:4])["label"].first().to_dict() == {"fake": 0, "real": 1}


def test_numeric_labels_other_than_0_1_need_fake_label(tmp_path):
    path = write_csv(tmp_path / "d.csv", balanced(fake="2", real="5"))
    with pytest.raises(DataError, match="name the value that means fake with --fake-label VALUE"):
        load_reviews(path)
    with pytest.raises(DataError, match="--fake-label '7' is not one of the label values"):
        load_reviews(path, fake_label="7")


def test_null_texts_are_dropped_as_empty(tmp_path):
    frame = pd.DataFrame(balanced() + [(None, "CG"), (None, "OR")], columns=["text", "label"])
    for suffix, write in ((".parquet", lambda p: frame.to_parquet(p)),
                          (".jsonl", lambda p: frame.to_json(p, orient="records", lines=True))):
        path = tmp_path / f"d{suffix}"
        write(path)
        loaded, report = load_reviews(path)
        assert report.empty_dropped == 2 and "None" not in set(loaded["text"])


def test_a_text_with_both_labels_is_dropped_everywhere_and_counted(tmp_path):
    rows = balanced() + [("fake review number 1", "OR"), ("real review number 2", "OR")]
    frame, report = load_reviews(write_csv(tmp_path / "d.csv", rows))
    assert report.conflicting_dropped == 2  # both rows of the text labelled both ways
    assert report.duplicates_dropped == 1  # the same-label repeat, kept once
    assert "fake review number 1" not in set(frame["text"]) and len(frame) == 23


@pytest.mark.parametrize("suffix, writer", [
    (".csv", lambda f, p: f.to_csv(p, index=False)),
    (".tsv", lambda f, p: f.to_csv(p, sep="\t", index=False)),
    (".parquet", lambda f, p: f.to_parquet(p)),
    (".jsonl", lambda f, p: f.to_json(p, orient="records", lines=True)),
])
def test_every_format_reads_the_same(tmp_path, suffix, writer):
    frame = pd.DataFrame(balanced(), columns=["review", "label"])
    path = tmp_path / f"data{suffix}"
    writer(frame, path)
    loaded, _ = load_reviews(path)
    assert sorted(loaded["text"]) == sorted(frame["review"])


def test_gzip_csv_reads(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as handle:
        pd.DataFrame(balanced(), columns=["text", "label"]).to_csv(handle, index=False)
    assert len(load_reviews(path)[0]) == 24


def test_empty_and_duplicate_texts_are_dropped_and_counted(tmp_path):
    rows = balanced() + [("   ", "CG"), ("", "OR"), ("fake review number 1", "CG")]
    frame, report = load_reviews(write_csv(tmp_path / "d.csv", rows))
    assert (report.empty_dropped, report.duplicates_dropped) == (2, 1)
    assert len(frame) == 24 and frame["text"].is_unique


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.csv", "Data file not found: {p}/missing.csv. Pass the dataset with --data PATH."),
    (lambda p: (p / "data.xlsx").write_text("x") and p / "data.xlsx",
     "Unknown data format: data.xlsx. Use .csv, .csv.gz, .tsv, .parquet or .jsonl. A folder written by "
     "datasets' save_to_disk, or hf:OWNER/NAME, work too."),
    (lambda p: write_csv(p / "d.csv", [("a", "CG")], columns=("body", "label")),
     "No text column found (looked for text_, text, review). Columns found: body, label. Name it with --text-col."),
    (lambda p: write_csv(p / "d.csv", [("a", "CG"), ("b", "OR"), ("c", "XX")]),
     "The label column must hold exactly two classes; found 3: 'cg', 'or', 'xx'."),
    (lambda p: write_csv(p / "d.csv", balanced(12)[:15]),
     "Class 'real' has 3 rows after cleaning; at least 10 are needed to split it."),
    (lambda p: write_csv(p / "d.csv", []), "{p}/d.csv has no rows."),
    (lambda p: write_csv(p / "d.csv", [("a", "yes"), ("b", "no")]),
     "Unknown label values 'no', 'yes'. Use CG/OR, fake/real or 0/1 (0 = fake), or name the value that "
     "means fake with --fake-label VALUE."),
])
def test_bad_input_messages(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError) as error:
        load_reviews(path)
    assert str(error.value) == message.format(p=tmp_path)


def test_split_is_deterministic_stratified_and_sized(reviews):
    frame, _ = load_reviews(reviews)
    first, second = split_reviews(frame), split_reviews(frame.sample(frac=1, random_state=3))
    assert split_hash(first) == split_hash(second)  # row order of the file does not matter
    sizes = first["split"].value_counts(normalize=True)
    assert sizes["test"] == pytest.approx(0.2, abs=0.001)
    assert sizes["val"] == pytest.approx(0.08, abs=0.001)
    overall = frame["label"].mean()
    for name, part in first.groupby("split"):
        assert part["label"].mean() == pytest.approx(overall, abs=0.002), name
    assert not set(first.loc[first.split == "test", "text"]) & set(first.loc[first.split != "test", "text"])


def test_split_hash_changes_when_a_row_moves(reviews):
    split = split_reviews(load_reviews(reviews)[0])
    moved = split.copy()
    moved.loc[moved.index[0], "split"] = "test"
    assert split_hash(moved) != split_hash(split)


def test_subsample_keeps_class_balance(reviews):
    split = split_reviews(load_reviews(reviews)[0])
    small = subsample(split, {"train": 200, "val": 50, "test": None})
    counts = small["split"].value_counts()
    assert counts["train"] == 200 and counts["val"] == 50 and counts["test"] == (split.split == "test").sum()
    assert small.loc[small.split == "train", "label"].mean() == pytest.approx(split["label"].mean(), abs=0.01)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_rows_without_a_label_are_dropped_and_counted(tmp_path, suffix):
    rows = pd.DataFrame({"text": [f"review number {i}" for i in range(48)],
                         "label": [None, "CG", "OR", ""] * 12})
    path = tmp_path / f"reviews{suffix}"
    {".jsonl": lambda: rows.to_json(path, orient="records", lines=True),
     ".parquet": lambda: rows.to_parquet(path), ".csv": lambda: rows.to_csv(path, index=False)}[suffix]()
    frame, report = load_reviews(path)
    assert report.unlabelled_dropped == 24 and len(frame) == 24
    assert sorted(frame["label"].unique()) == [0, 1]
    assert "24 rows without a label" in report.summary()
