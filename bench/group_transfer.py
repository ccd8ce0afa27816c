"""Do detectors transfer to product categories they never saw? Leave-one-category-out against the
standard split, same configuration, same training size, same machine.

    python bench/group_transfer.py --data ../shared/data/fake_reviews/fake_reviews_dataset.csv.gz

For the standard (random, stratified) split and then for each category held out
(`--test-groups CATEGORY`, the product's own protocol: tune.prepare.prepare_data), it trains

- TF-IDF + logistic regression (C = 1, the baseline grid's middle point), and
- one fine-tune with the minilm preset's first seeded configuration (full fine-tune, learning
  rate 5e-5, batch 16; search_spaces/minilm.py SEEDS), through the trial's own training
  function (trainables.training.fine_tune; Ray is not needed),

on a stratified subsample of the training reviews (--train-rows; the held-out runs draw them from
the other nine categories). In-distribution F1 of a category is the standard split's test F1 on
that category's test reviews (the record's per-group metrics); held-out F1 is the test F1 when
that category is all of test and none of train. Intervals: 95 % bootstrap (results.leaderboard).

Writes OUT/results.json, OUT/results.md and OUT/transfer.png (default OUT: bench/results/group-transfer).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import load_reviews  # noqa: E402
from results.leaderboard import group_rows, leaderboard_rows  # noqa: E402
from search_spaces import load_preset  # noqa: E402
from trainables.baselines import BaselineConfig, run_baseline  # noqa: E402
from trainables.config import FineTuneConfig  # noqa: E402
from trainables.model import load_tokenizer  # noqa: E402
from trainables.training import fine_tune  # noqa: E402
from tune.prepare import prepare_data  # noqa: E402
from tune.profiles import RunProfile  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"
METHODS = ("tfidf-logreg", "full")


def run_protocol(data: str, held_out: str | None, args, tokenizer, folder: Path) -> dict:
    """Train both methods on one split; return their records' test results."""
    rows = {"train": args.train_rows, "val": args.val_rows, "test": args.test_rows}
    profile = RunProfile("transfer", 1, rows, args.max_length, epochs=args.epochs)
    prepared = prepare_data(data, profile, tokenizer, "minilm", str(folder),
                            test_groups=[held_out] if held_out else None)
    seed = load_preset("minilm").SEEDS[0]
    config = FineTuneConfig(preset="minilm", model=args.model, epochs=args.epochs, cpus_per_worker=args.threads,
                            run_dir=prepared.run_dir, tokens_file=prepared.tokens_file,
                            split_hash=prepared.split_hash, max_length=prepared.max_length,
                            **load_preset("minilm").DEFAULTS, **seed)
    started = time.perf_counter()
    records = {
        "full": fine_tune(config, str(folder / "full.json"), "full", torch.device("cpu")),
        "tfidf-logreg": run_baseline(BaselineConfig(method="tfidf-logreg", C=1.0, data_dir=prepared.data_dir,
                                                    split_hash=prepared.split_hash),
                                     str(folder / "tfidf" / "record.json")),
    }
    out = {"protocol": prepared.protocol, "rows": prepared.rows, "split_hash": prepared.split_hash,
           "seconds": time.perf_counter() - started, "methods": {}}
    listed = [{**record, "record_path": method} for method, record in records.items()]
    per_group = group_rows(listed, leaderboard_rows(listed))  # the leaderboard's own per-group figures
    for method, record in records.items():
        out["methods"][method] = {
            "test_f1": record["test"]["f1"], "test_macro_f1": record["test"]["macro_f1"], "val_f1": record["val"]["f1"],
            "per_group": {g["group"]: {"n": g["n"], "f1": g["test_f1"], "f1_low": g["test_f1_low"],
                                       "f1_high": g["test_f1_high"],
                                       "macro_f1": record["test_by_group"][g["group"]]["macro_f1"]}
                          for g in per_group if g["method"] == method}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default="minilm", help="the fine-tuned model (default: the packaged MiniLM)")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--val-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=None,
                        help="cap on test reviews of each split (default: all of them)")
    parser.add_argument("--max-length", type=int, default=256, help="token cap, as the cpu profile's")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--categories", nargs="*", help="hold out only these (default: every category)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "group-transfer"))
    args = parser.parse_args()

    frame, _ = load_reviews(args.data)
    categories = args.categories or sorted(frame["group"].unique())
    tokenizer = load_tokenizer(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d"),
              "torch": torch.__version__, "threads": args.threads, "train_rows": args.train_rows,
              "epochs": args.epochs, "max_length": args.max_length, "fine_tune": load_preset("minilm").SEEDS[0],
              "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for held_out in [None, *categories]:
            name = held_out or "standard"
            result["runs"][name] = run_protocol(args.data, held_out, args, tokenizer, Path(tmp) / name)
            shown = {m: round(100 * r["test_f1"], 2) for m, r in result["runs"][name]["methods"].items()}
            print(f"{name}: test F1 {shown} ({result['runs'][name]['seconds']:.0f} s)", flush=True)
            (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(summary(result, categories))
    plot(result, categories, out / "transfer.png")
    print(summary(result, categories))


def comparison(result: dict, categories: list[str]) -> list[dict]:
    standard = result["runs"]["standard"]["methods"]
    rows = []
    for category in categories:
        row = {"category": category}
        for method in METHODS:
            inside = standard[method]["per_group"][category]
            held = result["runs"][category]["methods"][method]["per_group"][category]
            row[method] = {"in": inside, "held_out": held, "drop": inside["f1"] - held["f1"]}
        rows.append(row)
    return rows


def summary(result: dict, categories: list[str]) -> str:
    def cell(g):
        return f"{100 * g['f1']:.2f} ({100 * g['f1_low']:.1f}-{100 * g['f1_high']:.1f})"

    standard = result["runs"]["standard"]
    lines = [
        "# Leave-one-category-out: do detectors transfer to unseen product categories?", "",
        f"`{result['command']}` on {result['date']}: 2-core CPU, torch {result['torch']}, {result['threads']} threads. "
        f"Train {result['train_rows']:,} reviews (stratified subsample; the held-out runs draw them from the other "
        f"nine categories), validation {standard['rows'].get('val')}, max length {result['max_length']}. "
        f"Fine-tune: MiniLM-L6, {result['fine_tune']}, {result['epochs']} epochs. TF-IDF: word 1-2 + character 2-5 "
        "grams, logistic regression C = 1. F1 of `real` with 95 % bootstrap intervals.", "",
        f"Standard split, all categories: fine-tune {100 * standard['methods']['full']['test_f1']:.2f}, TF-IDF "
        f"{100 * standard['methods']['tfidf-logreg']['test_f1']:.2f} test F1 ({standard['rows'].get('test')} reviews).", "",
        "| held-out category | n in / held out | fine-tune in-distribution | fine-tune held out | drop "
        "| TF-IDF in-distribution | TF-IDF held out | drop |",
        "|---|---:|---|---|---:|---|---|---:|",
    ]
    rows = comparison(result, categories)
    for row in sorted(rows, key=lambda r: -r["full"]["drop"]):
        full, tfidf = row["full"], row["tfidf-logreg"]
        lines.append(f"| {row['category']} | {full['in']['n']} / {full['held_out']['n']} | {cell(full['in'])} | {cell(full['held_out'])} | "
                     f"{100 * full['drop']:+.2f} | {cell(tfidf['in'])} | {cell(tfidf['held_out'])} | "
                     f"{100 * tfidf['drop']:+.2f} |")
    for method, name in (("full", "fine-tune"), ("tfidf-logreg", "TF-IDF")):
        drops = [100 * r[method]["drop"] for r in rows]
        held = [100 * r[method]["held_out"]["f1"] for r in rows]
        lines.append(f"\n{name}: mean held-out F1 {np.mean(held):.2f}, mean drop {np.mean(drops):+.2f} points "
                     f"(largest {max(drops):+.2f}, {rows[int(np.argmax(drops))]['category']}).")
    lines.append("\nIn-distribution n per category is that category's share of the standard split's test reviews; "
                 "held-out n is every review of the category (or --test-rows of them).")
    return "\n".join(lines) + "\n"


def plot(result: dict, categories: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison(result, categories)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.8))
    names = [r["category"].removesuffix("_5").replace("_", " ") for r in rows]
    for offset, (method, label, color) in enumerate((("full", "fine-tune", "tab:blue"),
                                                     ("tfidf-logreg", "TF-IDF", "tab:orange"))):
        for kind, marker, shift in (("in", "o", -0.12), ("held_out", "s", 0.12)):
            y = np.arange(len(rows)) + shift + (offset - 0.5) * 0.36
            f1 = np.array([100 * r[method][kind]["f1"] for r in rows])
            low = np.array([100 * r[method][kind]["f1_low"] for r in rows])
            high = np.array([100 * r[method][kind]["f1_high"] for r in rows])
            ax.errorbar(f1, y, xerr=[f1 - low, high - f1], fmt=marker, color=color, capsize=2, markersize=4,
                        alpha=1.0 if kind == "held_out" else 0.5,
                        label=f"{label}, {'held out' if kind == 'held_out' else 'in-distribution'}")
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlabel("test F1 of the category's reviews (%), 95 % bootstrap interval")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
