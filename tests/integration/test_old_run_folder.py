"""A run folder written before the typed run state and the record schema (its run.json and two
records as the main of 2026-12-02 wrote them: tests/fixtures/main_run) still resumes, ranks and
exports: a copy of the smoke search with those files in place, through the command line."""

import json
import shutil
import subprocess
import sys

import pytest

from core.record import find_records, read_record
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.integration


def filled(name: str, places: dict) -> dict:
    text = (FIXTURES / "main_run" / name).read_text()
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


def test_an_old_run_folder_resumes_ranks_and_exports(smoke_run, tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(smoke_run[0], run_dir)
    live = json.loads((run_dir / "run.json").read_text())
    places = {"run_dir": str(run_dir), "model": live["base"]["model"], "data": live["data"],
              "tokens_file": live["base"]["tokens_file"]}
    state = filled("run.json", places)
    assert state["base"]["split_hash"] == live["base"]["split_hash"]  # the same smoke split
    state["finished"] = False  # as an interrupted search leaves it
    (run_dir / "run.json").write_text(json.dumps(state, indent=1))
    full = next(r for r in map(read_record, find_records(run_dir / "trials")) if r["method"] == "full")
    old_trial = filled("trial_record.json", {**places, "trial_id": full["trial_id"]})
    (run_dir / "trials" / full["trial_id"] / "record.json").write_text(json.dumps(old_trial, indent=1))
    old_baseline = filled("baseline_record.json", places)
    (run_dir / "baselines" / "tfidf-logreg-0" / "record.json").write_text(json.dumps(old_baseline, indent=1))

    resumed = subprocess.run([sys.executable, "-m", "tune.search", "minilm", "--storage", str(tmp_path),
                              "--name", "old"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Resuming the unfinished search" in resumed.stdout
    assert json.loads((run_dir / "run.json").read_text())["finished"] is True
    rows = json.loads((run_dir / "leaderboard" / "leaderboard.json").read_text())
    ranked = {row["trial"]: row for row in rows}
    assert ranked[full["trial_id"]]["test_f1"] == pytest.approx(old_trial["test"]["f1"])
    assert ranked["tfidf-logreg-0"]["test_f1"] == pytest.approx(old_baseline["test"]["f1"])

    exported = subprocess.run([sys.executable, "-m", "results.export", str(run_dir), "--trial", full["trial_id"],
                               "--out", str(tmp_path / "bundle")], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["kind"] == "full"
