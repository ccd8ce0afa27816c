"""The run folder's layout and its record keeping, on real files."""

import json
import re

import pytest

from core.errors import UserError
from core.record import read_record, write_record
from core.run_folder import CHECKPOINT_RECORD, TRAIN_SNAPSHOT, RunFolder
from tune.settle import settle_trial_records


def register(folder, train_run, checkpoint_name):
    """What Ray Train writes once a checkpoint's copy is whole (core/run_folder.TRAIN_SNAPSHOT)."""
    snapshot = {"latest_checkpoint_result": {"checkpoint_dir_name": checkpoint_name, "metrics": {}}}
    path = folder.train_run(train_run) + "/" + TRAIN_SNAPSHOT
    with open(path, "w") as file:
        json.dump(snapshot, file)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", ".", "", "run name", "x\\y"])
def test_names_that_are_not_one_folder_are_refused(name, tmp_path):
    with pytest.raises(UserError, match="is not a run folder name"):
        RunFolder.inside(str(tmp_path), name)


def test_layout_is_inside_the_run_folder(tmp_path):
    folder = RunFolder.inside(str(tmp_path), "minilm-cpu-1")
    assert folder.path == str(tmp_path / "minilm-cpu-1")
    for location in (folder.data, folder.trial_record("a1"), folder.baseline_record("tfidf-logreg-0"),
                     folder.train_run("a1"), folder.tune, folder.leaderboard):
        assert location.startswith(folder.path + "/")
    assert folder.experiment(RunFolder.experiment_name(2)) == str(tmp_path / "minilm-cpu-1/tune/extend-2")
    assert folder.experiment("") == folder.path  # a run folder from before tune/


def test_a_record_behind_its_checkpoint_takes_the_checkpoints_copy(tmp_path):
    folder = RunFolder.inside(str(tmp_path), "run")
    behind = {"trial_id": "a1", "epochs_run": 1, "train_run_dir": "/elsewhere/run/train/a1", "val": {"f1": 0.5}}
    level = {"trial_id": "b2", "epochs_run": 2, "train_run_dir": "/elsewhere/run/train/b2", "val": {"f1": 0.7}}
    for record in (behind, level):
        write_record(folder.trial_record(record["trial_id"]), record)
        checkpoint = folder.train_run(record["trial_id"]) + "/checkpoint_2026-11-30_04-00-00.000000"
        write_record(f"{checkpoint}/{CHECKPOINT_RECORD}", {**record, "epochs_run": 2, "val": {"f1": 0.8}})
        register(folder, record["trial_id"], "checkpoint_2026-11-30_04-00-00.000000")
    assert settle_trial_records(folder) == 1
    assert read_record(folder.trial_record("a1"))["epochs_run"] == 2
    assert read_record(folder.trial_record("a1"))["val"] == {"f1": 0.8}
    assert read_record(folder.trial_record("b2")) == level  # already level: left as it was
    assert len(folder.record_paths()) == 2  # checkpoint copies are not records
    assert json.loads((tmp_path / "run" / "trials" / "a1" / "record.json").read_text())["epochs_run"] == 2


def test_only_a_checkpoint_ray_registered_is_the_latest(tmp_path):
    folder = RunFolder.inside(str(tmp_path), "run")
    registered = folder.train_run("a1") + "/checkpoint_2026-11-30_04-00-00.000000"
    write_record(f"{registered}/{CHECKPOINT_RECORD}", {"trial_id": "a1", "epochs_run": 1})
    assert folder.latest_checkpoint("a1") is None  # nothing registered yet: no snapshot
    register(folder, "a1", "checkpoint_2026-11-30_04-00-00.000000")
    # A stop during Ray's copy of the next one: a newer folder, half written, never registered.
    (tmp_path / "run" / "train" / "a1" / "checkpoint_2026-11-30_05-00-00.000000").mkdir()
    assert folder.latest_checkpoint("a1") == registered


def test_a_run_folder_is_held_by_one_search(tmp_path):
    import subprocess
    import sys

    folder = RunFolder.inside(str(tmp_path), "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from core.run_folder import RunFolder; "
                               f"RunFolder({folder.path!r}).lock(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=re.escape(f"{folder.path} is in use by another search (pid {holder.pid} on ")):
            folder.lock()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, yet the kernel drops its lock
        holder.wait()
    folder.lock()  # free again at once
    assert not (tmp_path / "run").exists()  # the lock lives beside the run folder
