"""--track mlflow and --track wandb on a smoke search: a real MLflow SQLite store read back with
MlflowClient, W&B in offline mode, the CLI in a process, a real local Ray instance, a tiny model."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

mlflow = pytest.importorskip("mlflow")


def search(reviews_path, tiny_bert, storage, *args):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WANDB_DIR", None)
    return subprocess.run([sys.executable, "-m", "tune.search", "minilm", "--profile", "smoke", "--model", tiny_bert,
                           "--storage", str(storage), "--name", "tracked", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def runs_by_trial(uri):
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    by_trial = {run.data.tags["trial_id"]: run for run in runs}
    assert len(by_trial) == len(runs), "a trial tracked twice"
    return client, by_trial


def test_every_trial_and_baseline_is_tracked_and_an_extension_appends(reviews_path, tiny_bert, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = search(reviews_path, tiny_bert, tmp_path, "--data", str(reviews_path), "--num-samples", "2",
                   "--baselines", "tfidf", "--track", "mlflow", "--track", "wandb", "--tracking-uri", uri)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = tmp_path / "tracked"
    records = {json.loads(p.read_text())["trial_id"]: json.loads(p.read_text()) for p in run_dir.glob("*/*/record.json")}
    client, by_trial = runs_by_trial(uri)
    assert set(by_trial) == set(records) | {"search"} and len(by_trial) >= 5  # 2 trials, 2 baselines, the search
    split_hash = next(iter(records.values()))["split_hash"]
    for trial_id, record in records.items():
        run = by_trial[trial_id]
        assert run.data.tags["method"] == record["method"] and run.data.tags["split_hash"] == split_hash
        assert run.data.tags["run_folder"] == str(run_dir) and run.data.tags["preset"] == "minilm"
        for setting, value in record["params"].items():  # the searched settings
            assert run.data.params[setting] == str(value)
        assert run.data.metrics["test_macro_f1"] == pytest.approx(record["test"]["macro_f1"])
        history = client.get_metric_history(run.info.run_id, "val_macro_f1")
        steps = sorted(m.step for m in history)
        if record.get("history"):  # every report point, at its point, once
            assert steps == [h["eval_point"] for h in record["history"]]
            assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
                [h["val"]["macro_f1"] for h in record["history"]])
        else:
            assert steps == [0]
    longest = max(len(client.get_metric_history(by_trial[t].info.run_id, "val_macro_f1")) for t in records)
    assert longest >= 2  # a trial that ASHA let through its first rung
    artifacts = {a.path for a in client.list_artifacts(by_trial["search"].info.run_id, "leaderboard")}
    assert {"leaderboard/leaderboard.md", "leaderboard/index.html"} <= artifacts
    assert (tmp_path / "mlflow-artifacts").is_dir() and not (ROOT / "mlruns").exists()  # beside the store
    # W&B, offline: a run folder per trial and baseline, under the run folder
    offline = {path.name.rsplit("-", 1)[-1] for path in (run_dir / "wandb").glob("offline-run-*")}
    assert {t.rsplit("-", 1)[-1] for t in records} <= offline

    before = {t: len(client.get_metric_history(r.info.run_id, "val_macro_f1")) for t, r in by_trial.items()}
    extended = search(reviews_path, tiny_bert, tmp_path, "--extend", "1")  # tracking kept from run.json
    assert extended.returncode == 0, extended.stdout[-3000:] + extended.stderr[-3000:]
    client, after = runs_by_trial(uri)
    assert len(after) == len(by_trial) + 1  # the new trial; nothing tracked twice
    assert {t: len(client.get_metric_history(r.info.run_id, "val_macro_f1")) for t, r in after.items()
            if t in before} == before


def test_an_unreachable_tracking_server_is_refused_before_any_work(reviews_path, tiny_bert, tmp_path):
    refused = search(reviews_path, tiny_bert, tmp_path, "--data", str(reviews_path), "--track", "mlflow",
                     "--tracking-uri", "http://127.0.0.1:9")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip().splitlines()[-1]]
    assert "MLflow tracking server http://127.0.0.1:9 cannot be reached" in refused.stderr
    assert not (tmp_path / "tracked").exists()
