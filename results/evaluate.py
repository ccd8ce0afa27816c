"""A bundle's metrics on a labelled file: does the detector still work on reviews it never saw?

    python -m results.evaluate BUNDLE FILE [--group-col COL] [--out DIR] [--text-col NAME]
                               [--label-col NAME] [--fake-label VALUE] [--trust-pickle] [--trust-remote-code]

FILE: .csv/.csv.gz/.tsv/.parquet/.jsonl or a datasets folder, with a text column and a label
column (CG/OR, fake/real, 0/1 = fake/real, or --fake-label). At the bundle's threshold (0.5, or
the one `results.export --max-fpr` chose): the share of fakes caught (recall of fake), the share
of real reviews flagged (false-positive rate), precision of fake, macro-F1, F1 (of real, as the
leaderboard) and accuracy, each with a 95 % bootstrap interval, and ROC AUC; per group with
--group-col. A file (or group) of one class gets the rate that is defined for it and says why
the others are not. Prints a table; writes DIR/evaluation.json (default: evaluation/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core.data import LABEL_COLUMNS, TEXT_COLUMNS, find_column, map_labels, read_table
from core.errors import DataError, UserError
from core.operating_point import DEFAULT_THRESHOLD, RATES, rates_with_intervals
from results.predict import add_trust_flags, check_trust, predict_texts, read_bundle


def read_labelled(path: str, text_col: str | None, label_col: str | None, fake_label: str | None,
                  group_col: str | None) -> tuple[list[str], np.ndarray, list[str] | None, int]:
    """(texts, labels 0 = fake / 1 = real, groups or None, rows dropped for no text or no label)."""
    if Path(path).suffix.lower() == ".txt":
        raise DataError(f"{path} is a .txt: it has no labels. Evaluate a labelled .csv, .parquet or .jsonl; "
                        "classify a .txt with python -m results.predict.")
    frame = read_table(path)
    texts = frame[find_column(frame, text_col, TEXT_COLUMNS, "text")]
    labels = frame[find_column(frame, label_col, LABEL_COLUMNS, "label")]
    keep = (texts.notna() & (texts.astype(str).str.strip() != "") & labels.notna()
            & (labels.astype(str).str.strip() != ""))
    if not keep.any():
        raise DataError(f"{path} has no rows with both a text and a label.")
    mapped, _ = map_labels(labels[keep], fake_label, one_class=True)
    groups = None
    if group_col is not None:
        column = frame[find_column(frame, group_col, (), "group")]
        groups = column[keep].astype("string").fillna("(missing)").astype(str).tolist()
    return texts[keep].astype(str).tolist(), mapped.to_numpy(), groups, int((~keep).sum())


def evaluate_file(bundle_dir: str, path: str, *, text_col: str | None = None, label_col: str | None = None,
                  fake_label: str | None = None, group_col: str | None = None, trust_pickle: bool = False,
                  trust_remote_code: bool = False) -> dict:
    """The bundle's evaluation on the labelled file, overall and (with group_col) per group."""
    bundle = read_bundle(bundle_dir)
    check_trust(bundle, trust_pickle, trust_remote_code)  # before the file is read: refused at once
    texts, labels, groups, dropped = read_labelled(path, text_col, label_col, fake_label, group_col)
    prob_real = predict_texts(bundle_dir, texts, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code)
    threshold = bundle.get("threshold", DEFAULT_THRESHOLD)
    result = {"bundle": str(bundle_dir), "file": str(path), "rows_without_text_or_label": dropped,
              "threshold_from": "results.export --max-fpr" if "threshold" in bundle else "default",
              "overall": rates_with_intervals(labels, prob_real, threshold)}
    if groups is not None:
        groups = np.asarray(groups)
        result["group_col"] = group_col
        result["by_group"] = {g: rates_with_intervals(labels[groups == g], prob_real[groups == g], threshold)
                              for g in sorted(set(groups.tolist()))}
    return result


def cell(evaluation: dict, name: str) -> str:
    metric = evaluation["metrics"].get(name)
    if metric is None:
        return "n/a"
    return f"{100 * metric['value']:.1f} ({100 * metric['low']:.1f}-{100 * metric['high']:.1f})"


def table(result: dict) -> str:
    """Markdown: a row overall and one per group; n/a cells explained below the table."""
    rows = [("all", result["overall"]), *result.get("by_group", {}).items()]
    lines = ["| reviews | n (fake/real) | " + " | ".join(f"{label} % (95% CI)" for label, _ in RATES.values())
             + " | ROC AUC |", "|---|---:|" + "---:|" * (len(RATES) + 1)]
    for name, evaluation in rows:
        auc = "n/a" if evaluation["roc_auc"] is None else f"{evaluation['roc_auc']:.3f}"
        lines.append(f"| {name} | {evaluation['n']} ({evaluation['n_fake']}/{evaluation['n_real']}) | "
                     + " | ".join(cell(evaluation, metric) for metric in RATES) + f" | {auc} |")
    reasons = {why: None for _, evaluation in rows for why in evaluation["undefined"].values()}
    notes = [f"n/a: {why}." for why in reasons]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="a folder written by python -m results.export")
    parser.add_argument("file", help="labelled reviews to evaluate on")
    parser.add_argument("--group-col", metavar="COLUMN", help="also report each value of this column (e.g. "
                                                              "category, or a generator's name)")
    parser.add_argument("--out", default="evaluation", help="folder for evaluation.json (default: evaluation/)")
    parser.add_argument("--text-col", help="text column of FILE (default: first of text_, text, review)")
    parser.add_argument("--label-col", help="label column of FILE (default: label)")
    parser.add_argument("--fake-label", metavar="VALUE", help="the label value that marks a fake review, for "
                                                               "labels other than CG/OR, fake/real, 0/1")
    add_trust_flags(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; give a folder.")
        result = evaluate_file(args.bundle, args.file, text_col=args.text_col, label_col=args.label_col,
                               fake_label=args.fake_label, group_col=args.group_col, trust_pickle=args.trust_pickle,
                               trust_remote_code=args.trust_remote_code)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=1))
    print(f"{args.file} at threshold {result['overall']['threshold']:.4f} ({result['threshold_from']})"
          + (f"; {result['rows_without_text_or_label']} rows without text or label skipped"
             if result["rows_without_text_or_label"] else "") + ":")
    print(table(result))
    print(f"-> {out / 'evaluation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
