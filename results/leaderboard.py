"""Turn a run folder's trial records into a leaderboard: tables, confidence intervals, plots.

    python -m results.leaderboard RUN_DIR        # a folder, or an s3:// or gs:// URI

Reads only the record.json files under RUN_DIR and writes RUN_DIR/leaderboard/ with
leaderboard.md, .csv, .json, index.html and PNG plots. Rows are grouped by method and ranked by
the run's selection metric on validation (run.json's `metric`, default macro-F1; --metric to
override); a trial that predicts one class for every validation review ranks below every other.
Selection never looks at test. Test F1 comes with a 95 % bootstrap interval, and
McNemar's exact test says whether the top row beats each other method's best on the same reviews.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from core import storage
from core.bootstrap import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, percentile_interval
from core.data import LABEL_NAMES, RANDOM_PROTOCOL
from core.errors import UserError
from core.metrics import DEFAULT_METRIC, SELECTION_METRICS, predicts_one_class, selection_score
from core.operating_point import rates_with_intervals
from core.record import ADAPTER_METHODS, has_scores, is_failed, load_records
from core.run_folder import RunFolder
from results.ensemble import Ensemble, build_ensemble
from results.page import cells_table_html, headline, headline_markdown, image_markdown, write_page

# The importance section (Optuna) and the plots (matplotlib) are imported where the page is
# rendered: the search's console and export read this module's tables without them.

GROUP_NOTE = ("Test F1 of each method's best trial on each group's test reviews, with a 95 % bootstrap "
              "interval; ▼ marks a group whose whole interval lies below the trial's overall one. A group "
              "of one class (a generator's fakes) shows the share of its fakes caught (or of its real "
              "reviews flagged) instead, at threshold 0.5.")


def scored(records: list[dict]) -> list[dict]:
    """Records with metrics: every finished trial, and failed ones that reached a report point first."""
    return [r for r in records if has_scores(r)]


def failed(records: list[dict]) -> list[dict]:
    return [r for r in records if is_failed(r)]


def run_metric(run_dir: str) -> str:
    """The selection metric the search in `run_dir` was started with (run.json), else the default."""
    return (RunFolder.at(run_dir).read_state() or {}).get("metric", DEFAULT_METRIC)


def rank(records: list[dict], metric: str = DEFAULT_METRIC) -> list[dict]:
    """Grouped by method (best method first), each group ranked by the validation selection score;
    constant predictors score below every metric's range, so they come last in their group."""
    ranked = scored(records)
    if not ranked:
        raise UserError("No trial reached its first report point, so there is nothing to rank. "
                        + " ".join(f"Trial {r.get('trial_id')} failed: {r.get('error')}" for r in failed(records)))
    score = {id(r): selection_score(r["val"], metric) for r in ranked}
    best = {}
    for r in ranked:
        best[r["method"]] = max(best.get(r["method"], -np.inf), score[id(r)])
    return sorted(ranked, key=lambda r: (-best[r["method"]], r["method"], -score[id(r)]))


def f1_from_counts(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator, dtype=float), where=denominator > 0)


def resampled(labels, prob_real, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions at 0.5) of `samples` test sets drawn with replacement, one a row."""
    labels = np.asarray(labels, dtype=int)
    predicted = (np.asarray(prob_real) >= 0.5).astype(int)
    index = np.random.default_rng(seed).integers(0, len(labels), size=(samples, len(labels)))
    return labels[index], predicted[index]


def bootstrap_f1_interval(labels, prob_real, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                          level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of test F1 (positive class real) over resampled test sets."""
    y, p = resampled(labels, prob_real, samples, seed)
    return percentile_interval(f1_from_counts((y & p).sum(1), ((1 - y) & p).sum(1), (y & (1 - p)).sum(1)), level)


