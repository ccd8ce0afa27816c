"""A detector's operating point: the decision threshold, and the rates a platform cares about at it.

A review is called fake when its probability of `real` is below the threshold (0.5 unless a bundle
says otherwise, core/metrics.classification_metrics's rule). `fake_recall` is the share of fake
reviews caught; `real_flagged` the share of real reviews called fake (the false-positive rate a
platform answers to its genuine reviewers for). `threshold_for_max_fpr` picks, on validation, the
highest threshold (most fakes caught) that flags at most a given share of real reviews.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5


def flagged_rates(labels, prob_real, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """fake_recall and real_flagged at `threshold` (None for a class the labels do not hold), and
    how many reviews of each class they count."""
    labels = np.asarray(labels, dtype=int)
    flagged = np.asarray(prob_real, dtype=float) < threshold
    n_fake, n_real = int((labels == 0).sum()), int((labels == 1).sum())
    return {
        "threshold": float(threshold),
        "fake_recall": float(flagged[labels == 0].mean()) if n_fake else None,
        "real_flagged": float(flagged[labels == 1].mean()) if n_real else None,
        "n_fake": n_fake,
        "n_real": n_real,
    }


def threshold_for_max_fpr(labels, prob_real, max_fpr: float) -> float:
    """The highest threshold at which at most `max_fpr` of the real reviews among `labels` are called
    fake, placed halfway to the next lower validation score, so a real review scored a little below
    the validation's lowest allowed one is not flagged at once."""
    if not 0 <= max_fpr < 1:
        raise ValueError(f"max_fpr {max_fpr} is not in [0, 1)")
    labels, prob_real = np.asarray(labels, dtype=int), np.asarray(prob_real, dtype=float)
    real = np.sort(prob_real[labels == 1])
    if len(real) == 0:
        raise ValueError("no real reviews to measure the false-positive rate on")
    allowed = int(np.floor(max_fpr * len(real) + 1e-9))  # real reviews that may be flagged
    limit = real[allowed]  # a threshold at or below it flags at most `allowed` of them
    below = prob_real[prob_real < limit]
    return float((limit + below.max()) / 2) if len(below) else float(limit)
