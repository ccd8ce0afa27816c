"""A real smoke search on a real local Ray instance, run as a user runs it: the CLI in a process."""


import json

import pytest

from core.record import find_records, read_record
from search_spaces.baselines import GRIDS
from tests.conftest import run_study

pytestmark = pytest.mark.integration


def test_smoke_search_writes_one_record_per_trial_and_baseline(smoke_run):
    run_dir, _, _ = smoke_run
    every = [read_record(p) for p in find_records(run_dir)]
    baselines = [r for r in every if r["method"] in GRIDS]
    assert sorted({r["method"] for r in baselines}) == sorted(GRIDS)
    assert len(baselines) == sum(len(points) for points in GRIDS.values())
    assert len({r["split_hash"] for r in every}) == 1  # same split for every method
    records = [r for r in every if r["method"] not in GRIDS]
    assert len(records) == 3
    assert len({r["trial_id"] for r in records}) == 3
    assert len({r["split_hash"] for r in records}) == 1
    for record in records:
        assert record["method"] in ("qlora", "lora", "full")
        assert 0 < record["epochs_run"] <= record["params"]["epochs"]
        # Every report point in order (the smoke profile scores validation twice an epoch); the
        # headline at a scored point no later than the last one.
        points = [h["eval_point"] for h in record["history"]]
        assert points == list(range(1, len(points) + 1)) and record["eval_point"] <= points[-1]
        assert record["epochs_run"] == record["eval_point"] / record["config"]["evals_per_epoch"]
        assert record["test"]["n"] == len(record["test_prob_real"]) == 48


def test_no_trial_errored_or_waited_for_resources(smoke_run):
    run_dir, output, log = smoke_run
    assert not list(run_dir.rglob("error.txt"))
    assert "WorkerGroupStartupTimeoutError" not in output + log


def test_smoke_search_prints_the_ranking_and_the_run_folder(smoke_run):
    run_dir, output, _ = smoke_run
    assert "Trials ranked by validation macro_f1 within each method" in output
    assert f"Run folder: {run_dir}" in output
    table = [line for line in output.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == 3 + sum(len(points) for points in GRIDS.values())
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table]
    # (method, validation score); a constant predictor scores below every other row
    scores = [(row[2], -1e9 if row[5].endswith("(constant)") else float(row[5])) for row in rows]
    methods = list(dict.fromkeys(method for method, _ in scores))
    assert [method for method, _ in scores] == sorted((m for m, _ in scores), key=methods.index)  # grouped
    for method in methods:  # ranked within each group, groups ordered by their best
        mine = [score for m, score in scores if m == method]
        assert mine == sorted(mine, reverse=True)
    best = [max(score for m, score in scores if m == method) for method in methods]
    assert best == sorted(best, reverse=True)


def test_seeded_configurations_ran_first_and_each_method_drew_its_own_settings(smoke_run):
    from search_spaces import load_preset

    run_dir, _, _ = smoke_run
    records = sorted((r for r in map(read_record, find_records(run_dir)) if r["method"] in ("qlora", "lora", "full")),
                     key=lambda r: r["history"][0]["started_at"])
    seeds = load_preset("minilm").SEEDS
    firsts = records[:len(seeds)]  # 2 at a time: either seed may start first
    for seed in seeds:
        assert any(all(r["params"].get(k) == v for k, v in seed.items()) for r in firsts), seed
    for record in records:
        assert ("lora_r" in record["params"]) == (record["method"] != "full")


def test_every_record_reports_its_test_reviews_per_category(smoke_run, reviews_path):
    import pandas as pd

    run_dir, _, _ = smoke_run
    split = pd.read_parquet(run_dir / "data" / "split.parquet")
    test = split[split["split"] == "test"]
    categories = set(pd.read_csv(reviews_path, usecols=["category"])["category"])
    for record in map(read_record, find_records(run_dir)):
        assert record["protocol"] == "random split"
        assert record["test_group"] == test["group"].tolist()  # each test review's own category
        assert set(record["test_by_group"]) == set(test["group"]) <= categories
        assert sum(m["n"] for m in record["test_by_group"].values()) == record["test"]["n"]
    per_group = json.loads((run_dir / "leaderboard" / "per_group.json").read_text())
    assert {row["group"] for row in per_group} == set(test["group"])
    assert "## Per group" in (run_dir / "leaderboard" / "leaderboard.md").read_text()


def test_the_optuna_study_is_in_the_run_folder_with_every_trial(smoke_run):
    import optuna

    run_dir, _, _ = smoke_run
    study = run_study(run_dir)
    records = {r["trial_id"]: r for r in map(read_record, find_records(run_dir / "trials"))}
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(trials) == set(records)
    for trial_id, trial in trials.items():
        assert trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert trial.params["method"] == records[trial_id]["method"]
        # Optuna's steps are the report points the trial reached
        assert sorted(trial.intermediate_values) == [h["eval_point"] for h in records[trial_id]["history"]]
