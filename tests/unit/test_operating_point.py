"""The threshold chosen for a false-positive rate, and the evaluation's metrics on files of one or two classes."""

import numpy as np
import pytest

from core.metrics import classification_metrics
from core.operating_point import flagged_rates, threshold_for_max_fpr
from core.operating_point import rates_with_intervals as evaluate_predictions
from results.evaluate import table


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 300 + [1] * 200)
    prob_real = np.clip(np.where(labels == 1, rng.normal(0.7, 0.15, 500), rng.normal(0.35, 0.15, 500)), 0, 1)
    return labels, prob_real


@pytest.mark.parametrize("max_fpr", [0.0, 0.02, 0.05, 0.2])
def test_the_threshold_flags_at_most_that_share_of_real_reviews_and_no_higher_one_does(scores, max_fpr):
    labels, prob_real = scores
    threshold = threshold_for_max_fpr(labels, prob_real, max_fpr)
    rates = flagged_rates(labels, prob_real, threshold)
    assert rates["real_flagged"] <= max_fpr
    # the next real score up would flag one real review too many: this is the highest allowed threshold
    real = np.sort(prob_real[labels == 1])
    next_up = real[real >= threshold][0]
    assert flagged_rates(labels, prob_real, np.nextafter(next_up, 1))["real_flagged"] > max_fpr
    assert rates["n_fake"] == 300 and rates["n_real"] == 200


def test_a_stricter_rate_catches_fewer_fakes_and_the_threshold_is_what_the_metrics_use(scores):
    labels, prob_real = scores
    loose, strict = (threshold_for_max_fpr(labels, prob_real, rate) for rate in (0.2, 0.01))
    assert strict < loose
    assert flagged_rates(labels, prob_real, strict)["fake_recall"] < flagged_rates(labels, prob_real, loose)["fake_recall"]
    # classification_metrics' confusion at the same threshold says the same
    (caught, missed), (flagged, passed) = classification_metrics(labels, prob_real, strict)["confusion_matrix"]
    assert flagged / (flagged + passed) == flagged_rates(labels, prob_real, strict)["real_flagged"]
    with pytest.raises(ValueError, match="no real reviews"):
        threshold_for_max_fpr(np.zeros(5), np.ones(5), 0.02)


def test_a_file_of_fakes_alone_gets_the_recall_of_fake_and_says_why_the_rest_is_not_defined():
    prob_real = np.array([0.1] * 30 + [0.9] * 10)
    result = evaluate_predictions(np.zeros(40, dtype=int), prob_real)
    assert result["metrics"]["fake_recall"]["value"] == pytest.approx(0.75)
    low, high = result["metrics"]["fake_recall"]["low"], result["metrics"]["fake_recall"]["high"]
    assert 0.55 < low < 0.75 < high < 0.9
    assert set(result["metrics"]) == {"fake_recall"} and result["roc_auc"] is None
    assert result["undefined"]["real_flagged"].startswith("no real reviews")
    assert "needs both classes" in result["undefined"]["macro_f1"]
    assert "n/a: no real reviews here" in table({"overall": result})
    # real reviews alone: the share flagged; at a threshold of 0.95 all of them are
    real_only = evaluate_predictions(np.ones(40, dtype=int), prob_real, threshold=0.95)
    assert set(real_only["metrics"]) == {"real_flagged"} and real_only["metrics"]["real_flagged"]["value"] == 1.0


def test_both_classes_agree_with_the_leaderboards_metrics(scores):
    labels, prob_real = scores
    result = evaluate_predictions(labels, prob_real, threshold=0.5)
    reference = classification_metrics(labels, prob_real)
    for name in ("macro_f1", "f1", "accuracy"):
        assert result["metrics"][name]["value"] == pytest.approx(reference[name])
        assert result["metrics"][name]["low"] <= reference[name] <= result["metrics"][name]["high"]
    assert result["roc_auc"] == pytest.approx(reference["roc_auc"]) and not result["undefined"]
    assert result["metrics"]["fake_recall"]["value"] == pytest.approx(flagged_rates(labels, prob_real)["fake_recall"])
