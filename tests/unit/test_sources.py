"""Several --data sources combined under the data contract, and a held-out source of one class."""

import pandas as pd
import pytest

from core.data import (
    RANDOM_PROTOCOL,
    held_out_pairing,
    held_out_part,
    load_reviews,
    protocol_name,
    source_name,
    split_hash,
    split_reviews,
)
from core.errors import DataError

CATEGORIES = ("Books", "Pets", "Tools")


def write(path, rows, columns=("text_", "label", "category")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


@pytest.fixture
def sources(tmp_path):
    """A two-class file of old reviews and a one-class file of a generator's fakes (.csv.gz)."""
    old = write(tmp_path / "old_reviews.csv", [(f"old {c} review {i}", "CG" if i % 2 else "OR", c)
                                               for c in CATEGORIES for i in range(60)])
    new = write(tmp_path / "gen-2.5.csv.gz", [(f"new {c} fake {i}", "fake", c) for c in CATEGORIES for i in range(20)])
    return old, new


@pytest.mark.parametrize("path, name", [("a/lfm2.5-350m.csv.gz", "lfm2.5-350m"), ("x/reviews.parquet", "reviews"),
                                        ("b/fakes.jsonl", "fakes"), ("saved_folder", "saved_folder"),
                                        ("hf:owner/name", "name"), ("v1.2.tsv.xz", "v1.2")])
def test_a_source_is_named_by_its_file_without_extensions(path, name):
    assert source_name(path) == name


def test_files_are_combined_each_row_keeping_its_source(sources):
    old, new = sources
    frame, report = load_reviews([old, new], group_col="source")
    assert report.rows_read == 180 + 60 and report.group_col == "source"
    assert frame.groupby("group")["label"].agg(["size", "nunique"]).to_dict() == {
        "size": {"gen-2.5": 60, "old_reviews": 180}, "nunique": {"gen-2.5": 1, "old_reviews": 2}}
    assert frame.loc[frame["group"] == "gen-2.5", "text"].str.startswith("new").all()
    # CG/OR in one file and fake in the other: read by name, one mapping
    assert set(frame.loc[frame["group"] == "gen-2.5", "label"]) == {0}
    assert load_reviews([old, new])[1].group_col == "category"  # the default group column still wins


def test_duplicates_and_conflicts_are_settled_across_files(sources, tmp_path):
    old, new = sources
    again = write(tmp_path / "again.csv", [("old Books review 1", "CG", "Books"),  # a duplicate of old's fake
                                           ("old Books review 2", "CG", "Books")])  # old says real: conflict
    frame, report = load_reviews([old, new, again])
    assert report.duplicates_dropped == 1 and report.conflicting_dropped == 2
    assert "old Books review 2" not in set(frame["text"]) and (frame["text"] == "old Books review 1").sum() == 1


def test_a_file_of_one_class_alone_is_refused_and_an_own_source_column_among_several(sources, tmp_path):
    old, new = sources
    with pytest.raises(DataError, match="exactly two classes; found 1"):
        load_reviews(new)
    own = write(tmp_path / "own.csv", [("a text", "OR", "x")], ("text_", "label", "source"))
    with pytest.raises(DataError, match="has its own 'source' column"):
        load_reviews([old, own])
    assert set(load_reviews(write(tmp_path / "alone.csv", [(f"t{i}", i % 2, "s") for i in range(40)],
                                  ("text_", "label", "source")), group_col="source")[0]["group"]) == {"s"}


def test_a_held_out_source_of_one_class_is_paired_with_as_many_of_the_other(sources):
    old, new = sources
    frame, _ = load_reviews([old, new], group_col="source")
    assert held_out_pairing(frame, ["gen-2.5"]) == 1  # fakes held out: real reviews drawn to pair them
    split = split_reviews(frame, test_groups=["gen-2.5"])
    test = split[split["split"] == "test"]
    assert (test["label"] == 0).sum() == (test["label"] == 1).sum() == 60
    assert set(test.loc[test["label"] == 0, "group"]) == {"gen-2.5"}
    assert set(test.loc[test["label"] == 1, "group"]) == {"old_reviews"}
    trained = split[split["split"] != "test"]
    assert "gen-2.5" not in set(trained["group"]) and not set(trained["text"]) & set(test["text"])
    assert set(trained["label"]) == {0, 1}
    # the paired real reviews are drawn from every category of the rest, stratified by group
    drawn = test.loc[test["label"] == 1, "text"].str.split().str[1].value_counts()
    assert set(drawn.index) == set(CATEGORIES) and drawn.max() - drawn.min() <= 2


def test_the_pairing_is_in_the_protocol_and_the_hash(sources):
    old, new = sources
    frame, _ = load_reviews([old, new], group_col="source")
    protocol = protocol_name(["gen-2.5"], held_out_pairing(frame, ["gen-2.5"]))
    assert protocol == ("held-out groups: gen-2.5; test paired with as many real reviews drawn from the "
                        "other groups")
    assert held_out_part(protocol) == protocol_name(["gen-2.5"]) and held_out_part(RANDOM_PROTOCOL) == RANDOM_PROTOCOL
    split = split_reviews(frame, test_groups=["gen-2.5"])
    assert split_hash(split, protocol) != split_hash(split, protocol_name(["gen-2.5"]))
    assert split.equals(split_reviews(frame.sample(frac=1, random_state=3), test_groups=["gen-2.5"]))


def test_too_few_to_pair_with_is_refused_with_the_numbers(tmp_path, sources):
    old, _ = sources
    many = write(tmp_path / "many.csv", [(f"gen fake {i}", "CG", "Books") for i in range(85)])
    frame, _ = load_reviews([old, many], group_col="source")
    with pytest.raises(DataError, match=r"hold 90 of class 'real'; at least 95 are needed \(85 to pair"):
        split_reviews(frame, test_groups=["many"])
