"""Groups (product categories) through the split, per-group metrics, the group-held-out protocol,
and its refusals: hand-built data, real files, the search's own entry point."""

import json

import numpy as np
import pandas as pd
import pytest

from core.data import RANDOM_PROTOCOL, load_reviews, protocol_name, split_hash, split_reviews
from core.errors import DataError, UserError
from core.groups import SplitGroups, metrics_by_group
from core.metrics import classification_metrics
from core.record import load_records
from results.leaderboard import group_rows, leaderboard_rows, write_leaderboard
from tune.prepare import prepare_data
from tune.profiles import RunProfile
from tune.search import main

GROUPS = ("Books", "Pets", "Toys", "Tools")


def grouped_reviews(path, per_group=60, group_col="category"):
    """Distinct reviews in four groups, half fake in each."""
    rows = [(f"{group} review {i} number {i * 7}", "CG" if i % 2 else "OR", group)
            for group in GROUPS for i in range(per_group)]
    pd.DataFrame(rows, columns=["text_", "label", group_col]).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def data(tmp_path):
    return grouped_reviews(tmp_path / "reviews.csv")


def test_the_category_column_is_kept_as_the_group_through_the_split(data):
    frame, report = load_reviews(data)
    assert report.group_col == "category"
    split = split_reviews(frame)
    assert set(split["group"]) == set(GROUPS)
    for group in GROUPS:  # every review keeps its own group
        assert split.loc[split["group"] == group, "text"].str.startswith(group).all()
    assert "group" not in load_reviews(data, group_col="none")[0].columns


def test_prepared_groups_line_up_with_the_test_predictions(data, tmp_path, minilm_tokenizer):
    prepared = prepare_data(data, RunProfile("t", 1, {"train": None, "val": None, "test": None}, 32, 1),
                            minilm_tokenizer, "minilm", str(tmp_path / "run"))
    groups = SplitGroups.of_run(prepared.data_dir)
    split = pd.read_parquet(tmp_path / "run" / "data" / "split.parquet")
    test = split[split["split"] == "test"]
    # In prediction order: each test review's own group, as read from its text.
    assert groups.groups == [text.split()[0] for text in test["text"]]
    assert groups.protocol == prepared.protocol == RANDOM_PROTOCOL
    assert prepared.groups == test["group"].value_counts().sort_index().to_dict()


def test_a_held_out_run_folder_says_its_protocol_and_hashes_apart(data, tmp_path, minilm_tokenizer):
    profile = RunProfile("t", 1, {"train": None, "val": None, "test": None}, 32, 1)
    random = prepare_data(data, profile, minilm_tokenizer, "minilm", str(tmp_path / "random"))
    held = prepare_data(data, profile, minilm_tokenizer, "minilm", str(tmp_path / "held"), test_groups=["Toys"])
    assert held.protocol == "held-out groups: Toys" and held.groups == {"Toys": 60}
    assert held.split_hash != random.split_hash
    groups = SplitGroups.of_run(held.data_dir)
    assert groups.protocol == held.protocol and set(groups.groups) == {"Toys"}
    split = pd.read_parquet(tmp_path / "held" / "data" / "split.parquet")
    assert "Toys" not in set(split.loc[split["split"] != "test", "group"])


def test_per_group_metrics_are_each_groups_own():
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    prob = np.array([0.9, 0.2, 0.4, 0.8, 0.7, 0.1, 0.6, 0.3])
    groups = ["a", "a", "a", "b", "b", "b", "b", "a"]
    by_group = metrics_by_group(labels, prob, groups)
    assert list(by_group) == ["a", "b"]
    # a: true 1,0,1,0 predicted 1,0,0,0 -> tp 1, fp 0, fn 1: F1 2/3, accuracy 3/4
    assert by_group["a"]["f1"] == pytest.approx(2 / 3)
    assert by_group["a"]["accuracy"] == pytest.approx(0.75)
    assert by_group["a"]["n"] == 4
    # b: true 1,0,0,1 predicted 1,1,0,1 -> tp 2, fp 1, fn 0: F1 4/5
    assert by_group["b"]["f1"] == pytest.approx(0.8)
    assert by_group["b"]["confusion_matrix"] == [[1, 1], [0, 2]]


def test_held_out_groups_are_exactly_the_test_split(data):
    frame, _ = load_reviews(data)
    split = split_reviews(frame, test_groups=["Pets", "Tools"])
    assert set(split.loc[split["split"] == "test", "group"]) == {"Pets", "Tools"}
    assert (split.loc[split["split"] == "test"].shape[0] == (frame["group"].isin(["Pets", "Tools"])).sum())
    assert set(split.loc[split["split"] != "test", "group"]) == {"Books", "Toys"}
    train_val = split[split["split"] != "test"]
    assert 0.05 < (train_val["split"] == "val").mean() < 0.15  # validation 10 % of the rest
    assert protocol_name(["Tools", "Pets"]) == "held-out groups: Pets, Tools"


def test_the_split_hash_tells_protocols_apart(data):
    frame, _ = load_reviews(data)
    random = split_reviews(frame)
    held = split_reviews(frame, test_groups=["Pets"])
    assert split_hash(random) != split_hash(held, protocol_name(["Pets"]))
    # Even the same rows under another protocol's name hash differently.
    assert split_hash(random) != split_hash(random, protocol_name(["Pets"]))


