"""The metrics every trial reports, from labels and the predicted probability of `real` (1)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def classification_metrics(labels, prob_real, threshold: float = 0.5) -> dict:
    """Binary F1 with positive class `real` (as the study reports), plus the rest of the set."""
    labels = np.asarray(labels, dtype=int)
    prob_real = np.asarray(prob_real, dtype=float)
    predicted = (prob_real >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return {
        "f1": float(f1_score(labels, predicted, pos_label=1, zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, pos_label=1, zero_division=0)),
        "recall": float(recall_score(labels, predicted, pos_label=1, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, prob_real)) if both_classes else float("nan"),
        "average_precision": float(average_precision_score(labels, prob_real)) if both_classes else float("nan"),
        # rows: true fake, true real; columns: predicted fake, predicted real
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "n": int(len(labels)),
    }
