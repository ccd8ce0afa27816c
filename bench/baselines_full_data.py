"""Every baseline on the full shared dataset with the study's split protocol (no subsample):
the bar the fine-tunes must clear. Runs the same code the search's baseline tasks run, without Ray.

    python bench/baselines_full_data.py [--data PATH] [--model minilm]

Writes bench/results/baselines-full-data.json and .md, and the records to a run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.metrics import selection_score  # noqa: E402
from results.ensemble import build_ensemble  # noqa: E402
from results.leaderboard import bootstrap_macro_f1_interval, mcnemar_p  # noqa: E402
from search_spaces import load_preset  # noqa: E402
from search_spaces.baselines import GRIDS  # noqa: E402
from trainables.baselines import BaselineConfig, run_baseline  # noqa: E402
from trainables.embeddings import cached_embeddings  # noqa: E402
from trainables.model import load_tokenizer, loading_overrides  # noqa: E402
from tune.prepare import prepare_data  # noqa: E402
from tune.profiles import get_profile  # noqa: E402

METRIC = "macro_f1"
DATA = ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "baselines-full-data"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    preset = load_preset(args.preset)
    tokenizer = load_tokenizer(preset.MODEL, preset.TRUST_REMOTE_CODE)
    run_dir = Path(args.run_dir)
    data = prepare_data(args.data, get_profile("full"), tokenizer, preset.MODEL, run_dir)
    print(f"{data.cleaning}; split {data.rows}; hash {data.split_hash}; max length {data.max_length}", flush=True)
    started = time.perf_counter()
    path, computed = cached_embeddings(data.data_dir, data.tokens_file, preset.MODEL, data.split_hash, data.max_length,
                                preset.POOLING, tokenizer.pad_token_id or 0, trust_remote_code=preset.TRUST_REMOTE_CODE,
                                overrides=loading_overrides(args.preset))
    embed_seconds = time.perf_counter() - started
    print(f"embeddings in {embed_seconds:.0f} s", flush=True)
    rows, records = [], []
    for method, grid in GRIDS.items():
        for index, params in enumerate(grid):
            config = BaselineConfig(method=method, preset=args.preset, model=preset.MODEL,
                                    max_length=data.max_length, data_dir=data.data_dir,
                                    embeddings_file=Path(path).name, split_hash=data.split_hash, **params)
            folder = run_dir / "baselines" / f"{method}-{index}"
            record = run_baseline(config, folder / "record.json", folder / "model.joblib")
            records.append(record)
            rows.append({"method": method, "params": record["params"], "val_f1": record["val"]["f1"],
                         "test_f1": record["test"]["f1"], "test_accuracy": record["test"]["accuracy"],
                         "test_roc_auc": record["test"]["roc_auc"], "train_seconds": record["train_seconds"]})
            print(json.dumps(rows[-1]), flush=True)

    comparison = ensemble_against_best(records)
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d"),
              "machine": f"cpu ({torch.get_num_threads()} threads)", "rows": data.rows,
              "split_hash": data.split_hash, "embedding_model": preset.MODEL,
              "embedding_seconds": embed_seconds if computed else None, "baselines": rows, "ensemble": comparison}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines-full-data.json").write_text(json.dumps(result, indent=1))
    table = "\n".join(
        f"| {r['method']} | {', '.join(f'{k}={v}' for k, v in r['params'].items())} | {100 * r['val_f1']:.2f} | "
        f"{100 * r['test_f1']:.2f} | {100 * r['test_accuracy']:.2f} | {r['test_roc_auc']:.4f} | {r['train_seconds']:.0f} |"
        for r in rows)
    (out / "baselines-full-data.md").write_text(
        f"# Baselines on the full shared dataset\n\n`{result['command']}` on {result['date']}, {result['machine']}; "
        f"split {data.rows} (hash {data.split_hash}); frozen {preset.MODEL} embeddings ({preset.POOLING} pooling, "
        f"{f'{embed_seconds:.0f} s' if computed else 'read from the run folder, computed by an earlier run'}).\n\n| method | settings | val F1 | test F1 | test acc | test ROC AUC | fit s |\n"
        f"|---|---|---:|---:|---:|---:|---:|\n{table}\n\n{ensemble_markdown(comparison)}\n")
    print((out / "baselines-full-data.md").read_text())


def ensemble_against_best(records: list[dict]) -> dict:
    """The baselines' ensemble (results/ensemble.py, by validation macro-F1) against the best single
    baseline by validation, each on test with its bootstrap interval and McNemar's p between them."""
    ensemble = build_ensemble(records, METRIC)
    best = max(records, key=lambda r: selection_score(r["val"], METRIC))

    def scored(prob, test):
        low, high = bootstrap_macro_f1_interval(best["test_labels"], prob)
        return {"test_macro_f1": test["macro_f1"], "low": low, "high": high}
    return {"metric": METRIC, "members": ensemble.members, "weights": ensemble.weights,
            "val_score": ensemble.val_score, "best": best["trial_id"],
            "best_val_score": selection_score(best["val"], METRIC),
            "ensemble_test": scored(ensemble.test_prob_real, ensemble.test),
            "best_test": scored(best["test_prob_real"], best["test"]),
            "mcnemar_p": mcnemar_p(best["test_labels"], best["test_prob_real"], ensemble.test_prob_real)}


def ensemble_markdown(c: dict) -> str:
    def cell(t: dict) -> str:
        return f"{100 * t['test_macro_f1']:.2f} ({100 * t['low']:.1f}-{100 * t['high']:.1f})"
    members = ", ".join(f"{m} x{w:.2f}" for m, w in zip(c["members"], c["weights"]))
    return (f"Ensemble of these baselines (results/ensemble.py: greedy selection on validation {c['metric']}): "
            f"{members}.\n\n| model | val macro-F1 | test macro-F1 (95% CI) |\n|---|---:|---|\n"
            f"| ensemble | {100 * c['val_score']:.2f} | {cell(c['ensemble_test'])} |\n"
            f"| best single by validation ({c['best']}) | {100 * c['best_val_score']:.2f} | "
            f"{cell(c['best_test'])} |\n\n"
            f"McNemar p (ensemble vs best single, same test reviews): {c['mcnemar_p']:.3g}.")


if __name__ == "__main__":
    main()
