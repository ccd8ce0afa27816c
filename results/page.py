"""What a person reads first: the leaderboard's headline, and index.html.

The headline names the top row (the best model by the run's validation selection metric), its test
macro-F1 and F1 with their 95 % bootstrap intervals, the best model of the other kind beside it
(the best baseline beside a fine-tune, or the best fine-tune beside a baseline) with McNemar's
exact test on the same test reviews, the split protocol, and the command that exports the top
row. The page's main table holds the columns a person compares first, in percents with intervals;
every column is behind a details element and in leaderboard.csv.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from core.record import FINE_TUNES

METHOD_NAMES = {"full": "full fine-tune", "qlora": "QLoRA adapter", "lora": "LoRA adapter",
                "tfidf-logreg": "TF-IDF + logistic regression", "embed-logreg": "frozen embeddings + logistic regression",
                "embed-svm": "frozen embeddings + RBF-SVM", "embed-mlp": "frozen embeddings + MLP",
                "ensemble": "ensemble"}
METRIC_NAMES = {"macro_f1": "macro-F1", "f1_fake": "F1 (fake)", "f1_real": "F1 (real)", "mcc": "MCC",
                "roc_auc": "ROC AUC"}
# A laptop's width: the page never scrolls sideways; a wide table scrolls inside its own box.
PAGE_STYLE = ("body{font-family:sans-serif;margin:1.5em auto;max-width:1280px;padding:0 1em;line-height:1.4} "
              "table{border-collapse:collapse;font-size:13px;margin:.5em 0} td,th{padding:3px 7px;border:1px solid #ccc;"
              "vertical-align:top} th{background:#f3f3f3;text-align:left} td.n{text-align:right;white-space:nowrap} "
              ".wide{overflow-x:auto;max-width:100%} img{max-width:100%;height:auto} "
              "#headline{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em} "
              "code{background:#eee;padding:1px 4px;word-break:break-all}")


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def interval(value: float, low: float, high: float) -> str:
    return f"{100 * value:.2f} ({100 * low:.1f}-{100 * high:.1f})"


def headline(rows: list[dict], mcnemar, run_dir: str, protocol: str, split_hash: str) -> dict:
    """The headline's facts. `rows`: the ranked leaderboard rows (the ensemble's left out);
    `mcnemar(row_a, row_b)`: the exact test's p on the same test reviews."""
    top = rows[0]
    top_is_fine_tune = top["method"] in FINE_TUNES
    other = next((r for r in rows if (r["method"] in FINE_TUNES) != top_is_fine_tune), None)
    export = f"python -m results.export {run_dir} --out bundle"
    if not top_is_fine_tune:  # the default export takes the best fine-tune; the top row is asked for by id
        export = f"python -m results.export {run_dir} --trial {top['trial']} --out bundle"
    p_value = mcnemar(top, other) if other else None
    return {"top": top, "other": other, "other_kind": "fine-tune" if not top_is_fine_tune else "baseline",
            "p_value": p_value, "significant": p_value is not None and p_value < 0.05,
            "protocol": protocol, "split_hash": split_hash, "export": export,
            "metric": METRIC_NAMES.get(top["selection_metric"], top["selection_metric"])}


def model_text(row: dict) -> str:
    settings = f" ({row['settings']})" if row["settings"] else ""
    return f"{method_name(row['method'])}{settings}, trial {row['trial']}"


def score_text(row: dict) -> str:
    constant = " (it predicts one class for every validation review)" if row["constant_prediction"] else ""
    return (f"test macro-F1 {interval(row['test_macro_f1'], row['test_macro_f1_low'], row['test_macro_f1_high'])}, "
            f"F1 {interval(row['test_f1'], row['test_f1_low'], row['test_f1_high'])}{constant}")


def verdict(facts: dict) -> str:
    if facts["other"] is None:
        return f"No {facts['other_kind']} scored in this run to compare it with."
    other = facts["other"]
    difference = 100 * (facts["top"]["test_macro_f1"] - other["test_macro_f1"])
    significance = ("significant at the 5 % level" if facts["significant"] else
                    "not significant at the 5 % level: on these test reviews the two are not told apart")
    return (f"Best {facts['other_kind']}: {model_text(other)}, {score_text(other)}. Difference in test macro-F1 "
            f"{difference:+.2f} points; exact McNemar test on the same {other['test_n']} test reviews "
            f"p = {facts['p_value']:.3g}, {significance}.")


