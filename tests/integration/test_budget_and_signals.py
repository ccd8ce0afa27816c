"""A search stops where the user says and never mistakes a stop for the end: --time-budget ends it
(extendable), Ctrl-C and SIGTERM leave it unfinished and the same command resumes it. Real
processes, real signals, a real local Ray instance."""

import json
import re
import signal
import subprocess

import optuna
import pytest

from tests.conftest import ROOT, run_study
from tests.integration.test_resume import checkpointed_mid_way, fine_tune_records, search_command, wait_for

pytestmark = pytest.mark.integration


def state(run_dir):
    return json.loads((run_dir / "run.json").read_text())


def test_time_budget_stops_the_search_cleanly_and_it_can_be_extended(reviews_path, tiny_bert, tmp_path):
    run_dir = tmp_path / "budget"
    result = subprocess.run(
        search_command(reviews_path, tiny_bert, tmp_path, "budget", "--num-samples", "30", "--time-budget", "1.5"),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Time budget of 1.5 minutes reached" in result.stdout
    # The console without --verbose: a line per trial and a progress line, no Ray tables or worker logs.
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("Trial ") and " started: full learning_rate=0.0001" in line for line in lines)
    assert any(re.match(r"\[\d+/30 trials done; (best validation macro_f1 |no report point)", line) for line in lines)
    assert not [line for line in lines if "Trial status:" in line or "LOAD REPORT" in line or "RayTrainWorker" in line]
    # Every trial that started has its end line: ended, failed, or stopped by the budget.
    started = {line.split()[1] for line in lines if re.match(r"Trial \w+ started: ", line)}
    ended = {line.split()[1] for line in lines
             if re.match(r"Trial \w+ (ended after|failed: |stopped with the search: it )", line)}
    assert started and started == ended, (started, ended)
    assert state(run_dir)["finished"] is True
    records = fine_tune_records(run_dir)
    assert 1 <= len(records) < 30
    assert (run_dir / "leaderboard" / "leaderboard.md").exists()

    extended = subprocess.run(
        search_command(reviews_path, tiny_bert, tmp_path, "budget", "--extend", "1", "--time-budget", "0"),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert extended.returncode == 0, extended.stdout[-3000:] + extended.stderr[-3000:]
    assert len(fine_tune_records(run_dir)) == len(records) + 1
    assert f"warm-started from every finished trial ({len(records)})" in extended.stdout
    # One study holds the first search's trials and the extension's, each with its real state:
    # complete only where the trial ran its whole schedule, pruned where ASHA or the budget cut it.
    every = fine_tune_records(run_dir)
    by_id = {t.user_attrs.get("ray_trial_id"): t for t in run_study(run_dir).get_trials()}
    assert {r["trial_id"] for r in every} <= set(by_id)
    for record in every:
        trial_state = by_id[record["trial_id"]].state
        assert trial_state == (optuna.trial.TrialState.COMPLETE if record["epochs_run"] == record["params"]["epochs"]
                         else optuna.trial.TrialState.PRUNED), record["trial_id"]
    assert not run_study(run_dir).get_trials(states=(optuna.trial.TrialState.RUNNING,))


def interrupt(command, signal_number, when):
    """Start the search and send `signal_number` to the CLI process alone (as a shell's Ctrl-C or
    `kill` would) once `when()` returns something; return (that, exit code, output)."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = wait_for(when, timeout=300, what=f"the moment to send {signal.Signals(signal_number).name}")
        process.send_signal(signal_number)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return seen, process.returncode, output


def test_sigterm_and_ctrl_c_leave_the_search_unfinished_and_the_same_command_resumes_it(
        reviews_path, slow_bert, tmp_path):
    """SIGTERM mid-way through the first trial; the same command resumes it from its checkpoint.
    Ctrl-C (SIGINT) lands once that trial has recorded its last epoch: either before its driver
    ended (it is resumed from its last checkpoint, has nothing to train and reports that epoch
    again) or while the second trial trains its first epoch. The same command a third time
    finishes the search, every trial once. slow_bert's epochs outlast the graceful stop, so the
    SIGTERM lands while the trial trains."""
    command = search_command(reviews_path, slow_bert, tmp_path, "stop", "--num-samples", "2")
    run_dir = tmp_path / "stop"

    def first_finished():
        return next((r for r in fine_tune_records(run_dir)
                     if r["trial_id"] == stopped["trial_id"] and r["epochs_run"] == r["params"]["epochs"]), None)

    def check_left_unfinished(signal_number, exit_code, returncode, output):
        assert returncode == exit_code, output[-3000:]
        assert state(run_dir)["finished"] is False
        assert f"Interrupted by {signal.Signals(signal_number).name}: " in output
        assert f"resume it with: python -m tune.search minilm --storage {tmp_path} --name stop" in output

    stopped, returncode, output = interrupt(command, signal.SIGTERM, lambda: checkpointed_mid_way(run_dir))
    check_left_unfinished(signal.SIGTERM, 143, returncode, output)
    _, returncode, output = interrupt(command, signal.SIGINT, first_finished)
    check_left_unfinished(signal.SIGINT, 130, returncode, output)
    assert "Resuming the unfinished search" in output

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Resuming the unfinished search" in again.stdout
    assert state(run_dir)["finished"] is True
    records = fine_tune_records(run_dir)
    assert len(records) == 2 and len({r["trial_id"] for r in records}) == 2  # every trial once
    resumed = next(r for r in records if r["trial_id"] == stopped["trial_id"])
    assert resumed["started_at_epochs"][0] == 0
    assert resumed["started_at_epochs"][-1] >= stopped["epochs_run"]  # from its checkpoint
    assert resumed["epochs_run"] == resumed["params"]["epochs"]


def test_a_time_budget_given_on_a_resume_applies_from_the_resume(reviews_path, slow_bert, tmp_path):
    """The search starts without a budget and is stopped (SIGTERM) once a trial has checkpointed;
    resumed with --time-budget 0.2, it ends about 12 s later as a budget ends a search: finished,
    the trial cut short keeping its last scored point. (slow_bert: a trial takes about a minute.)"""
    command = search_command(reviews_path, slow_bert, tmp_path, "later", "--num-samples", "1")
    run_dir = tmp_path / "later"
    _, returncode, output = interrupt(command, signal.SIGTERM, lambda: checkpointed_mid_way(run_dir))
    assert returncode == 143, output[-3000:]
    resumed = subprocess.run([*command, "--time-budget", "0.2"], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resuming the unfinished search" in resumed.stdout
    assert "Time budget of 0.2 minutes reached" in resumed.stdout
    assert state(run_dir)["finished"] is True
    records = fine_tune_records(run_dir)
    assert records and any(r["epochs_run"] < r["params"]["epochs"] for r in records)  # cut, not run out
    assert (run_dir / "leaderboard" / "leaderboard.md").exists()