def write_record(folder, trial, protocol, split_hash_value, labels, prob, groups=None):
    record = {"trial_id": trial, "method": "tfidf-logreg", "params": {"C": 1.0}, "epochs_run": None,
              "val": classification_metrics(labels, prob), "test": classification_metrics(labels, prob),
              "test_labels": labels, "test_prob_real": prob, "history": [], "split_hash": split_hash_value,
              "protocol": protocol}
    if groups:
        record.update(test_group=groups, test_by_group=metrics_by_group(labels, prob, groups))
    (folder / trial).mkdir(parents=True)
    (folder / trial / "record.json").write_text(json.dumps(record))


def test_the_leaderboard_refuses_to_mix_protocols(tmp_path):
    labels, prob = [0, 1, 0, 1], [0.2, 0.9, 0.6, 0.7]
    write_record(tmp_path, "a", RANDOM_PROTOCOL, "h1", labels, prob)
    write_record(tmp_path, "b", protocol_name(["Pets"]), "h2", labels, prob)
    with pytest.raises(UserError, match="different test protocols .*held-out groups: Pets; random split"):
        load_records(str(tmp_path))


def test_the_leaderboard_flags_a_group_below_the_overall_interval(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    groups = np.where(np.arange(400) < 100, "weak", "strong")
    right = np.where(groups == "weak", rng.random(400) < 0.6, rng.random(400) < 0.97)
    prob = np.where(right, labels, 1 - labels) * 0.8 + 0.1
    write_record(tmp_path, "t", RANDOM_PROTOCOL, "h", labels.tolist(), prob.tolist(), groups.tolist())
    records = load_records(str(tmp_path))
    rows = group_rows(records, leaderboard_rows(records))
    flagged = {r["group"]: r["below_overall"] for r in rows}
    assert flagged == {"strong": False, "weak": True}
    assert {r["group"]: r["n"] for r in rows} == {"strong": 300, "weak": 100}
    out = write_leaderboard(str(tmp_path), records)
    text = open(f"{out}/leaderboard.md").read()
    assert "## Per group" in text and "▼" in text
    assert json.loads(open(f"{out}/per_group.json").read()) == json.loads(json.dumps(rows))
    assert "f1_per_group.png" in open(f"{out}/index.html").read()


def test_a_group_of_one_class_shows_the_share_it_got_right_not_an_f1(tmp_path):
    # a held-out generator's fakes beside the real reviews paired with them: F1 of real is 0 in the
    # fakes' group whatever the model does, so the group shows the share of its fakes caught
    labels = [0] * 40 + [1] * 40
    prob = [0.2] * 30 + [0.8] * 10 + [0.9] * 36 + [0.1] * 4
    groups = ["new-generator"] * 40 + ["old-reviews"] * 40
    write_record(tmp_path, "t", protocol_name(["new-generator"], 1), "h", labels, prob, groups)
    records = load_records(str(tmp_path))
    rows = {r["group"]: r for r in group_rows(records, leaderboard_rows(records))}
    assert rows["new-generator"]["one_class"] == "fake" and rows["new-generator"]["rate"] == pytest.approx(0.75)
    assert rows["old-reviews"]["rate_name"] == "real_flagged" and rows["old-reviews"]["rate"] == pytest.approx(0.1)
    assert rows["new-generator"]["rate_low"] < 0.75 < rows["new-generator"]["rate_high"]
    text = open(f"{write_leaderboard(str(tmp_path), records)}/leaderboard.md").read()
    assert "| new-generator | 40 | fakes caught 75.0 % (" in text and "| old-reviews | 40 | real flagged 10.0 % (" in text


def search(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("extra, message", [
    (["--test-groups", "Garden"], "Unknown test group 'Garden'; the groups are: Books, Pets, Tools, Toys."),
    (["--group-col", "aisle"], "No group column 'aisle'. Columns found: text_, label, category, source."),
    (["--group-col", "none", "--test-groups", "Pets"], "--test-groups needs a group column"),
    (["--test-groups", "Books,Pets,Toys,Tools"], "the remaining (train and validation) reviews hold 0 of class"),
])
def test_bad_group_input_exits_2_with_one_line(capsys, data, tmp_path, extra, message):
    code, out, err = search(capsys, "minilm", "--data", data, "--profile", "smoke", "--storage", str(tmp_path),
                            "--name", "groups", *extra)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err
    assert not (tmp_path / "groups").exists()  # refused before anything was written


def test_a_held_out_group_with_too_few_of_a_class_is_refused(tmp_path):
    path = tmp_path / "skewed.csv"
    rows = [(f"review {i}", "CG" if i % 2 else "OR", "Books") for i in range(60)]
    rows += [(f"pet review {i}", "CG" if i < 3 else "OR", "Pets") for i in range(30)]
    pd.DataFrame(rows, columns=["text", "label", "category"]).to_csv(path, index=False)
    frame, _ = load_reviews(path)
    with pytest.raises(DataError, match=r"the held-out \(test\) reviews hold 3 of class 'fake'; at least 10"):
        split_reviews(frame, test_groups=["Pets"])
