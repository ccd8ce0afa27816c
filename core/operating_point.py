"""A detector's operating point: the decision threshold, and the rates a platform cares about at it.

A review is called fake when its probability of `real` is below the threshold (0.5 unless a bundle
says otherwise, core/metrics.classification_metrics's rule). `fake_recall` is the share of fake
reviews caught; `real_flagged` the share of real reviews called fake (the false-positive rate a
platform answers to its genuine reviewers for). `threshold_for_max_fpr` picks, on validation, the
highest threshold (most fakes caught) that flags at most a given share of real reviews.
"""

from __future__ import annotations

import numpy as np

from core.bootstrap import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, percentile_interval

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


RATES = {  # name -> (what it says, the class it needs, or "both")
    "fake_recall": ("fakes caught", 0),
    "real_flagged": ("real reviews flagged", 1),
    "fake_precision": ("flagged that are fake", "both"),
    "macro_f1": ("macro-F1", "both"),
    "f1": ("F1 (real)", "both"),
    "accuracy": ("accuracy", "both"),
}
WHY_UNDEFINED = {0: "no fake reviews here, so no fake is caught or missed",
                 1: "no real reviews here, so none can be flagged wrongly",
                 "both": "needs both classes; this file (or group) holds one"}


def rates_from(labels: np.ndarray, predicted_real: np.ndarray) -> dict[str, np.ndarray]:
    """Every rate of RATES, for each row of (samples, n) arrays of labels and predictions."""
    fake, flagged = labels == 0, predicted_real == 0
    caught, missed = (fake & flagged).sum(-1), (fake & ~flagged).sum(-1)
    false_flags, passed = (~fake & flagged).sum(-1), (~fake & ~flagged).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1_fake = 2 * caught / (2 * caught + missed + false_flags)
        f1_real = 2 * passed / (2 * passed + false_flags + missed)
        return {"fake_recall": caught / (caught + missed), "real_flagged": false_flags / (false_flags + passed),
                "fake_precision": caught / (caught + false_flags), "macro_f1": (f1_fake + f1_real) / 2,
                "f1": f1_real, "accuracy": (caught + passed) / labels.shape[-1]}


def rates_with_intervals(labels, prob_real, threshold: float = DEFAULT_THRESHOLD, samples: int = BOOTSTRAP_SAMPLES,
                         seed: int = BOOTSTRAP_SEED) -> dict:
    """The RATES at `threshold` with 95 % bootstrap intervals, those the labels' classes leave
    undefined named with why, and ROC AUC: {n, n_fake, n_real, threshold, metrics: {name: {value,
    low, high}}, undefined: {name: why}, roc_auc}."""
    from sklearn.metrics import roc_auc_score

    labels, prob_real = np.asarray(labels, dtype=int), np.asarray(prob_real, dtype=float)
    predicted = (prob_real >= threshold).astype(int)
    held = set(labels.tolist())
    point = rates_from(labels[None], predicted[None])
    index = np.random.default_rng(seed).integers(0, len(labels), size=(samples, len(labels)))
    resamples = rates_from(labels[index], predicted[index])
    metrics, undefined = {}, {}
    for name, (_, needs) in RATES.items():
        if needs == "both" and len(held) < 2 or needs != "both" and needs not in held:
            undefined[name] = WHY_UNDEFINED[needs]
            continue
        if np.isnan(point[name][0]):  # precision of fake when nothing was flagged
            undefined[name] = "nothing was flagged"
            continue
        low, high = percentile_interval(resamples[name][~np.isnan(resamples[name])], 0.95)
        metrics[name] = {"value": float(point[name][0]), "low": low, "high": high}
    return {"n": int(len(labels)), "n_fake": int((labels == 0).sum()), "n_real": int((labels == 1).sum()),
            "threshold": float(threshold), "metrics": metrics, "undefined": undefined,
            "roc_auc": float(roc_auc_score(labels, prob_real)) if len(held) == 2 else None}