def bootstrap_macro_f1_interval(labels, prob_real, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                                level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of test macro-F1 (the mean of both classes' F1) over resampled test sets."""
    y, p = resampled(labels, prob_real, samples, seed)
    real = f1_from_counts((y & p).sum(1), ((1 - y) & p).sum(1), (y & (1 - p)).sum(1))
    fake = f1_from_counts(((1 - y) & (1 - p)).sum(1), (y & (1 - p)).sum(1), ((1 - y) & p).sum(1))
    return percentile_interval((real + fake) / 2, level)


def mcnemar_p(labels, prob_a, prob_b) -> float:
    """Exact McNemar test on the reviews where exactly one of two classifiers is right."""
    labels = np.asarray(labels)
    right_a = (np.asarray(prob_a) >= 0.5).astype(int) == labels
    right_b = (np.asarray(prob_b) >= 0.5).astype(int) == labels
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def describe_params(record: dict) -> str:
    params = record.get("params", {})
    if record["method"] in ADAPTER_METHODS:
        keys = ("target_modules", "lora_r", "lora_alpha", "use_rslora", "learning_rate", "epochs")
    elif record["method"] == "full":
        keys = ("learning_rate", "epochs")
    else:
        keys = tuple(params)
    parts = []
    for key in keys:
        if key in params:
            value = params[key]
            parts.append(f"{key}={value:.2g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def leaderboard_rows(records: list[dict], metric: str = DEFAULT_METRIC) -> list[dict]:
    ranked = rank(records, metric)
    top = ranked[0]
    best_of_method = {}
    for r in ranked:
        best_of_method.setdefault(r["method"], r)
    rows = []
    for position, r in enumerate(ranked, 1):
        p_value = None
        if r is best_of_method[r["method"]] and r is not top:
            if r["test_labels"] != top["test_labels"]:
                raise UserError("Records hold test rows in different orders; they cannot be paired.")
            p_value = mcnemar_p(top["test_labels"], top["test_prob_real"], r["test_prob_real"])
        rows.append({
            "rank": position,
            "trial": r.get("trial_id", ""),
            "method": r["method"],
            "model": r.get("model", ""),
            "settings": describe_params(r),
            **score_fields(r["val"], r["test"], metric, r["test_labels"], r["test_prob_real"]),
            "epochs_run": r.get("epochs_run"),
            "epochs_planned": r.get("params", {}).get("epochs") if r.get("epochs_run") else None,
            **cost_fields([r]),
            "gpu_peak_mb": r.get("gpu_peak_mb"),  # a record from before the two keys: core.record.upgrade_record
            "cpu_peak_rss_mb": r.get("cpu_peak_rss_mb"),
            "trainable_params": r.get("trainable_params"),
            "adapter_bytes": r.get("adapter_bytes"),
            "p_vs_top": p_value,
            "record_path": r["record_path"],
        })
    return rows


def score_fields(val: dict, test: dict, metric: str, test_labels, test_prob_real) -> dict:
    """A row's scores: the selection metric on validation and test, and test's metrics with the
    bootstrap intervals of its F1 and macro-F1."""
    low, high = bootstrap_f1_interval(test_labels, test_prob_real)
    macro_low, macro_high = bootstrap_macro_f1_interval(test_labels, test_prob_real)
    return {
        "selection_metric": metric,
        "val_score": val.get(SELECTION_METRICS[metric]),
        "constant_prediction": predicts_one_class(val),
        "val_f1": val["f1"],
        "test_score": test.get(SELECTION_METRICS[metric]),
        "test_f1": test["f1"],
        "test_f1_low": low,
        "test_f1_high": high,
        "test_macro_f1": test["macro_f1"],
        "test_macro_f1_low": macro_low,
        "test_macro_f1_high": macro_high,
        "test_n": len(test_labels),
        "test_accuracy": test["accuracy"],
        "test_precision": test["precision"],
        "test_recall": test["recall"],
        "test_roc_auc": test["roc_auc"],
        "test_average_precision": test["average_precision"],
    }


def cost_fields(records: list[dict]) -> dict:
    """What the records' training and scoring took together: wall seconds, and its minutes on a
    GPU or a CPU."""
    seconds = sum(r.get("train_seconds", 0) + r.get("eval_seconds", 0) for r in records)
    on_gpu = any(r.get("device", "cpu") != "cpu" for r in records)
    return {"wall_seconds": seconds, "gpu_minutes": seconds / 60 if on_gpu else 0.0,
            "cpu_minutes": 0.0 if on_gpu else seconds / 60}


def ensemble_row(ensemble: Ensemble, records: list[dict], rows: list[dict]) -> dict:
    """The ensemble as a leaderboard row, unranked (it is chosen on the same validation reviews its
    score is read from): its members and weights as settings, its test metrics with the bootstrap
    interval, McNemar against the top single model; its cost is its members' together."""
    by_id = {str(r["trial_id"]): r for r in records}
    members = [by_id[member] for member in ensemble.members]
    top = by_id[str(rows[0]["trial"])]
    return {
        "rank": None, "trial": "ensemble", "method": "ensemble", "model": "", "settings": ensemble.describe(),
        **score_fields(ensemble.val, ensemble.test, ensemble.metric, ensemble.test_labels, ensemble.test_prob_real),
        "epochs_run": None, "epochs_planned": None, **cost_fields(members),
        "gpu_peak_mb": None, "cpu_peak_rss_mb": None,
        "trainable_params": sum(m.get("trainable_params") or 0 for m in members),
        "adapter_bytes": sum(m.get("adapter_bytes") or 0 for m in members),
        "p_vs_top": mcnemar_p(top["test_labels"], top["test_prob_real"], ensemble.test_prob_real),
        "record_path": None, "members": ensemble.members, "weights": ensemble.weights,
    }


def ensemble_note(ensemble: Ensemble) -> str:
    """One line under the table: what the ensemble is, and whether validation says to use it."""
    verdict = ("better than its best member on validation" if ensemble.better_than_best_member else
               f"no better than its best member ({ensemble.best_member}) on validation: use that model alone")
    return (f"Ensemble: greedy selection with replacement over every model's validation probabilities "
            f"({ensemble.rounds} rounds, best prefix), weights = picks / size; validation {ensemble.metric} "
            f"{100 * ensemble.val_score:.2f} against {100 * ensemble.best_member_val_score:.2f} for its best "
            f"member: {verdict}. Export it with `python -m results.export RUN --ensemble --out DIR`.")


def table_rows(records: list[dict], metric: str) -> tuple[list[dict], Ensemble | None]:
    """The leaderboard's rows: every scored record ranked, then the ensemble's (when there is one)."""
    rows = leaderboard_rows(records, metric)
    ensemble = build_ensemble(records, metric)
    return (rows + [ensemble_row(ensemble, records, rows)] if ensemble else rows), ensemble


def group_rows(records: list[dict], rows: list[dict]) -> list[dict]:
    """Test F1 per group of each method's best trial, with 95 % bootstrap intervals. A group is
    flagged `below_overall` when its whole interval lies below the trial's overall interval."""
    by_path = {r["record_path"]: r for r in records}
    out = []
    seen = set()
    for row in rows:  # ranked: the first row of a method is its best
        record = by_path[row["record_path"]]
        if row["method"] in seen or "test_group" not in record:
            continue
        seen.add(row["method"])
        labels, prob, groups = (np.asarray(record[k]) for k in ("test_labels", "test_prob_real", "test_group"))
        for group in sorted(set(groups)):
            mine = groups == group
            low, high = bootstrap_f1_interval(labels[mine], prob[mine])
            entry = {"method": row["method"], "trial": row["trial"], "group": str(group), "n": int(mine.sum()),
                     "test_f1": record["test_by_group"][str(group)]["f1"], "test_f1_low": low,
                     "test_f1_high": high, "overall_f1": row["test_f1"], "overall_low": row["test_f1_low"],
                     "overall_high": row["test_f1_high"], "below_overall": bool(high < row["test_f1_low"])}
            classes = set(labels[mine].tolist())
            if len(classes) == 1:  # F1 of real says nothing of a group of fakes: the share called right does
                (label,) = classes
                evaluation = rates_with_intervals(labels[mine], prob[mine])
                name = "fake_recall" if label == 0 else "real_flagged"
                entry.update(one_class=LABEL_NAMES[label], rate_name=name, **{
                    f"rate{suffix}": evaluation["metrics"][name][key]
                    for suffix, key in (("", "value"), ("_low", "low"), ("_high", "high"))}, below_overall=False)
            out.append(entry)
    return out


def group_cell(g: dict) -> str:
    """A group's F1 (95 % CI) with ▼ where it lies below overall; a group of one class: the share of
    its fakes caught, or of its real reviews flagged."""
    if g.get("one_class"):
        what = "fakes caught" if g["rate_name"] == "fake_recall" else "real flagged"
        return f"{what} {100 * g['rate']:.1f} % ({100 * g['rate_low']:.1f}-{100 * g['rate_high']:.1f})"
    return (f"{100 * g['test_f1']:.2f} ({100 * g['test_f1_low']:.1f}-{100 * g['test_f1_high']:.1f})"
            f"{' ▼' if g['below_overall'] else ''}")


def group_table(groups: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Groups as rows, each method's best as a column: F1 (95 % CI); ▼ where the whole interval
    lies below that trial's overall interval; a last row with the overall figures."""
    methods = list(dict.fromkeys(g["method"] for g in groups))
    cells = {(g["group"], g["method"]): g for g in groups}
    sizes = {g["group"]: g["n"] for g in groups}
    header = ["group", "n", *methods]
    rows = []
    for name in sorted(sizes):
        row = [name, str(sizes[name])]
        for method in methods:
            g = cells.get((name, method))
            row.append("" if g is None else group_cell(g))
        rows.append(row)
    overall = {g["method"]: g for g in groups}
    rows.append(["all groups", str(sum(sizes.values()))]
                + [f"{100 * overall[m]['overall_f1']:.2f} ({100 * overall[m]['overall_low']:.1f}-"
                   f"{100 * overall[m]['overall_high']:.1f})" for m in methods])
    return header, rows


def group_markdown(groups: list[dict]) -> str:
    header, rows = group_table(groups)
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "---|" * (len(header) - 2)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def format_table(records: list[dict], metric: str = DEFAULT_METRIC) -> str:
    """The short console table that ends every search."""
    lines = [f"| rank | trial | method | settings | epochs | val {metric} | test {metric} | test F1 (95% CI) | minutes |",
             "|---:|---|---|---|---:|---:|---:|---|---:|"]
    rows, ensemble = table_rows(records, metric)
    for row in rows:
        lines.append(
            f"| {row['rank'] or '-'} | {row['trial']} | {row['method']} | {row['settings']} | {epochs_text(row)} | "
            f"{score_text(row['val_score'], row['constant_prediction'])} | {score_text(row['test_score'])} | {ci_text(row)} | "
            f"{row['wall_seconds'] / 60:.1f} |")
    return "\n".join(lines + ([f"\n{ensemble_note(ensemble)}"] if ensemble else []) + failure_lines(records))


def score_text(value, constant: bool = False) -> str:
    """A selection-metric cell: x 100 like every F1 here; a constant predictor is marked."""
    text = "" if value is None or np.isnan(value) else f"{100 * value:.2f}"
    return f"{text} (constant)" if constant else text


def failure_lines(records: list[dict]) -> list[str]:
    return [f"\nTrial {r.get('trial_id')} ({r['method']}) failed: {r.get('error')}" for r in failed(records)]


def epochs_text(row: dict) -> str:
    return f"{row['epochs_run']:g}/{row['epochs_planned']}" if row["epochs_run"] else ""


def ci_text(row: dict) -> str:
    return f"{100 * row['test_f1']:.2f} ({100 * row['test_f1_low']:.1f}-{100 * row['test_f1_high']:.1f})"


def table_cells(rows: list[dict], metric: str) -> tuple[list[str], list[list[str]]]:
    """Every column of every row, as text: leaderboard.md's table and the page's full one."""
    def number(value, scale=1.0, digits=2):
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{scale * value:.{digits}f}"

    header = ["rank", "method", "model", "settings", f"val {metric}", f"test {metric}", "val F1", "test F1 (95% CI)",
              "p vs top", "macro-F1", "acc", "prec", "rec", "ROC AUC", "AP", "epochs", "wall min", "GPU min",
              "GPU peak MB", "CPU RSS MB", "trainable", "adapter MB"]
    cells = [[
        str(row["rank"] or "-"), row["method"], Path(str(row["model"])).name, row["settings"],
        score_text(row["val_score"], row["constant_prediction"]), score_text(row["test_score"]),
        number(row["val_f1"], 100), ci_text(row), number(row["p_vs_top"], digits=3),
        number(row["test_macro_f1"], 100), number(row["test_accuracy"], 100),
        number(row["test_precision"], 100), number(row["test_recall"], 100),
        number(row["test_roc_auc"], digits=4), number(row["test_average_precision"], digits=4),
        epochs_text(row), number(row["wall_seconds"] / 60, digits=1), number(row["gpu_minutes"], digits=1),
        number(row["gpu_peak_mb"], digits=0), number(row["cpu_peak_rss_mb"], digits=0),
        f"{row['trainable_params'] or 0:,}",
        number((row["adapter_bytes"] or 0) / 2**20, digits=2),
    ] for row in rows]
    return header, cells


def markdown(rows: list[dict], metric: str) -> str:
    header, cells = table_cells(rows, metric)
    lines = ["| " + " | ".join(header) + " |",
             "|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def write_leaderboard(run_dir: str, records: list[dict] | None = None, metric: str | None = None) -> str:
    """Write RUN_DIR/leaderboard/ (built in a local folder, then copied, so a URI works too) from
    `records`, or from the run folder's records when not given, ranked by `metric` (default: the
    run's own)."""
    records = records if records is not None else load_records(run_dir)
    metric = metric or run_metric(run_dir)
    with tempfile.TemporaryDirectory() as folder:
        render(records, Path(folder), metric, run_dir)
        out = RunFolder.at(run_dir).leaderboard
        storage.upload(folder, out)
    return out


def render(records: list[dict], out: Path, metric: str, run_dir: str = "RUN") -> None:
    all_rows, ensemble = table_rows(records, metric)
    rows = [row for row in all_rows if row["record_path"]]  # the records' own, for groups and plots
    table = markdown(all_rows, metric)
    if ensemble:
        (out / "ensemble.json").write_text(json.dumps(ensemble.to_json(), indent=1))
    note = (f"Ranked by validation {metric} within method groups (a trial that predicts one class for "
            "every validation review, marked (constant), ranks last); F1 is the study's (positive "
            "class real), test F1 with a 95 % bootstrap interval "
            f"({BOOTSTRAP_SAMPLES} resamples); 'p vs top': exact McNemar test of each method's best "
            "against the top row on the same test reviews. Split hash: " + records[0]["split_hash"])
    protocol = records[0].get("protocol", RANDOM_PROTOCOL)
    note += f". Test protocol: {protocol}"
    by_path = {r["record_path"]: r for r in records}

    def paired_p(a: dict, b: dict) -> float:
        first, second = by_path[a["record_path"]], by_path[b["record_path"]]
        return mcnemar_p(first["test_labels"], first["test_prob_real"], second["test_prob_real"])

    facts = headline(rows, paired_p, run_dir, protocol, records[0]["split_hash"])
    failures = "\n".join(failure_lines(records))
    groups = group_rows(records, rows)
    group_section = ""
    if groups:
        group_section = f"\n## Per group\n\n{GROUP_NOTE}\n\n{group_markdown(groups)}\n"
        pd.DataFrame(groups).to_csv(out / "per_group.csv", index=False)
        (out / "per_group.json").write_text(json.dumps(groups, indent=1))
    from results.importance import importance_markdown, importances

    found = importances(records, metric)
    importance_section = ""
    if found:
        importance_section = f"\n## Hyperparameter importance\n\n{importance_markdown(found, metric)}\n"
        (out / "importance.json").write_text(json.dumps(found, indent=1))
    from results.plots import write_plots

    images = write_plots(records, rows, out, groups, found)
    ensemble_text = f"\n{ensemble_note(ensemble)}\n" if ensemble else ""
    (out / "leaderboard.md").write_text(
        f"# Leaderboard\n\n{headline_markdown(facts)}\n\n{note}\n\n{table}\n{ensemble_text}{failures}\n"
        f"{group_section}{importance_section}\n## Plots\n\n{image_markdown(images)}\n")
    pd.DataFrame(all_rows).to_csv(out / "leaderboard.csv", index=False)
    (out / "leaderboard.json").write_text(json.dumps(all_rows, indent=1))
    sections = []
    if groups:
        sections.append(f"<h2>Per group</h2><p>{escape(GROUP_NOTE)}</p><div class='wide'>"
                        f"{cells_table_html(*group_table(groups))}</div>")
    if found:  # every text below comes from the data or the records (group names, settings): escaped
        sections.append("<h2>Hyperparameter importance</h2>" + "".join(
            f"<p><b>{escape(method)}</b>: {escape(result['note'])}.</p>" if "note" in result else
            f"<p><b>{escape(method)}</b>: {result['trials']} trials at report point {result['point']} "
            f"({result['epochs']:g} epochs)</p>"
            + cells_table_html(["setting", "importance"], [[k, f"{v:.3f}"] for k, v in result["importances"].items()])
            for method, result in found.items()))
    write_page(out, facts=facts, note=note, rows=all_rows, metric=metric, all_columns=table_cells(all_rows, metric),
               extra_notes=[ensemble_note(ensemble) if ensemble else "", failures], sections=sections, images=images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by python -m tune.search")
    parser.add_argument("--metric", choices=list(SELECTION_METRICS),
                        help="rank by this validation metric (default: the one the search chose by)")
    args = parser.parse_args(argv)
    try:
        out = write_leaderboard(args.run_dir, metric=args.metric)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(storage.read_text(storage.join(out, "leaderboard.md")))
    print(f"Written: {out}/ (leaderboard.md, .csv, .json, index.html, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
