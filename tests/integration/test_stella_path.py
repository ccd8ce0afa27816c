"""The `stella` preset end to end on the faithful remote-code stand-in (tests/fixtures/tiny_stella),
as `python -m tune.search stella --model SNAPSHOT` runs on a machine without xformers: the search,
the embedding baseline, export and predict in fresh processes."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core.record import find_records, read_record
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_stella_preset_searches_exports_and_predicts_on_the_stand_in(reviews_path, tiny_stella, tmp_path):
    search = run("-m", "tune.search", "stella", "--data", str(reviews_path), "--profile", "smoke",
                 "--model", tiny_stella, "--storage", str(tmp_path), "--name", "stella", "--num-samples", "1",
                 "--max-concurrent", "1", "--baselines", "fast")
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    assert ("Model loading: xformers not installed: the model loads with use_memory_efficient_attention=False, "
            "unpad_inputs=False") in search.stdout
    run_dir = tmp_path / "stella"
    records = {r["method"]: r for r in map(read_record, find_records(run_dir))}
    assert set(records) == {"qlora", "tfidf-logreg", "embed-logreg"}  # the study's seed, and the baselines
    trial = records["qlora"]
    assert trial["epochs_run"] == trial["params"]["epochs"] and trial.get("status") != "failed"
    assert trial["loading_overrides"] == {"use_memory_efficient_attention": False, "unpad_inputs": False}
    assert trial["params"]["target_modules"] == "attention_output"

    bundle = tmp_path / "bundle"
    refused = run("-m", "results.export", str(run_dir), "--out", str(bundle))
    assert refused.returncode == 2 and "pass --trust-remote-code" in refused.stderr
    exported = run("-m", "results.export", str(run_dir), "--out", str(bundle), "--trust-remote-code")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads((bundle / "bundle.json").read_text())["trial_id"] == trial["trial_id"]

    split = pd.read_parquet(run_dir / "data" / "split.parquet")
    texts = tmp_path / "test.csv"
    split[split["split"] == "test"][["text"]].to_csv(texts, index=False)
    refused = run("-m", "results.predict", str(bundle), str(texts), "--out", str(tmp_path / "p.csv"))
    assert refused.returncode == 2 and "pass --trust-remote-code" in refused.stderr
    predicted = run("-m", "results.predict", str(bundle), str(texts), "--out", str(tmp_path / "p.csv"),
                    "--trust-remote-code", "--bf16")  # --bf16: as the trial scored
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")["prob_real"].to_numpy(), trial["test_prob_real"],
                               atol=2e-5)
