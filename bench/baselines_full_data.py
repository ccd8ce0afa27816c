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

from search_spaces import load_preset  # noqa: E402
from search_spaces.baselines import GRIDS  # noqa: E402
from trainables.baselines import BaselineConfig, run_baseline  # noqa: E402
from trainables.embeddings import cached_embeddings  # noqa: E402
from trainables.model import load_tokenizer, loading_overrides  # noqa: E402
from tune.prepare import prepare_data  # noqa: E402
from tune.profiles import get_profile  # noqa: E402

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
    path, _ = cached_embeddings(data.data_dir, data.tokens_file, preset.MODEL, data.split_hash, data.max_length,
                                preset.POOLING, tokenizer.pad_token_id or 0, trust_remote_code=preset.TRUST_REMOTE_CODE,
                                overrides=loading_overrides(args.preset))
    embed_seconds = time.perf_counter() - started
    print(f"embeddings in {embed_seconds:.0f} s", flush=True)
    rows = []
    for method, grid in GRIDS.items():
        for index, params in enumerate(grid):
            config = BaselineConfig(method=method, preset=args.preset, model=preset.MODEL,
                                    max_length=data.max_length, data_dir=data.data_dir,
                                    embeddings_file=path.name, split_hash=data.split_hash, **params)
            record = run_baseline(config, run_dir / "baselines" / f"{method}-{index}" / "record.json")
            rows.append({"method": method, "params": record["params"], "val_f1": record["val"]["f1"],
                         "test_f1": record["test"]["f1"], "test_accuracy": record["test"]["accuracy"],
                         "test_roc_auc": record["test"]["roc_auc"], "train_seconds": record["train_seconds"]})
            print(json.dumps(rows[-1]), flush=True)

    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d"),
              "machine": f"cpu ({torch.get_num_threads()} threads)", "rows": data.rows,
              "split_hash": data.split_hash, "embedding_model": preset.MODEL,
              "embedding_seconds": embed_seconds, "baselines": rows}
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
        f"{embed_seconds:.0f} s).\n\n| method | settings | val F1 | test F1 | test acc | test ROC AUC | fit s |\n"
        f"|---|---|---:|---:|---:|---:|---:|\n{table}\n")
    print((out / "baselines-full-data.md").read_text())


if __name__ == "__main__":
    main()
