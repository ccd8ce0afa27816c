"""The qwen preset (a decoder) through the CLI on a tiny Qwen2 built from a config: a smoke search
of the published adapter as QLoRA and as LoRA, then export and predict in fresh processes."""

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


def test_a_tiny_qwen2_searches_with_qlora_and_lora_and_its_exports_predict(reviews_path, tiny_qwen, tmp_path):
    searched = run("-m", "tune.search", "qwen", "--data", str(reviews_path), "--profile", "smoke", "--model",
                   tiny_qwen, "--storage", str(tmp_path), "--name", "q", "--num-samples", "2",
                   "--max-concurrent", "2", "--baselines", "none")
    assert searched.returncode == 0, searched.stdout[-2000:] + searched.stderr[-2000:]
    records = {r["method"]: r for r in map(read_record, find_records(tmp_path / "q" / "trials"))}
    assert set(records) == {"qlora", "lora"}  # the two seeds: the published adapter, 4-bit and not
    for record in records.values():
        assert record["params"]["lora_r"] == 64 and record["params"]["use_rslora"] is True
        assert record["val"]["accuracy"] > 0 and len(record["test_prob_real"]) == 48
    split = pd.read_parquet(tmp_path / "q" / "data" / "split.parquet")
    texts = tmp_path / "test.csv"
    split[split["split"] == "test"][["text"]].to_csv(texts, index=False)
    for method, record in records.items():
        bundle = tmp_path / f"bundle-{method}"
        exported = run("-m", "results.export", str(tmp_path / "q"), "--trial", record["trial_id"], "--out", str(bundle),
                       *(["--merge"] if method == "lora" else []))
        assert exported.returncode == 0, exported.stderr[-2000:]
        if method == "lora":  # merged into a bf16 base that knows its pad id, as training did
            merged = json.loads((bundle / "merged" / "config.json").read_text())
            assert merged["pad_token_id"] == 0 and merged["architectures"] == ["Qwen2ForSequenceClassification"]
        adapter = json.loads((bundle / "adapter" / "adapter_config.json").read_text())
        assert "score" in adapter["modules_to_save"]  # the head trains and is saved with the adapter
        predicted = run("-m", "results.predict", str(bundle), str(texts), "--out", str(tmp_path / f"{method}.csv"),
                        "--bf16")  # as the trial scored
        assert predicted.returncode == 0, predicted.stderr[-2000:]
        np.testing.assert_allclose(pd.read_csv(tmp_path / f"{method}.csv")["prob_real"].to_numpy(),
                                   record["test_prob_real"], atol=2e-5)
