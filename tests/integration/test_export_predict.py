"""Export the smoke search's trials and predict with the bundles in fresh processes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.record import find_records, read_record, write_record
from results.leaderboard import rank
from tests.conftest import ROOT

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


def export_and_predict(run_dir, trial, texts, tmp_path, *predict_options):
    bundle = tmp_path / f"bundle-{trial}"
    exported = run("-m", "results.export", str(run_dir), "--out", str(bundle), "--trial", trial)
    assert exported.returncode == 0, exported.stderr[-2000:]
    predicted = run("-m", "results.predict", str(bundle), str(texts), "--out", str(tmp_path / f"{trial}.csv"),
                    *predict_options)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    return bundle, pd.read_csv(tmp_path / f"{trial}.csv")


@pytest.mark.parametrize("method", ["fine-tune", "tfidf-logreg", "embed-svm"])
def test_export_then_predict_reproduces_the_recorded_test_predictions(records, test_texts, tmp_path, method):
    run_dir, by_trial = records
    fine_tunes = ("qlora", "lora", "full")
    trial = next(t for t, r in by_trial.items() if (r["method"] in fine_tunes if method == "fine-tune" else r["method"] == method))
    bundle, predictions = export_and_predict(run_dir, trial, test_texts, tmp_path, "--bf16",
                                             *([] if method == "fine-tune" else ["--trust-pickle"]))
    recorded = np.asarray(by_trial[trial]["test_prob_real"])
    # --bf16 scores as the trial did (bf16 where this CPU has it). Records round probabilities to 6
    # decimals; NF4 layers compute identically in a new process.
    np.testing.assert_allclose(predictions["prob_real"].to_numpy(), recorded, atol=2e-5)
    assert set(predictions["label"]) <= {"fake", "real"}
    if method != "fine-tune":  # a pickle loads only when the command line says so
        refused = run("-m", "results.predict", str(bundle), str(test_texts), "--out", str(tmp_path / "x.csv"))
        assert refused.returncode == 2 and "pass --trust-pickle" in refused.stderr
        assert not (tmp_path / "x.csv").exists()


def test_export_default_is_the_best_fine_tune_and_remote_code_needs_the_command_line(records, tmp_path):
    run_dir, by_trial = records
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    fine_tunes = {t: r for t, r in by_trial.items() if r["method"] in ("qlora", "lora", "full")}
    baseline = next(r for r in by_trial.values() if r["method"] == "tfidf-logreg")
    # A baseline that beats every fine-tune, and a trial that failed before its first epoch.
    baseline_path = next(p for p in find_records(copy) if read_record(p)["trial_id"] == baseline["trial_id"])
    write_record(baseline_path, {**baseline, "val": {**baseline["val"], "macro_f1": 1.0, "f1": 1.0}})
    write_record(copy / "trials" / "failed1" / "record.json",
                 {"method": "qlora", "trial_id": "failed1", "status": "failed", "error": "boom",
                  "split_hash": baseline["split_hash"]})
    exported = run("-m", "results.export", str(copy), "--out", str(tmp_path / "best"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    bundle = json.loads((tmp_path / "best" / "bundle.json").read_text())
    assert bundle["trial_id"] == rank(list(fine_tunes.values()), "macro_f1")[0]["trial_id"]
    assert bundle["chosen"].startswith("the best fine-tune by validation macro_f1")
    assert f"Exported trial {bundle['trial_id']}" in exported.stdout
    # A record that says its model needs remote code: export runs it only with --trust-remote-code.
    path = copy / "trials" / bundle["trial_id"] / "record.json"
    record = read_record(path)
    write_record(path, {**record, "config": {**record["config"], "trust_remote_code": True}})
    refused = run("-m", "results.export", str(copy), "--out", str(tmp_path / "rc"), "--trial", bundle["trial_id"])
    assert refused.returncode == 2 and "pass --trust-remote-code" in refused.stderr
    assert not (tmp_path / "rc").exists()


def test_a_lora_bundle_loads_with_plain_peft(records, test_texts, tmp_path):
    run_dir, by_trial = records
    trial = max((t for t, r in by_trial.items() if r["method"] in ("qlora", "lora")),
                key=lambda t: by_trial[t]["val"]["f1"])
    bundle, ours = export_and_predict(run_dir, trial, test_texts, tmp_path)
    config = json.loads((bundle / "bundle.json").read_text())
    quantization = config["quantization"]
    # A qlora adapter was trained on a 4-bit base: the bundle says how to rebuild it.
    load_options = "" if not quantization else (
        ", quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="
        f"{quantization['quant_type']!r}, bnb_4bit_use_double_quant={quantization['double_quant']}, "
        f"bnb_4bit_compute_dtype=getattr(torch, {quantization['compute_dtype']!r}), "
        "llm_int8_skip_modules=['classifier'])")
    script = f"""
