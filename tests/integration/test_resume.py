"""Interrupted searches resume, finished ones extend, failing trials leave a reason: real
processes, real signals, a real local Ray instance."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from core import storage
from core.record import find_records, read_record
from tests.conftest import ROOT, run_study

pytestmark = pytest.mark.integration


def search_command(reviews_path, model, storage, name, *extra):
    return [sys.executable, "-m", "tune.search", "minilm", "--data", str(reviews_path), "--profile", "smoke",
            "--model", model, "--storage", str(storage), "--name", name, "--baselines", "none",
            "--max-concurrent", "1", *extra]


def fine_tune_records(run_dir):
    return [r for r in map(read_record, find_records(run_dir)) if r["method"] in ("qlora", "lora", "full")]


def checkpointed_mid_way(run_dir):
    """A trial with epochs to go whose last recorded epoch Ray Train has registered as its latest
    checkpoint (the worker stores it, then the Train controller takes note a moment later)."""
    for record in fine_tune_records(run_dir):
        if record["epochs_run"] >= record["params"]["epochs"]:
            continue
        try:
            snapshot = json.loads(storage.read_text(
                storage.join(record["train_run_dir"], "checkpoint_manager_snapshot.json")))
            if snapshot["latest_checkpoint_result"]["metrics"]["epoch"] >= record["epochs_run"]:
                return record
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            continue
    return None


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_driver_resumes_unfinished_trial_from_its_epoch_in_a_moved_run_folder(reviews_path, tmp_path):
    # The packaged MiniLM: its smoke epochs take seconds, a window the kill can land in.
    command = search_command(reviews_path, "minilm", tmp_path, "resume", "--num-samples", "2")
    log = open(tmp_path / "first-run.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        # The first trial to checkpoint an epoch while it has more to go.
        interrupted = wait_for(lambda: checkpointed_mid_way(tmp_path / "resume"), timeout=300,
                               what="a first epoch checkpoint")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray instance it started
        process.wait()
    # Resumed from another place, as after copying the run folder to another machine: every
    # trial, restored or new, writes where the folder is now, nothing where it was.
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "resume", moved / "resume")
    command[command.index("--storage") + 1] = str(moved)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming the unfinished search" in result.stdout
    assert not (tmp_path / "resume").exists()
    records = fine_tune_records(moved / "resume")
    assert all(r["train_run_dir"].startswith(str(moved / "resume" / "train")) for r in records)
    assert len(records) == 2 and len({r["trial_id"] for r in records}) == 2
    resumed = next(r for r in records if r["trial_id"] == interrupted["trial_id"])
    # It started again after the epochs it had checkpointed, not from scratch (ASHA may then stop it).
    assert resumed["started_at_epochs"][0] == 0
    assert resumed["started_at_epochs"][-1] >= interrupted["epochs_run"]
    assert resumed["epochs_run"] > interrupted["epochs_run"] or resumed["epochs_run"] == resumed["params"]["epochs"]
    points = [h["eval_point"] for h in resumed["history"]]
    assert points == list(range(1, len(points) + 1))
    # The Optuna study moved with the folder, and the resumed search kept writing to it.
    import optuna

    study = run_study(moved / "resume")
    finished = {t.user_attrs.get("ray_trial_id") for t in study.trials
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)}
    assert {r["trial_id"] for r in records} <= finished
    # Judged at the same points as an uninterrupted trial: Optuna's steps are report points, every
    # one after the resume among them (a report the SIGKILL beat to Ray's searcher checkpoint is
    # the only one that can be missing).
    judged = next(t for t in study.trials if t.user_attrs.get("ray_trial_id") == resumed["trial_id"])
    after = [p for p in points if p > resumed["started_at_epochs"][-1] * resumed["config"]["evals_per_epoch"]]
    assert set(after) <= set(judged.intermediate_values) <= set(points)


def test_extend_adds_exactly_k_trials_and_finished_search_is_not_rerun(smoke_run, tmp_path):
    # A copy of the finished smoke search, in another folder: the extension reads and writes the copy.
    run_dir = tmp_path / "ext"
    shutil.copytree(smoke_run[0], run_dir)
    before = [r for r in fine_tune_records(run_dir) if r["method"] in ("qlora", "lora", "full")]
    again = subprocess.run([sys.executable, "-m", "tune.search", "minilm", "--storage", str(tmp_path), "--name", "ext"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "holds a finished search. Add trials with --extend K" in again.stderr
    # `--extend 2`, killed before Ray saved the extension's first state, leaves run.json saying so
    # (as tune/lifecycle.py writes it before starting the Tuner) and no restorable experiment.
    # The same command without --extend then runs that extension: exactly 2 trials, not the
    # original search again. (A plain --extend K runs in test_budget_and_signals.py.)
    state = json.loads((run_dir / "run.json").read_text())
    state.update(extensions=1, experiment="tune/extend-1", extend_samples=2, finished=False)
    (run_dir / "run.json").write_text(json.dumps(state))
    extended = subprocess.run([sys.executable, "-m", "tune.search", "minilm", "--storage", str(tmp_path), "--name", "ext"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert extended.returncode == 0, extended.stderr[-3000:]
    after = [r for r in fine_tune_records(run_dir) if r["method"] in ("qlora", "lora", "full")]
    assert len(after) == len(before) + 2 and len({r["trial_id"] for r in after}) == len(after)
    added = {r["trial_id"] for r in after} - {r["trial_id"] for r in before}
    # Ray Tune's files: one experiment folder per search, one short folder per trial.
    assert {name.removeprefix("trial_") for name in os.listdir(run_dir / "tune" / "extend-1")
            if name.startswith("trial_")} == added
    assert sorted(os.listdir(run_dir / "tune")) == ["extend-1", "search"]
    assert "warm-started from every finished trial" in extended.stdout
    assert json.loads((run_dir / "run.json").read_text())["finished"] is True
    assert len(list((smoke_run[0] / "trials").iterdir())) == len(before)  # the original is untouched


def test_a_trial_over_its_memory_budget_fails_with_a_reason_and_the_search_goes_on(reviews_path, tiny_bert, tmp_path):
    result = subprocess.run(
        search_command(reviews_path, tiny_bert, tmp_path, "budget", "--num-samples", "2",
                       "--cpu-memory-gb", "0.01", "--baselines", "fast"),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = fine_tune_records(tmp_path / "budget")
    failed = [r for r in records if r.get("status") == "failed"]
    assert len(failed) == 2
    for record in failed:  # refused before it started, after micro-batches and checkpointing were weighed
        assert "over its 0.01 GiB budget even one review at a time with gradient checkpointing" in record["error"]
    baselines = {read_record(path)["method"] for path in find_records(tmp_path / "budget" / "baselines")}
    assert baselines == {"tfidf-logreg", "embed-logreg"}  # baselines still ran
    assert "failed" in result.stdout
    # A budget refusal cannot succeed on a retry: each trial ran once (Tune's own count).
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(tmp_path / "budget" / "tune" / "search"))
    assert [trial.run_metadata.num_failures for trial in analysis.trials] == [1, 1]


def test_a_second_search_on_a_running_ones_folder_is_refused_and_the_first_ends_whole(reviews_path, tmp_path):
    command = search_command(reviews_path, "minilm", tmp_path, "busy", "--num-samples", "1")
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / "busy" / "run.json").exists(), timeout=120, what="the first search's run.json")
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and second.stdout == ""
        assert lines[0].startswith(f"error: {tmp_path / 'busy'} is in use by another search (pid {first.pid} on ")
        output, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output[-3000:]
    records = fine_tune_records(tmp_path / "busy")
    assert len(records) == 1 and records[0]["epochs_run"] == records[0]["params"]["epochs"]