def headline_markdown(facts: dict) -> str:
    top = facts["top"]
    return (f"**Chosen: {model_text(top)}**, the best of the run by validation {facts['metric']}: "
            f"{score_text(top)} (95 % bootstrap intervals).\n\n{verdict(facts)}\n\nSplit: {facts['protocol']}, "
            f"{top['test_n']} test reviews (hash {facts['split_hash']}). Export it: `{facts['export']}`")


def headline_html(facts: dict) -> str:
    top = facts["top"]
    return (f"<div id='headline'><p><b>Chosen: {escape(model_text(top))}</b>, the best of the run by validation "
            f"{escape(facts['metric'])}: <b>{escape(score_text(top))}</b> (95 % bootstrap intervals).</p>"
            f"<p>{escape(verdict(facts))}</p><p>Split: {escape(facts['protocol'])}, {top['test_n']} test reviews "
            f"(hash {escape(facts['split_hash'])}). Export it: <code>{escape(facts['export'])}</code></p></div>")


def main_table_html(rows: list[dict], metric: str) -> str:
    """The columns a person compares first: percents, intervals, the constant mark only where it applies."""
    name = METRIC_NAMES.get(metric, metric)
    header = ["rank", "model", "settings", "epochs", f"val {name}", "test macro-F1 (95% CI)", "test F1 (95% CI)",
              "p vs top", "minutes"]
    body = []
    for row in rows:
        val = row["val_score"]
        val_text = "" if val is None or np.isnan(val) else f"{100 * val:.2f}"
        epochs = f"{row['epochs_run']:g}/{row['epochs_planned']}" if row.get("epochs_run") else ""
        model = method_name(row["method"]) + ("" if row["trial"] == row["method"] else f" {row['trial']}")
        cells = [(str(row["rank"] or "-"), "n"), (model, ""),
                 (row["settings"], ""), (epochs, "n"),
                 (val_text + (" (constant)" if row["constant_prediction"] else ""), "n"),
                 (interval(row["test_macro_f1"], row["test_macro_f1_low"], row["test_macro_f1_high"]), "n"),
                 (interval(row["test_f1"], row["test_f1_low"], row["test_f1_high"]), "n"),
                 ("" if row["p_vs_top"] is None else f"{row['p_vs_top']:.3f}", "n"),
                 (f"{row['wall_seconds'] / 60:.1f}", "n")]
        body.append("<tr>" + "".join(f"<td class='{css}'>{escape(text)}</td>" if css else f"<td>{escape(text)}</td>"
                                     for text, css in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def cells_table_html(header: list[str], cells: list[list[str]]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in cells)
            + "</tbody></table>")


def write_page(out: Path, *, facts: dict, note: str, rows: list[dict], metric: str, all_columns: tuple,
               extra_notes: list[str], sections: list[str], images: list[tuple[str, str]]) -> None:
    """index.html: headline, main table (every column behind details), notes, the sections already
    rendered as HTML (groups, importance), then the pictures, the search's story first."""
    figures = "\n".join(f'<h2>{escape(title)}</h2><img src="{escape(name)}" alt="{escape(title)}">'
                        for title, name in images)
    notes = "".join(f"<p>{escape(text)}</p>" for text in extra_notes if text)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Leaderboard</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{PAGE_STYLE}</style></head><body>"
        f"<h1>Leaderboard</h1>{headline_html(facts)}<h2>Models, ranked by validation "
        f"{escape(METRIC_NAMES.get(metric, metric))}</h2>{main_table_html(rows, metric)}{notes}"
        f"<details><summary>Every column (also in leaderboard.csv)</summary><p>{escape(note)}</p>"
        f"<div class='wide'>{cells_table_html(*all_columns)}</div></details>"
        + "".join(sections) + figures + "</body></html>")
    (out / "index.html").write_text(page)


def image_markdown(images: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"### {title}\n\n![{title}]({name})" for title, name in images)