import json, sys, torch, pandas as pd
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig
base = AutoModelForSequenceClassification.from_pretrained({config['base_model_path']!r}, num_labels=2{load_options})
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
    prob = np.asarray(json.loads(plain.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(prob, ours["prob_real"].to_numpy(), atol=1e-4)


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
    _, predictions = export_and_predict(copy, trial, test_texts, tmp_path, "--bf16")
    np.testing.assert_allclose(predictions["prob_real"].to_numpy(), by_trial[trial]["test_prob_real"], atol=2e-5)


def test_a_checkpoint_ray_never_registered_is_not_exported(records, test_texts, tmp_path):
    run_dir, by_trial = records
    trial = next(t for t, r in by_trial.items() if r["method"] in ("qlora", "lora"))
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    # As a stop during Ray's copy leaves it: a newer checkpoint folder with a truncated weights file.
    train_run = copy / "train" / Path(by_trial[trial]["train_run_dir"]).name
    partial = train_run / "checkpoint_2999-01-01_00-00-00.000000"
    partial.mkdir()
    (partial / "trainable.safetensors").write_bytes(b"\x00" * 10)
    _, predictions = export_and_predict(copy, trial, test_texts, tmp_path, "--bf16")
    np.testing.assert_allclose(predictions["prob_real"].to_numpy(), by_trial[trial]["test_prob_real"], atol=2e-5)


def test_an_edited_bundle_or_a_bad_out_is_one_line(records, test_texts, tmp_path):
    run_dir, by_trial = records
    trial = next(t for t, r in by_trial.items() if r["method"] in ("qlora", "lora"))
    onto_file = tmp_path / "a-file"
    onto_file.write_text("x")
    exported = run("-m", "results.export", str(run_dir), "--out", str(onto_file), "--trial", trial)
    assert exported.returncode == 2 and "is a file" in exported.stderr and "Traceback" not in exported.stderr
    bundle = tmp_path / "bundle"
    assert run("-m", "results.export", str(run_dir), "--out", str(bundle), "--trial", trial).returncode == 0
    (bundle / "adapter" / "adapter_config.json").write_text("{cut short")
    predicted = run("-m", "results.predict", str(bundle), str(test_texts), "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 2 and "Traceback" not in predicted.stderr
    assert predicted.stderr.strip().splitlines()[-1].startswith(f"error: Bundle {bundle} could not be loaded")
    assert not (tmp_path / "p.csv").exists()


def test_the_ensemble_exports_with_its_members_and_predict_reproduces_its_test_predictions(records, test_texts,
                                                                                           tmp_path):
    from core.record import load_records
    from results.ensemble import build_ensemble

    run_dir, by_trial = records
    ensemble = build_ensemble(load_records(str(run_dir)), "macro_f1")
    bundle = tmp_path / "ensemble"
    exported = run("-m", "results.export", str(run_dir), "--ensemble", "--out", str(bundle))
    assert exported.returncode == 0, exported.stderr[-2000:]
    written = json.loads((bundle / "bundle.json").read_text())
    assert written["kind"] == "ensemble" and [m["folder"] for m in written["members"]] == ensemble.members
    for member in ensemble.members:  # each member as a single export writes it
        assert json.loads((bundle / "members" / member / "bundle.json").read_text())["trial_id"] == member
    pickles = any(not by_trial[m]["method"] in ("qlora", "lora", "full") for m in ensemble.members)
    if pickles:  # a member's pickle loads only when the command line says so, as alone
        refused = run("-m", "results.predict", str(bundle), str(test_texts), "--out", str(tmp_path / "x.csv"))
        assert refused.returncode == 2 and "pass --trust-pickle" in refused.stderr
    predicted = run("-m", "results.predict", str(bundle), str(test_texts), "--out", str(tmp_path / "e.csv"),
                    "--bf16", *(["--trust-pickle"] if pickles else []))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "e.csv")["prob_real"].to_numpy(), ensemble.test_prob_real,
                               atol=2e-5)
    both = run("-m", "results.export", str(run_dir), "--ensemble", "--trial", ensemble.members[0],
               "--out", str(tmp_path / "both"))
    assert both.returncode == 2 and "Pass one of them" in both.stderr
