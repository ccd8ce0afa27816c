"""Today's fakes: a search over two sources that holds the generator's source out, an operating
point chosen on validation, and the bundle evaluated on fakes of a generator no file here holds.
The CLIs as a user runs them, a real local Ray instance, a tiny model."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from results.evaluate import main as evaluate_main
from results.export import main as export_main
from results.predict import main as predict_main
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

GENERATOR = "lfm2.5-350m"


@pytest.fixture(scope="module")
def held_out_run(reviews_path, tiny_bert, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    fakes = reviews_path.parents[1] / "modern_fakes" / f"{GENERATOR}.csv.gz"
    result = subprocess.run(
        [sys.executable, "-m", "tune.search", "minilm", "--data", str(reviews_path), "--data", str(fakes),
         "--group-col", "source", "--test-groups", GENERATOR, "--profile", "smoke", "--model", tiny_bert,
         "--storage", str(storage), "--name", "held", "--num-samples", "1", "--baselines", "tfidf"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return storage / "held"


@pytest.fixture(scope="module")
def new_generator(reviews_path, tmp_path_factory):
    """Fakes from a 'generator' no file here holds (real reviews with their words shuffled), alone and
    mixed with real reviews, with the generator's name in a column."""
    folder = tmp_path_factory.mktemp("new")
    real = pd.read_csv(reviews_path).query("label == 'OR'").sample(80, random_state=5)
    rng = np.random.default_rng(0)
    fakes = real.assign(text_=[" ".join(rng.permutation(t.split())) for t in real["text_"]], label="CG",
                        generator="shuffler")
    fakes.to_csv(folder / "fakes.csv", index=False)
    pd.concat([fakes, real.assign(generator="people")]).to_json(folder / "mixed.jsonl", orient="records", lines=True)
    return folder


def test_the_held_out_generator_is_test_paired_with_real_reviews_and_never_trained_on(held_out_run):
    state = json.loads((held_out_run / "run.json").read_text())
    assert state["protocol"].startswith(f"held-out groups: {GENERATOR}; test paired with as many real reviews")
    assert isinstance(state["data"], list) and len(state["data"]) == 2
    split = pd.read_parquet(held_out_run / "data" / "split.parquet")
    test, trained = split[split["split"] == "test"], split[split["split"] != "test"]
    assert set(test["label"]) == {0, 1} and (test["label"] == 0).sum() == (test["label"] == 1).sum()
    assert set(test.loc[test["label"] == 0, "group"]) == {GENERATOR}
    assert GENERATOR not in set(trained["group"])
    record = json.loads(next((held_out_run / "trials").glob("*/record.json")).read_text())
    assert record["protocol"] == state["protocol"] and 0 <= record["test"]["f1"] <= 1


def test_max_fpr_sets_the_threshold_that_predict_and_evaluate_use(held_out_run, new_generator, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert export_main([str(held_out_run), "--out", str(bundle), "--max-fpr", "0.02"]) == 0
    written = json.loads((bundle / "bundle.json").read_text())
    point = written["operating_point"]
    assert 0 < written["threshold"] <= 1 and point["max_fpr"] == 0.02 and point["real_flagged"] <= 0.02
    assert "chosen on validation for at most 2 % of real reviews flagged" in capsys.readouterr().out

    assert predict_main([str(bundle), str(new_generator / "fakes.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert (predicted["label"] == np.where(predicted["prob_real"] >= written["threshold"], "real", "fake")).all()

    # one class: the share of fakes caught with its interval; the rest said to be undefined
    assert evaluate_main([str(bundle), str(new_generator / "fakes.csv"), "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "evaluation.json").read_text())["overall"]
    caught = (predicted["prob_real"] < written["threshold"]).mean()
    assert one["metrics"]["fake_recall"]["value"] == pytest.approx(caught)
    assert one["metrics"]["fake_recall"]["low"] <= caught <= one["metrics"]["fake_recall"]["high"]
    assert one["threshold"] == written["threshold"] and "real_flagged" in one["undefined"]
    assert "n/a: no real reviews here" in capsys.readouterr().out

    # mixed with real reviews, per generator: both rates, each group's own defined one
    assert evaluate_main([str(bundle), str(new_generator / "mixed.jsonl"), "--group-col", "generator",
                          "--out", str(tmp_path / "mixed")]) == 0
    mixed = json.loads((tmp_path / "mixed" / "evaluation.json").read_text())
    assert {"fake_recall", "real_flagged", "macro_f1"} <= set(mixed["overall"]["metrics"])
    assert mixed["overall"]["n_fake"] == mixed["overall"]["n_real"] == 80
    assert set(mixed["by_group"]["shuffler"]["metrics"]) == {"fake_recall"}
    assert set(mixed["by_group"]["people"]["metrics"]) == {"real_flagged"}
    assert mixed["by_group"]["shuffler"]["metrics"]["fake_recall"]["value"] == pytest.approx(caught)


def test_evaluate_refuses_unlabelled_input_in_one_line(held_out_run, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert export_main([str(held_out_run), "--out", str(bundle)]) == 0
    assert "threshold" not in json.loads((bundle / "bundle.json").read_text())
    (tmp_path / "reviews.txt").write_text("one review\nanother\n")
    capsys.readouterr()
    assert evaluate_main([str(bundle), str(tmp_path / "reviews.txt")]) == 2
    err = capsys.readouterr().err
    assert "has no labels" in err and len(err.strip().splitlines()) == 1
    assert export_main([str(held_out_run), "--out", str(tmp_path / "b2"), "--max-fpr", "2"]) == 2
    assert "--max-fpr 2.0: give the share of real reviews" in capsys.readouterr().err
