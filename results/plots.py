"""The leaderboard's plots (matplotlib, PNG): cost vs F1, ROC and PR curves, confusion matrix,
the validation selection metric per epoch (what ASHA compared)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from core.metrics import SELECTION_METRICS  # noqa: E402


def write_plots(records: list[dict], rows: list[dict], out: Path) -> list[tuple[str, str]]:
    records = [r for r in records if "val" in r]
    by_path = {r["record_path"]: r for r in records}
    best = {}
    for row in rows:  # rows are ranked, so the first of each method is its best
        best.setdefault(row["method"], by_path[row["record_path"]])
    images = [
        ("Test F1 against cost", cost_plot(rows, out / "f1_vs_cost.png")),
        ("ROC and precision-recall curves, best of each method", curves_plot(best, out / "roc_pr.png")),
        ("Confusion matrix of the top row", confusion_plot(by_path[rows[0]["record_path"]], out / "confusion.png")),
    ]
    tuned = [r for r in records if r.get("history")]
    if tuned:
        metric = rows[0]["selection_metric"]
        images.append((f"Validation {metric} per epoch (where a line ends early, ASHA or the time budget "
                       "stopped the trial)", epochs_plot(tuned, metric, out / "val_score_per_epoch.png")))
    return images


def cost_plot(rows: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ax.scatter([r["wall_seconds"] / 60 for r in mine], [100 * r["test_f1"] for r in mine], label=method)
    ax.set_xscale("log")
    ax.set_xlabel("train + eval minutes (GPU where it ran on one, else CPU)")
    ax.set_ylabel("test F1 (%)")
    ax.legend(fontsize=8)
    return save(fig, path)


def curves_plot(best: dict[str, dict], path: Path) -> str:
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.2))
    for method, record in best.items():
        labels, prob = np.asarray(record["test_labels"]), np.asarray(record["test_prob_real"])
        fpr, tpr, _ = roc_curve(labels, prob)
        precision, recall, _ = precision_recall_curve(labels, prob)
        roc.plot(fpr, tpr, label=f"{method} (AUC {record['test']['roc_auc']:.3f})")
        pr.plot(recall, precision, label=f"{method} (AP {record['test']['average_precision']:.3f})")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (positive: real)")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (positive: real)")
    roc.legend(fontsize=8)
    pr.legend(fontsize=8)
    return save(fig, path)


def confusion_plot(record: dict, path: Path) -> str:
    matrix = np.asarray(record["test"]["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center")
    ax.set_xticks([0, 1], ["fake", "real"])
    ax.set_yticks([0, 1], ["fake", "real"])
    ax.set(xlabel="predicted", ylabel="true", title=f"{record['method']} {record.get('trial_id', '')}")
    return save(fig, path)


def epochs_plot(records: list[dict], metric: str, path: Path) -> str:
    key = SELECTION_METRICS[metric]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for record in records:
        epochs = [h["epoch"] for h in record["history"]]
        ax.plot(epochs, [100 * h["val"].get(key, np.nan) for h in record["history"]], marker="o",
                label=f"{record['method']} {record.get('trial_id', '')}")
    ax.set(xlabel="epoch", ylabel=f"validation {metric} (x 100)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    return save(fig, path)


def save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
