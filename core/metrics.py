"""The metrics every trial reports, from labels and the predicted probability of `real` (1), and
the one selection score that ASHA, Optuna, the ranking and export all use."""

from __future__ import annotations

import numpy as np

# --metric choices -> the key of the metric dict they read. macro_f1 is the default: a constant
# predictor scores about 0.41 there, while the study's F1 of `real` gives it about 0.69.
SELECTION_METRICS = {"macro_f1": "macro_f1", "f1_fake": "f1_fake", "f1_real": "f1", "mcc": "mcc",
                     "roc_auc": "roc_auc"}
DEFAULT_METRIC = "macro_f1"
# Below every metric's range (MCC's low end is -1): a classifier that predicts one class for every
# validation review never ranks above one that learned, whatever the metric.
CONSTANT_PREDICTOR_SCORE = -2.0


def classification_metrics(labels, prob_real, threshold: float = 0.5) -> dict:
    """Binary F1 with positive class `real` (as the study reports), plus the rest of the set."""
    # Imported here: every trial process reads this module's constants (through its config), and
    # scikit-learn's import (with scipy) costs more than a second each time.
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        matthews_corrcoef,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = np.asarray(labels, dtype=int)
    prob_real = np.asarray(prob_real, dtype=float)
    predicted = (prob_real >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return {
        "f1": float(f1_score(labels, predicted, pos_label=1, zero_division=0)),
        "f1_fake": float(f1_score(labels, predicted, pos_label=0, zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, predicted)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, pos_label=1, zero_division=0)),
        "recall": float(recall_score(labels, predicted, pos_label=1, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, prob_real)) if both_classes else float("nan"),
        "average_precision": float(average_precision_score(labels, prob_real)) if both_classes else float("nan"),
        # rows: true fake, true real; columns: predicted fake, predicted real
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "n": int(len(labels)),
    }


def prediction_selection_score(labels, prob_real, metric: str = DEFAULT_METRIC) -> float:
    """selection_score(classification_metrics(labels, prob_real), metric), from the confusion
    counts alone (scikit-learn's formulas, without its other metrics): what a search over many
    combinations of predictions, as an ensemble's, scores each one by."""
    if metric == "roc_auc":  # ranks, not counts
        return selection_score(classification_metrics(labels, prob_real), metric)
    labels = np.asarray(labels, dtype=int)
    predicted = (np.asarray(prob_real, dtype=float) >= 0.5).astype(int)
    tp = int(np.sum((labels == 1) & (predicted == 1)))
    tn = int(np.sum((labels == 0) & (predicted == 0)))
    fp = int(np.sum((labels == 0) & (predicted == 1)))
    fn = int(np.sum((labels == 1) & (predicted == 0)))
    if tp + fp == 0 or tn + fn == 0:  # one predicted class: selection_score's constant predictor
        return CONSTANT_PREDICTOR_SCORE
    f1_real = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    f1_fake = 2 * tn / (2 * tn + fn + fp) if tn + fn + fp else 0.0
    if metric == "mcc":
        return selection_score({"mcc": float(matthews_corrcoef_of(tp, tn, fp, fn)),
                                "confusion_matrix": [[tn, fp], [fn, tp]]}, metric)
    values = {"f1": f1_real, "f1_fake": f1_fake, "macro_f1": (f1_real + f1_fake) / 2}
    return selection_score({**values, "confusion_matrix": [[tn, fp], [fn, tp]]}, metric)


def matthews_corrcoef_of(tp: int, tn: int, fp: int, fn: int) -> float:
    denominator = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def predicts_one_class(metrics: dict) -> bool:
    """True when every review got the same predicted label (a column of the confusion matrix is 0)."""
    matrix = np.asarray(metrics.get("confusion_matrix", [[1, 1], [1, 1]]))
    return bool((matrix.sum(axis=0) == 0).any())


def selection_score(metrics: dict, metric: str = DEFAULT_METRIC) -> float:
    """The run's selection metric read from a validation metric dict; a constant predictor gets
    CONSTANT_PREDICTOR_SCORE, and a missing or undefined value (NaN) counts as constant too."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"Unknown selection metric '{metric}'. Choose one of: {', '.join(SELECTION_METRICS)}.")
    value = metrics.get(SELECTION_METRICS[metric])
    if value is None or np.isnan(value) or predicts_one_class(metrics):
        return CONSTANT_PREDICTOR_SCORE
    return float(value)
