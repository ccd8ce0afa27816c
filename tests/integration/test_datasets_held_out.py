"""A Hugging Face `datasets` folder as --data, searched under the group-held-out protocol: the CLI
in a process, a real local Ray instance, a tiny model."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from core.record import find_records, read_record
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

HELD_OUT = "Books_5"


@pytest.fixture(scope="module")
def saved_dataset(reviews_path, tmp_path_factory):
    """60 reviews of each category of the shared file, saved with save_to_disk; the label is a
    ClassLabel whose names are the file's CG/OR."""
    import datasets

    frame = pd.read_csv(reviews_path)
    frame = frame.groupby("category").sample(60, random_state=0)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["OR", "CG"]),
                                  "category": datasets.Value("string")})
    rows = {"text": frame["text_"].tolist(), "label": [1 if v == "CG" else 0 for v in frame["label"]],
            "category": frame["category"].tolist()}
    folder = tmp_path_factory.mktemp("dataset") / "reviews"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(folder))
    return folder, dict(zip(frame["text_"], frame["label"]))


def test_a_saved_dataset_runs_a_search_with_a_held_out_category(saved_dataset, tiny_bert, tmp_path):
    folder, labels = saved_dataset
    result = subprocess.run(
        [sys.executable, "-m", "tune.search", "minilm", "--data", str(folder), "--profile", "smoke",
         "--model", tiny_bert, "--storage", str(tmp_path), "--name", "held", "--num-samples", "1",
         "--baselines", "fast", "--test-groups", HELD_OUT],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "held"
    state = json.loads((run_dir / "run.json").read_text())
    assert state["protocol"] == f"held-out groups: {HELD_OUT}" and state["labels"] == "cg = fake, or = real"
    split = pd.read_parquet(run_dir / "data" / "split.parquet")
    assert set(split.loc[split["split"] == "test", "group"]) == {HELD_OUT}
    assert HELD_OUT not in set(split.loc[split["split"] != "test", "group"])
    # The ClassLabel's names, not its integers, decided fake and real.
    assert all(label == (0 if labels[text] == "CG" else 1) for text, label in zip(split["text"], split["label"]))
    records = list(map(read_record, find_records(run_dir)))
    assert {r["method"] for r in records} >= {"tfidf-logreg", "embed-logreg"}
    assert sum(r["method"] in ("qlora", "lora", "full") for r in records) == 1
    for record in records:
        assert record["protocol"] == state["protocol"]
        assert set(record["test_group"]) == {HELD_OUT} == set(record["test_by_group"])
    assert f"Test protocol: held-out groups: {HELD_OUT}" in (run_dir / "leaderboard" / "leaderboard.md").read_text()
