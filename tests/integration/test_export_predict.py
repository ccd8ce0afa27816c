"""Export the smoke search's trials and predict with the bundles in fresh processes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT
from trainables.record import find_records, read_record, write_record

pytestmark = pytest.mark.integration


def run(*args, cwd=ROOT):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    return result


@pytest.fixture(scope="module")
def records(smoke_run):
    run_dir = smoke_run[0]
    return run_dir, {r["trial_id"]: r for r in (read_record(p) for p in find_records(run_dir))}


@pytest.fixture(scope="module")
def test_texts(records, tmp_path_factory):
    run_dir, _ = records
    split = pd.read_parquet(run_dir / "data" / "split.parquet")
    path = tmp_path_factory.mktemp("input") / "test.csv"
    split[split["split"] == "test"][["text"]].to_csv(path, index=False)
    return path


def export_and_predict(run_dir, trial, texts, tmp_path):
    bundle = tmp_path / f"bundle-{trial}"
    exported = run("-m", "results.export", str(run_dir), "--out", str(bundle), "--trial", trial)
    assert exported.returncode == 0, exported.stderr[-2000:]
    predicted = run("-m", "results.predict", str(bundle), str(texts), "--out", str(tmp_path / f"{trial}.csv"))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    return bundle, pd.read_csv(tmp_path / f"{trial}.csv")


@pytest.mark.parametrize("method", ["fine-tune", "tfidf-logreg", "embed-svm"])
def test_export_then_predict_reproduces_the_recorded_test_predictions(records, test_texts, tmp_path, method):
    run_dir, by_trial = records
    fine_tunes = ("qlora", "lora", "full")
    trial = next(t for t, r in by_trial.items() if (r["method"] in fine_tunes if method == "fine-tune" else r["method"] == method))
    _, predictions = export_and_predict(run_dir, trial, test_texts, tmp_path)
    recorded = np.asarray(by_trial[trial]["test_prob_real"])
    # Records round probabilities to 6 decimals; NF4 layers compute identically in a new process.
    np.testing.assert_allclose(predictions["prob_real"].to_numpy(), recorded, atol=2e-5)
    assert set(predictions["label"]) <= {"fake", "real"}


def test_a_lora_bundle_loads_with_plain_peft(records, test_texts, tmp_path):
    run_dir, by_trial = records
    trial = max((t for t, r in by_trial.items() if r["method"] in ("qlora", "lora")),
                key=lambda t: by_trial[t]["val"]["f1"])
    bundle, ours = export_and_predict(run_dir, trial, test_texts, tmp_path)
    config = json.loads((bundle / "bundle.json").read_text())
    script = f"""
import json, sys, torch, pandas as pd
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
base = AutoModelForSequenceClassification.from_pretrained({config['base_model_path']!r}, num_labels=2)
model = PeftModel.from_pretrained(base, {str(bundle / 'adapter')!r}).eval()
tokenizer = AutoTokenizer.from_pretrained({str(bundle / 'tokenizer')!r})
texts = pd.read_csv({str(test_texts)!r})["text"].tolist()
with torch.no_grad():
    batch = tokenizer(texts, truncation=True, max_length={config['max_length']}, padding=True, return_tensors="pt")
    prob = torch.softmax(model(**batch).logits, -1)[:, 1]
print(json.dumps(prob.tolist()))
"""
    plain = run("-c", script, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "trainables" not in script and "results" not in script.split("pd.read_csv")[0]
    prob = np.asarray(json.loads(plain.stdout.strip().splitlines()[-1]))
    # A qlora adapter on an unquantized base: close, not identical (4-bit vs full weights).
    tolerance = 0.1 if config["quantization"] else 1e-4
    np.testing.assert_allclose(prob, ours["prob_real"].to_numpy(), atol=tolerance)


def test_predict_explains_bad_input(records, tmp_path):
    run_dir, _ = records
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = run("-m", "results.predict", str(tmp_path), str(empty))
    assert result.returncode == 2
    assert f"{tmp_path} is not a bundle (bundle.json missing)" in result.stderr
    no_text = tmp_path / "reviews.csv"
    pd.DataFrame({"body": ["great"]}).to_csv(no_text, index=False)
    bundle = tmp_path / "bundle"
    assert run("-m", "results.export", str(run_dir), "--out", str(bundle)).returncode == 0
    result = run("-m", "results.predict", str(bundle), str(no_text))
    assert result.returncode == 2 and "No text column found" in result.stderr and "Traceback" not in result.stderr
    result = run("-m", "results.predict", str(bundle), str(empty))
    assert result.returncode == 2 and "holds no reviews" in result.stderr


def test_a_copied_run_folder_exports_from_its_own_checkpoints(records, test_texts, tmp_path):
    run_dir, by_trial = records
    trial = next(t for t, r in by_trial.items() if r["method"] in ("qlora", "lora"))
    copy = tmp_path / "copied-run"
    shutil.copytree(run_dir, copy)
    # As if the search ran on a cluster's shared disk (or a bucket) and the folder was copied here:
    # the checkpoint paths the records hold do not exist on this machine.
    for path in find_records(copy):
        record = read_record(path)
        if "train_run_dir" in record:
            record["train_run_dir"] = f"/cluster-disk/runs/smoke/train/{Path(record['train_run_dir']).name}"
            write_record(path, record)
    _, predictions = export_and_predict(copy, trial, test_texts, tmp_path)
    np.testing.assert_allclose(predictions["prob_real"].to_numpy(), by_trial[trial]["test_prob_real"], atol=2e-5)
