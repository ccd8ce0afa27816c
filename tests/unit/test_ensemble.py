"""The ensemble of a run's own models: greedy selection with replacement on validation, on canned
records written by the test; its leaderboard row and note."""

import json

import numpy as np

from core.metrics import classification_metrics
from core.record import load_records, write_record
from core.run_folder import RunFolder
from results.ensemble import build_ensemble, greedy_selection
from results.leaderboard import write_leaderboard

RNG = np.random.default_rng(0)
VAL_LABELS = RNG.integers(0, 2, 200)
TEST_LABELS = RNG.integers(0, 2, 300)


def noisy(labels, wrong: np.ndarray) -> np.ndarray:
    """Confident probabilities of real, wrong exactly where `wrong` is True."""
    right = np.where(labels == 1, 0.8, 0.2)
    return np.where(wrong, 1 - right, right)


def record(trial_id: str, method: str, val_prob, test_prob) -> dict:
    return {"method": method, "preset": "minilm", "model": "minilm", "trial_id": trial_id, "params": {},
            "config": {}, "split_hash": "h", "seed": 42, "epochs_run": None, "protocol": "random split",
            "val": classification_metrics(VAL_LABELS, val_prob), "val_labels": VAL_LABELS.tolist(),
            "val_prob_real": list(map(float, val_prob)), "test": classification_metrics(TEST_LABELS, test_prob),
            "test_labels": TEST_LABELS.tolist(), "test_prob_real": list(map(float, test_prob)), "history": [],
            "train_seconds": 1.0, "eval_seconds": 1.0, "device": "cpu", "versions": {}}


def thirds(n: int, part: int) -> np.ndarray:
    """Wrong on one third of the reviews (a different third for each part)."""
    return (np.arange(n) % 3) == part


def test_three_models_wrong_on_different_thirds_vote_their_errors_away():
    # Each alone is right on two thirds; the average of the three is right everywhere: two of
    # three confident votes outweigh the third.
    records = [record(f"m{k}", "full", noisy(VAL_LABELS, thirds(200, k)), noisy(TEST_LABELS, thirds(300, k)))
               for k in range(3)]
    ensemble = build_ensemble(records, "macro_f1")
    assert sorted(ensemble.members) == ["m0", "m1", "m2"] and np.isclose(sum(ensemble.weights), 1)
    assert ensemble.weights == sorted(ensemble.weights, reverse=True)  # most weight first
    assert ensemble.val["macro_f1"] == 1.0 and ensemble.test["macro_f1"] == 1.0
    assert ensemble.better_than_best_member and ensemble.best_member_val_score < 0.7


def test_a_model_that_adds_nothing_leaves_the_best_one_alone():
    best = record("best", "full", noisy(VAL_LABELS, np.zeros(200, bool)), noisy(TEST_LABELS, thirds(300, 0)))
    worse = record("worse", "tfidf-logreg", noisy(VAL_LABELS, thirds(200, 1)), noisy(TEST_LABELS, thirds(300, 1)))
    ensemble = build_ensemble([worse, best], "macro_f1")
    assert ensemble.members == ["best"] and ensemble.weights == [1.0]  # the shorter prefix wins the tie
    assert not ensemble.better_than_best_member
    # chosen on validation only: test is what the chosen member scores there, never a reason to choose
    assert ensemble.test == classification_metrics(TEST_LABELS, best["test_prob_real"])


def test_greedy_picks_with_replacement_and_keeps_the_best_prefix():
    labels = np.array([1, 1, 0, 0])
    probabilities = np.array([[0.9, 0.4, 0.1, 0.1],   # wrong on the second review
                              [0.9, 0.9, 0.6, 0.1],   # wrong on the third
                              [0.1, 0.1, 0.1, 0.1]])  # a constant predictor
    chosen = greedy_selection(labels, probabilities, "macro_f1", rounds=5)
    assert chosen[0] == 0 and 2 not in chosen  # ties between candidates go to the lower row
    assert classification_metrics(labels, probabilities[chosen].mean(0))["macro_f1"] == 1.0


def test_one_candidate_or_records_without_validation_probabilities_make_no_ensemble():
    one = record("a", "full", noisy(VAL_LABELS, thirds(200, 0)), noisy(TEST_LABELS, thirds(300, 0)))
    old = {key: value for key, value in one.items() if key not in ("val_labels", "val_prob_real")}
    assert build_ensemble([one], "macro_f1") is None
    assert build_ensemble([one, {**old, "trial_id": "b"}], "macro_f1") is None


def test_the_leaderboard_adds_an_ensemble_row_and_says_what_validation_says(tmp_path):
    folder = RunFolder.inside(str(tmp_path), "run")
    for k in range(3):
        write_record(folder.trial_record(f"m{k}"), record(
            f"m{k}", "full", noisy(VAL_LABELS, thirds(200, k)), noisy(TEST_LABELS, thirds(300, k))))
    out = tmp_path / "run" / "leaderboard"
    write_leaderboard(folder.path, load_records(folder.path), "macro_f1")
    rows = json.loads((out / "leaderboard.json").read_text())
    assert [row["method"] for row in rows] == ["full"] * 3 + ["ensemble"]
    ensemble = rows[-1]
    assert ensemble["rank"] is None and ensemble["test_macro_f1"] == 1.0 and ensemble["p_vs_top"] < 0.05
    assert ensemble["test_f1_low"] <= ensemble["test_f1"] <= ensemble["test_f1_high"]
    assert sorted(ensemble["members"]) == ["m0", "m1", "m2"]
    assert ensemble["settings"] == ", ".join(f"{m} x{w:.2f}" for m, w in zip(ensemble["members"], ensemble["weights"]))
    page = (out / "leaderboard.md").read_text()
    assert "better than its best member on validation" in page and "| - | ensemble |" in page
    saved = json.loads((out / "ensemble.json").read_text())
    assert len(saved["test_prob_real"]) == 300


def test_the_greedy_selections_fast_score_is_the_selection_score_of_the_full_metrics():
    import warnings

    from core.metrics import SELECTION_METRICS, prediction_selection_score, selection_score

    warnings.simplefilter("ignore")  # scikit-learn on one class of labels (pytest restores the filters)
    rng = np.random.default_rng(3)
    for n in (5, 50, 300):
        for labels in (rng.integers(0, 2, n), np.ones(n, dtype=int)):  # both classes, or one
            for prob in (rng.random(n), np.clip(0.5 * labels + 0.6 * rng.random(n), 0, 1), np.full(n, 0.3)):
                for metric in SELECTION_METRICS:
                    assert prediction_selection_score(labels, prob, metric) == \
                        selection_score(classification_metrics(labels, prob), metric)
