"""The analyzer on canned result records written by the test."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.metrics import SELECTION_METRICS, classification_metrics
from core.record import load_records
from results.leaderboard import (
    bootstrap_f1_interval,
    main,
    mcnemar_p,
    rank,
    write_leaderboard,
)


def write(run_dir, trial, method, val_f1, labels, prob, split_hash="abc", history=None):
    record = {"trial_id": trial, "method": method, "preset": "minilm", "model": "minilm",
              "params": {"learning_rate": 1e-4, "epochs": 2}, "epochs_run": 2 if history else None,
              "val": {"f1": val_f1, "macro_f1": val_f1}, "test": classification_metrics(labels, prob),
              "test_labels": list(map(int, labels)), "test_prob_real": list(map(float, prob)),
              "history": history or [], "train_seconds": 60.0, "eval_seconds": 6.0, "device": "cpu",
              "cpu_peak_rss_mb": 900.0, "trainable_params": 1000, "adapter_bytes": 4096, "split_hash": split_hash}
    folder = run_dir / trial
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record))


def noisy(labels, accuracy, seed):
    rng = np.random.default_rng(seed)
    right = rng.random(len(labels)) < accuracy
    return np.where(right, labels, 1 - labels) * 0.8 + 0.1


@pytest.fixture
def run(tmp_path):
    labels = np.random.default_rng(0).integers(0, 2, 400)
    write(tmp_path, "a", "qlora", 0.90, labels, noisy(labels, 0.80, 1),
          history=[{"epoch": 1, "val": {"f1": 0.85}}, {"epoch": 2, "val": {"f1": 0.90}}])
    write(tmp_path, "b", "qlora", 0.95, labels, noisy(labels, 0.70, 2),
          history=[{"epoch": 1, "val": {"f1": 0.95}}])
    write(tmp_path, "c", "tfidf-logreg", 0.80, labels, noisy(labels, 0.99, 3))
    return tmp_path


def test_ranking_uses_validation_never_test(run):
    ranked = [r["trial_id"] for r in rank(load_records(run))]
    # b has the best validation F1 but the worst test F1; c is best on test but ranks last.
    assert ranked == ["b", "a", "c"]


def test_interval_contains_the_point_estimate_and_narrows_with_more_rows():
    rng = np.random.default_rng(5)
    widths = []
    for n in (200, 3200):
        labels = rng.integers(0, 2, n)
        prob = noisy(labels, 0.9, 7)
        low, high = bootstrap_f1_interval(labels, prob)
        point = classification_metrics(labels, prob)["f1"]
        assert low <= point <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_mcnemar_separates_a_real_gap_from_noise():
    labels = np.random.default_rng(1).integers(0, 2, 2000)
    assert mcnemar_p(labels, noisy(labels, 0.95, 1), noisy(labels, 0.80, 2)) < 1e-6
    assert mcnemar_p(labels, noisy(labels, 0.90, 3), noisy(labels, 0.90, 3)) == 1.0


def test_mixed_split_hashes_are_refused(run):
    labels = np.array([0, 1] * 10)
    write(run, "d", "lora", 0.7, labels, labels * 0.9, split_hash="other")
    with pytest.raises(UserError, match=r"come from different data splits \(abc, other\)"):
        load_records(run)
    assert main([str(run)]) == 2


def test_outputs_are_written_with_plots(run):
    out = Path(write_leaderboard(run))
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "index.html", "f1_vs_cost.png",
                 "roc_pr.png", "confusion.png", "search_progress.png"):
        assert (out / name).stat().st_size > 0, name
    rows = json.loads((out / "leaderboard.json").read_text())
    assert [r["trial"] for r in rows] == ["b", "a", "c"]
    assert rows[0]["p_vs_top"] is None and rows[1]["p_vs_top"] is None  # a is not its method's best
    assert rows[2]["p_vs_top"] < 0.001  # c's 99 % accuracy differs from b's 70 %


def test_the_headline_names_the_top_row_and_compares_it_with_the_best_baseline(run):
    out = Path(write_leaderboard(run))
    rows = json.loads((out / "leaderboard.json").read_text())
    top = rows[0]
    text = (out / "leaderboard.md").read_text()
    first = text.split("\n\n")[1]  # the headline comes first
    assert first.startswith("**Chosen: QLoRA adapter (learning_rate=0.0001 epochs=2), trial b**")
    assert (f"test macro-F1 {100 * top['test_macro_f1']:.2f} ({100 * top['test_macro_f1_low']:.1f}-"
            f"{100 * top['test_macro_f1_high']:.1f})") in first
    assert top["test_macro_f1_low"] < top["test_macro_f1"] < top["test_macro_f1_high"]
    # b (70 % right) against c (99 %): the baseline is far better on test, and the test says so
    assert "Best baseline: TF-IDF + logistic regression (" in text and "), trial c, test macro-F1 99." in text
    assert f"p = {mcnemar_p(top_labels(run), prob_of(run, 'b'), prob_of(run, 'c')):.3g}, significant" in text
    assert f"Export it: `python -m results.export {run} --out bundle`" in text
    assert "![" in text and "search_progress.png" in text  # the search's pictures in the md too
    page = (out / "index.html").read_text()
    main_table = page.split("<h2>Models, ranked")[1].split("<details>")[0]
    assert "selection_metric" not in main_table and "False" not in main_table
    assert not re.search(r">0\.\d{4}<", main_table)  # percents, not fractions
    assert "<td>QLoRA adapter b</td>" in main_table and "<details><summary>Every column" in page


def top_labels(run):
    return json.loads((run / "b" / "record.json").read_text())["test_labels"]


def prob_of(run, trial):
    return json.loads((run / trial / "record.json").read_text())["test_prob_real"]


def test_empty_folder_is_explained(tmp_path):
    with pytest.raises(UserError, match="No trial records"):
        load_records(tmp_path)


def test_a_run_where_every_trial_failed_says_why(tmp_path):
    folder = tmp_path / "t1"
    folder.mkdir()
    (folder / "record.json").write_text(json.dumps({
        "trial_id": "t1", "method": "qlora", "split_hash": "abc", "status": "failed",
        "error": "batch size 32: Trial needs about 1.85 GiB"}))
    with pytest.raises(UserError, match="nothing to rank. Trial t1 failed: batch size 32: Trial needs about 1.85 GiB"):
        rank(load_records(tmp_path))


@pytest.mark.parametrize("metric", list(SELECTION_METRICS))
def test_a_constant_predictor_ranks_last_under_every_metric(tmp_path, metric):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 300)
    # "real" for every review, with probabilities that still order the reviews well: its F1 of
    # real (about 0.67) and its ROC AUC beat the weak learner's, yet it never chose a class.
    constant = np.where(labels == 1, 0.9, 0.6) + rng.normal(0, 0.05, 300).clip(-0.09, 0.09)
    weak = noisy(labels, 0.62, 8)  # learned a little: both classes predicted, 62 % right
    for trial, prob in (("constant", constant), ("weak", weak)):
        write(tmp_path, trial, "full", 0.0, labels, prob)
        record = json.loads((tmp_path / trial / "record.json").read_text())
        record["val"] = classification_metrics(labels, prob)
        (tmp_path / trial / "record.json").write_text(json.dumps(record))
    records = load_records(tmp_path)
    by_trial = {r["trial_id"]: r for r in records}
    if metric in ("f1_real", "roc_auc"):  # the raw metric alone would put the constant predictor first
        key = SELECTION_METRICS[metric]
        assert by_trial["constant"]["val"][key] > by_trial["weak"]["val"][key]
    assert [r["trial_id"] for r in rank(records, metric)] == ["weak", "constant"]


def lora_record(trial, learning_rate, lora_r, val_score, labels):
    settings = {"method": "lora", "target_modules": "attention", "lora_r": lora_r, "lora_alpha": 32,
                "lora_dropout": 0.05, "use_rslora": False, "learning_rate": learning_rate}
    return {"trial_id": trial, "method": "lora", "preset": "minilm", "model": "minilm",
            "params": {**settings, "epochs": 2}, "epochs_run": 2,
            "val": {"f1": val_score, "macro_f1": val_score, "confusion_matrix": [[5, 1], [1, 5]]},
            "test": classification_metrics(labels, labels * 0.8 + 0.1), "test_labels": labels.tolist(),
            "test_prob_real": (labels * 0.8 + 0.1).tolist(),
            "history": [{"epoch": 1, "val": {"macro_f1": val_score}}, {"epoch": 2, "val": {"macro_f1": val_score}}],
            "split_hash": "abc"}


def test_importance_compares_trials_at_the_deepest_rung_enough_of_them_reached(tmp_path):
    from results.importance import ALL_METHODS, MIN_TRIALS, importances

    labels = np.array([0, 1] * 20)
    rng = np.random.default_rng(1)
    config = {"evals_per_epoch": 4, "epochs": 2, "rung_grace": 1, "rung_factor": 2}  # rungs 1, 2, 4; last 8
    records = []
    for i in range(10):
        rate = float(np.exp(rng.uniform(np.log(2e-4), np.log(2e-3))))
        stopped_at = [1, 1, 1, 2, 2, 2, 2, 4, 8, 8][i]  # how far ASHA let each trial go
        record = lora_record(f"t{i}", rate, 16, 0.5, labels)
        # At every point the score rises with the learning rate; the last value alone rises with
        # how far the trial got, which is what a comparison at mixed depths would mostly measure.
        record["history"] = [{"eval_point": p, "epoch": p / 4, "val": {"macro_f1": 0.5 + 0.02 * p + 50 * rate}}
                             for p in range(1, stopped_at + 1)]
        record.update(config=config, epochs_run=stopped_at / 4, val=record["history"][-1]["val"])
        records.append(record)
    found = importances(records, "macro_f1")["lora"]
    # Point 2 is the deepest rung that MIN_TRIALS (6) of the 10 reached: 7 trials there.
    assert MIN_TRIALS == 6 and (found["point"], found["epochs"], found["trials"]) == (2, 0.5, 7)
    assert next(iter(found["importances"])) == "learning_rate"

    # Several methods: each with enough trials gets its own study, and all fine-tunes one more
    # over the settings every method draws (the method and its learning rate).
    full = [{**r, "trial_id": f"f{i}", "method": "full", "params": {"method": "full", "learning_rate": 5e-5 + 1e-5 * i,
                                                                    "epochs": 2}} for i, r in enumerate(records[:4])]
    mixed = importances(records + full, "macro_f1")
    assert "note" in mixed["full"] and "at least 6" in mixed["full"]["note"]
    assert set(mixed[ALL_METHODS]["importances"]) == {"method", "learning_rate"}
    assert mixed[ALL_METHODS]["trials"] == 7 + 1  # at point 2: 7 lora trials and 1 of the 4 full ones


def test_importance_names_the_setting_that_drove_the_score_and_refuses_too_few_trials(tmp_path):
    from results.importance import MIN_TRIALS, importances

    labels = np.array([0, 1] * 20)
    rng = np.random.default_rng(0)
    rates = np.exp(rng.uniform(np.log(2e-4), np.log(2e-3), 12))
    # Validation macro-F1 rises with the learning rate; the rank is drawn at random.
    records = [lora_record(f"t{i}", float(rate), int(rng.choice([8, 16, 32])), 0.6 + 100 * rate, labels)
               for i, rate in enumerate(rates)]
    found = importances(records, "macro_f1")
    assert list(found) == ["lora"] and found["lora"]["trials"] == 12
    assert next(iter(found["lora"]["importances"])) == "learning_rate"
    assert found["lora"]["importances"]["learning_rate"] > 0.8
    few = importances(records[:MIN_TRIALS - 1], "macro_f1")
    assert "importances" not in few["lora"] and f"at least {MIN_TRIALS}" in few["lora"]["note"]

    for record in records:
        (tmp_path / record["trial_id"]).mkdir()
        (tmp_path / record["trial_id"] / "record.json").write_text(json.dumps(record))
    out = write_leaderboard(str(tmp_path))
    text = Path(out, "leaderboard.md").read_text()
    assert "## Hyperparameter importance" in text and "| learning_rate |" in text
    assert json.loads(Path(out, "importance.json").read_text()) == json.loads(json.dumps(found))
    assert "importance.png" in Path(out, "index.html").read_text()


def test_text_from_the_data_is_escaped_in_the_page(run):
    hostile = "<script>alert(1)</script>"
    for path in run.glob("*/record.json"):  # the protocol names groups from the data
        record = json.loads(path.read_text())
        record.update(protocol=f"held-out groups: {hostile}")
        path.write_text(json.dumps(record))
    page = (Path(write_leaderboard(run)) / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_failed_baseline_record_ranks_nowhere_and_is_named(run):
    (run / "d").mkdir()
    (run / "d" / "record.json").write_text(json.dumps(
        {"method": "embed-svm", "trial_id": "d", "params": {"C": 1.0}, "config": {}, "split_hash": "abc",
         "status": "failed", "error": "embedding pass ran out of memory"}))
    out = Path(write_leaderboard(run))
    assert [r["trial_id"] for r in rank(load_records(run))] == ["b", "a", "c"]
    assert "embedding pass ran out of memory" in (out / "leaderboard.md").read_text()


def test_the_macro_f1_interval_brackets_the_macro_f1_of_its_test_set():
    from results.leaderboard import bootstrap_macro_f1_interval

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 600)
    prob = np.clip(0.3 * labels + 0.7 * rng.random(600), 0, 1)
    low, high = bootstrap_macro_f1_interval(labels, prob)
    assert low < classification_metrics(labels, prob)["macro_f1"] < high and high - low < 0.1
    assert bootstrap_macro_f1_interval(labels, prob) == (low, high)  # seeded
