"""The leaderboard's plots (matplotlib, PNG): the search's story (the validation selection metric
of every fine-tuning trial against training progress, with ASHA's rungs and where each trial
stopped; the best validation score so far against wall minutes, with TF-IDF's), cost vs F1, ROC
and PR curves, confusion matrix, importances, per group."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from core.metrics import SELECTION_METRICS, selection_score  # noqa: E402
from core.record import is_fine_tune  # noqa: E402
from core.reports import rung_points  # noqa: E402


def write_plots(records: list[dict], rows: list[dict], out: Path, groups: list[dict] | None = None,
                found: dict | None = None) -> list[tuple[str, str]]:
    records = [r for r in records if "val" in r]
    by_path = {r["record_path"]: r for r in records}
    best = {}
    for row in rows:  # rows are ranked, so the first of each method is its best
        best.setdefault(row["method"], by_path[row["record_path"]])
    metric = rows[0]["selection_metric"]
    images = story_plots(records, metric, out)
    images += [
        ("Test F1 against cost", cost_plot(rows, out / "f1_vs_cost.png")),
        ("ROC and precision-recall curves, best of each method", curves_plot(best, out / "roc_pr.png")),
        ("Confusion matrix of the top row", confusion_plot(by_path[rows[0]["record_path"]], out / "confusion.png")),
    ]
    ranked = {m: r for m, r in (found or {}).items() if "importances" in r}
    if ranked:
        images.append(("Hyperparameter importance per method, and the validation metric against each "
                       "method's most important setting", importance_plot(records, ranked, rows[0]["selection_metric"],
                                                                         out / "importance.png")))
    if groups and any(not g.get("one_class") for g in groups):
        images.append(("Test F1 per group, best of each method (95 % intervals; dashed: overall)",
                       groups_plot(groups, out / "f1_per_group.png")))
    return images


STORY_PROGRESS = "The search: validation {metric} of every fine-tuning trial as it trained"
STORY_BEST = "The search: best validation {metric} so far, against wall minutes"


def story_plots(records: list[dict], metric: str, out: Path) -> list[tuple[str, str]]:
    """The search's two pictures (STORY_PROGRESS, STORY_BEST), where a fine-tune reported a point."""
    tuned = [r for r in records if is_fine_tune(r) and r.get("history")]
    if not tuned:
        return []
    images = [(STORY_PROGRESS.format(metric=metric) + " (x: where ASHA or the time budget stopped it; o: "
               "schedule completed; dotted: ASHA's rungs)", progress_plot(tuned, metric, out / "search_progress.png"))]
    timed = [r for r in tuned if all("started_at" in h for h in r["history"])]  # older records keep no clock
    if timed:
        images.append((STORY_BEST.format(metric=metric) + " (dashed: the best TF-IDF baseline's)",
                       best_so_far_plot(timed, records, metric, out / "best_so_far.png")))
    return images


def point_score(point: dict, metric: str) -> float:
    return 100 * point["val"].get(SELECTION_METRICS[metric], np.nan)


