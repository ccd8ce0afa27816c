"""results.predict against tampered bundles and odd input files: exit 2 and one line, nothing loaded
that the command line did not allow, and one output row per input row or line."""

import json
import pickle

import joblib
import pandas as pd
import pytest

from results.predict import main
from trainables.baselines import BaselineConfig, fit_tfidf_logreg


class Marker:
    """A pickle that creates a file when it is loaded: stands in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_bundle(folder, bundle, files=()):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bundle.json").write_text(json.dumps(bundle))
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    return folder


def predict(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def hostile(tmp_path):
    """A pickle that would create tmp_path/ran if anything loaded it."""
    marker = tmp_path / "ran"
    pickled = tmp_path / "payload.joblib"
    pickled.write_bytes(pickle.dumps(Marker(marker)))
    return pickled, marker


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("good product\n")
    return path


@pytest.mark.parametrize("bundle, trust", [
    # The loader used to follow the method while trust followed the kind.
    ({"kind": "adapter", "method": "tfidf-logreg", "model_file": "model.joblib"}, []),
    ({"kind": "full", "method": "tfidf-logreg", "model_file": "model.joblib"}, []),
    ({"kind": "baseline", "method": "tfidf-logreg", "model_file": "model.joblib"}, []),
    # A file name that leaves the bundle's folder, with the flag: still refused.
    ({"kind": "baseline", "method": "tfidf-logreg", "model_file": "../payload.joblib"}, ["--trust-pickle"]),
    ({"kind": "baseline", "method": "tfidf-logreg", "model_file": "/etc/passwd"}, ["--trust-pickle"]),
    ({"kind": "joblib", "method": "tfidf-logreg", "model_file": "model.joblib"}, ["--trust-pickle"]),
])
def test_a_tampered_bundle_loads_no_pickle(capsys, tmp_path, hostile, reviews, bundle, trust):
    pickled, marker = hostile
    folder = write_bundle(tmp_path / "bundle", bundle, ["adapter/adapter_config.json", "tokenizer/x", "model/x"])
    (folder / "model.joblib").write_bytes(pickled.read_bytes())
    code, out, err = predict(capsys, folder, reviews, "--out", tmp_path / "out.csv", *trust)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_the_consent_message_names_the_model_that_would_load(capsys, tmp_path, reviews):
    bundle = {"kind": "adapter", "method": "lora", "base_model": "harmless/model", "trust_remote_code": True,
              "max_length": 64, "config": {"model": "other/model", "model_revision": "abc123"}}
    folder = write_bundle(tmp_path / "bundle", bundle, ["adapter/adapter_config.json", "tokenizer/x"])
    code, _, err = predict(capsys, folder, reviews, "--out", tmp_path / "out.csv")
    assert code == 2 and "other/model at revision abc123" in err and "harmless" not in err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"method": "lora"}),
                                     json.dumps({"kind": "adapter", "method": "lora"})])
def test_a_malformed_bundle_json_is_one_line(capsys, tmp_path, reviews, content):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "bundle.json").write_text(content)
    code, out, err = predict(capsys, folder, reviews)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "Export it again" in err


@pytest.fixture
def tfidf_bundle(tmp_path):
    """A real TF-IDF bundle, fitted here on a few reviews."""
    texts = ["great product works well", "terrible waste of money", "love it great value",
             "broke after a day terrible", "works as described great", "money back terrible quality"] * 3
    labels = [1, 0, 1, 0, 1, 0] * 3
    model = fit_tfidf_logreg({"train": (texts, labels)}, BaselineConfig(method="tfidf-logreg"))
    folder = write_bundle(tmp_path / "tfidf", {"kind": "baseline", "method": "tfidf-logreg",
                                                "model_file": "model.joblib"})
    joblib.dump(model, folder / "model.joblib")
    return folder


def test_txt_input_gives_one_row_per_line(capsys, tmp_path, tfidf_bundle):
    lines = ["great value\u2028second part of the same review", "", "terrible\x0cquality\x85here", "   ",
             "works well"]
    path = tmp_path / "reviews.txt"
    path.write_bytes(("\r\n".join(lines) + "\n").encode("utf-8"))
    code, out, err = predict(capsys, tfidf_bundle, path, "--out", tmp_path / "out.csv", "--trust-pickle")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert len(rows) == len(lines)
    assert list(rows["label"] == "") == [False, True, False, True, False]  # blank lines: no label
    assert "2 without text" in out


def test_null_texts_keep_their_rows(capsys, tmp_path, tfidf_bundle):
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "great value"}\n{"text": null}\n{"text": "terrible"}\n')
    code, _, err = predict(capsys, tfidf_bundle, path, "--out", tmp_path / "out.csv", "--trust-pickle")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(rows["label"] == "") == [False, True, False]


@pytest.mark.parametrize("make, out, message", [
    (lambda p: p.write_bytes(b"caf\xe9 review\n"), "out.csv", "is not UTF-8 text"),
    (lambda p: p.write_text("fine\n"), "missing/out.csv", "its folder does not exist"),
    (lambda p: p.write_text("fine\n"), ".", "is a folder"),
])
def test_bad_inputs_and_outputs_are_one_line(capsys, tmp_path, tfidf_bundle, make, out, message):
    path = tmp_path / "reviews.txt"
    make(path)
    code, _, err = predict(capsys, tfidf_bundle, path, "--out", tmp_path / out, "--trust-pickle")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_pickle_that_is_not_one_is_one_line(capsys, tmp_path, tfidf_bundle, reviews):
    (tfidf_bundle / "model.joblib").write_bytes(b"not a pickle at all")
    code, _, err = predict(capsys, tfidf_bundle, reviews, "--out", tmp_path / "out.csv", "--trust-pickle")
    assert code == 2 and "could not be loaded" in err and len(err.strip().splitlines()) == 1
