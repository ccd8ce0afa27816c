"""run.json as a typed state, and the record schema: each kind written and read back, and the
files of a run folder from before both (tests/fixtures/main_run) read as they were meant."""

import json

import pytest

from core.record import (
    FIELDS,
    failed_record,
    identity,
    load_records,
    read_record,
    scored_record,
    upgrade_record,
    write_record,
)
from core.run_folder import RunFolder
from tests.conftest import FIXTURES
from tune.run_state import RunState

MAIN_RUN = FIXTURES / "main_run"
PLACES = {"run_dir": "/runs/old", "model": "/models/bert", "data": "/data/reviews.csv.gz",
          "tokens_file": "tokens-0123456789abcdef.parquet", "trial_id": "d754a3fe"}


def frozen(name: str, places: dict = PLACES) -> dict:
    text = (MAIN_RUN / name).read_text()
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


def test_an_old_run_json_reads_into_the_state_and_writes_back_the_same():
    saved = frozen("run.json")
    state = RunState.from_json(saved)
    assert state.run_dir == "/runs/old" and state.fixed.model == "/models/bert" and state.fixed.epochs == 2
    assert state.param_space() == saved["base"] and state.planned_trials == saved["num_samples"]
    written = state.to_json()
    assert {key: written[key] for key in saved} == saved  # every key it had, unchanged
    assert set(written) - set(saved) == {"extend_samples", "track", "tracking_uri"}  # keys added since
    assert written["track"] == [] and written["tracking_uri"] is None  # an old search was never tracked


def test_older_run_json_upgrades_in_one_place():
    saved = frozen("run.json")
    for key in ("metric", "tpe_startup_trials"):
        del saved[key]
    saved["base"]["data_dir"] = "/runs/old/data"  # before run_dir
    saved["retired_key"] = 1
    state = RunState.from_json(saved)
    assert state.metric == "macro_f1" and state.tpe_startup_trials == 10
    assert "data_dir" not in state.param_space()


def test_a_state_moves_and_extends_through_named_steps(tmp_path):
    state = RunState.from_json(frozen("run.json"))
    folder = RunFolder.inside(str(tmp_path), "moved")
    state.moved_to(folder)
    state.extend(4)
    state.write(folder)
    again = RunState.read(folder)
    assert again.run_dir == folder.path and again.fixed.run_dir == folder.path
    assert again.experiment == "tune/extend-1" and again.planned_trials == 4 and not again.finished
    assert again.set_time_budget(0) is None and again.set_time_budget(2) == 120


def test_each_kind_of_record_is_built_by_the_schema_and_read_back(tmp_path):
    trial = frozen("trial_record.json")
    who = identity(**{key: trial[key] for key in ("method", "preset", "model", "trial_id", "params", "config",
                                                  "split_hash", "seed")})
    scores = {key: value for key, value in trial.items() if key not in who}
    fine_tune = scored_record(who, **scores)
    assert fine_tune == trial  # what main wrote is inside the schema
    baseline = frozen("baseline_record.json")
    failed = failed_record(who, "CUDA out of memory", out_of_memory=True)
    folder = RunFolder.inside(str(tmp_path), "run")
    write_record(folder.trial_record("d754a3fe"), fine_tune)
    write_record(folder.baseline_record("tfidf-logreg-0"), scored_record(
        identity(**{key: baseline[key] for key in who}), **{k: v for k, v in baseline.items() if k not in who}))
    write_record(folder.trial_record("x1"), {**failed, "trial_id": "x1"})
    records = {r["trial_id"]: r for r in load_records(folder.path)}
    assert records["x1"]["status"] == "failed" and records["x1"]["out_of_memory"] and "val" not in records["x1"]
    assert records["tfidf-logreg-0"]["epochs_run"] is None and records["d754a3fe"]["eval_point"] == 4
    assert all(set(r) <= FIELDS for r in records.values())
    assert read_record(folder.trial_record("d754a3fe")) == fine_tune


def test_a_record_outside_the_schema_is_refused():
    trial = frozen("trial_record.json")
    who = identity(**{key: trial[key] for key in ("method", "preset", "model", "trial_id", "params", "config",
                                                  "split_hash", "seed")})
    with pytest.raises(ValueError, match=r"unknown \['val_f1'\], missing \['test'\]"):
        scored_record(who, **{k: v for k, v in trial.items() if k not in who and k != "test"}, val_f1=0.5)
    with pytest.raises(ValueError, match="differ in length"):
        scored_record(who, **{**{k: v for k, v in trial.items() if k not in who}, "test_labels": [1]})


def test_records_from_before_protocols_and_the_two_memory_keys_are_upgraded():
    old = {"method": "full", "device": "cpu", "peak_memory_mb": 900.0}
    assert upgrade_record(old) == {"method": "full", "device": "cpu", "protocol": "random split",
                                   "gpu_peak_mb": None, "cpu_peak_rss_mb": 900.0}
    assert upgrade_record({**old, "device": "NVIDIA H200"})["gpu_peak_mb"] == 900.0