def progress_plot(records: list[dict], metric: str, path: Path) -> str:
    """One line per trial over the epochs it trained; its end marked x where it stopped before its
    schedule's end, o where it completed; ASHA's rungs as dotted lines."""
    fig, ax = plt.subplots(figsize=(9, 4.6))
    for record in sorted(records, key=lambda r: str(r.get("trial_id"))):
        epochs = [h["epoch"] for h in record["history"]]
        scores = [point_score(h, metric) for h in record["history"]]
        line, = ax.plot(epochs, scores, linewidth=1, label=f"{record['method']} {record.get('trial_id', '')}")
        stopped = (record.get("epochs_run") or epochs[-1]) < record["params"].get("epochs", epochs[-1])
        ax.plot(epochs[-1:], scores[-1:], "x" if stopped else "o", color=line.get_color(), markersize=7)
    config = records[0].get("config", {})
    per_epoch = config.get("evals_per_epoch", 1)
    last = per_epoch * max(r["params"].get("epochs", 1) for r in records)
    for point in rung_points(config.get("rung_grace", 1), config.get("rung_factor", 2), last):
        ax.axvline(point / per_epoch, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="epochs trained", ylabel=f"validation {metric} (x 100)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1), ncol=1 + len(records) // 18)
    return save(fig, path)


def best_so_far_plot(tuned: list[dict], records: list[dict], metric: str, path: Path) -> str:
    """The best validation score any fine-tune had reached, at each report point's wall time
    (minutes since the first trial started), every point as a dot; TF-IDF's best as a line."""
    start = min(r["history"][0]["started_at"] - r.get("startup_seconds", 0) for r in tuned)
    points = sorted(((h["started_at"] + h.get("train_seconds", 0) + h.get("eval_seconds", 0) - start) / 60,
                     point_score(h, metric)) for r in tuned for h in r["history"])
    minutes = [m for m, _ in points]
    scores = np.array([s for _, s in points])
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.scatter(minutes, scores, s=10, color="lightgrey", label="a report point of a trial")
    ax.step(minutes, np.fmax.accumulate(np.nan_to_num(scores, nan=-np.inf)), where="post", label="best so far")
    tfidf = [r for r in records if r["method"] == "tfidf-logreg" and "val" in r]
    if tfidf:
        best = max(100 * selection_score(r["val"], metric) for r in tfidf)
        ax.axhline(best, color="black", linestyle="--", linewidth=1, label=f"TF-IDF baseline ({best:.2f})")
    ax.set(xlabel="wall minutes since the first trial started", ylabel=f"validation {metric} (x 100)")
    ax.set_ylim(bottom=max(0, np.nanmin(scores) - 5) if np.isfinite(np.nanmin(scores)) else None)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def groups_plot(groups: list[dict], path: Path) -> str:
    groups = [g for g in groups if not g.get("one_class")]  # no F1 to draw: the table has their rates
    names = sorted({g["group"] for g in groups})
    methods = list(dict.fromkeys(g["method"] for g in groups))
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(names) + 1.6))
    step = 0.8 / max(1, len(methods))
    for index, method in enumerate(methods):
        mine = {g["group"]: g for g in groups if g["method"] == method}
        y = [names.index(n) + (index - (len(methods) - 1) / 2) * step for n in names if n in mine]
        f1 = np.array([100 * mine[n]["test_f1"] for n in names if n in mine])
        low = np.array([100 * mine[n]["test_f1_low"] for n in names if n in mine])
        high = np.array([100 * mine[n]["test_f1_high"] for n in names if n in mine])
        line = ax.errorbar(f1, y, xerr=[f1 - low, high - f1], fmt="o", markersize=4, capsize=2, label=method)
        overall = next(iter(mine.values()))["overall_f1"]
        ax.axvline(100 * overall, color=line[0].get_color(), linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("test F1 (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot, never over a group
    return save(fig, path)


def cost_plot(rows: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ax.scatter([r["wall_seconds"] / 60 for r in mine], [100 * r["test_f1"] for r in mine], label=method)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels of a short log axis collide
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


def save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def importance_plot(records: list[dict], found: dict[str, dict], metric: str, path: Path) -> str:
    fig, axes = plt.subplots(len(found), 2, figsize=(10, 3.2 * len(found)), squeeze=False)
    for (bars, scatter), (method, result) in zip(axes, found.items()):
        names = list(result["importances"])[::-1]
        bars.barh(names, [result["importances"][n] for n in names])
        bars.set(title=f"{method}: importance ({result['trials']} trials)", xlabel="share of variance")
        top = list(result["importances"])[0]
        mine = [r for r in records if r["method"] == method and "val" in r and r.get("history")]
        values = [r["params"].get(top) for r in mine]
        scores = [100 * r["val"].get(SELECTION_METRICS[metric], np.nan) for r in mine]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            scatter.scatter(values, scores)
            if top == "learning_rate":
                scatter.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            scatter.scatter([labels.index(str(v)) for v in values], scores)
            scatter.set_xticks(range(len(labels)), labels, fontsize=7)
        scatter.set(title=f"{method}: validation {metric} against {top}", xlabel=top, ylabel=f"val {metric} (x 100)")
    return save(fig, path)
