"""Trials on a GPU, through the trial's own training function (trainables.training.fine_tune, the
code a Ray Train worker runs; Ray itself is not needed):

1. one full trial: the Stella-size stand-in (24 layers, 1024 wide, 335M; BERT-shaped, so LoRA
   goes on the minilm preset's module names), QLoRA r16 on attention, every training review,
   --epochs epochs, capped at --gpu-memory-gb. The record gives epoch time, samples/s and peak.
2. packing: the same trial on a --packing-reviews subset, alone and then K at once on the one card
   (what --trials-per-gpu K asks Ray for), each process capped at --gpu-memory-gb. Throughput is
   all trials' training reviews over the wall time from the first start to the last end.

    python bench/gpu_trials.py --tokenizer TOKENIZER_DIR --data reviews.csv.gz

Writes bench/results/gpu-trials.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.trial_throughput import DATA, bert_model, stella_size_model  # noqa: E402
from core import storage  # noqa: E402
from core.record import read_record  # noqa: E402
from trainables.config import FineTuneConfig  # noqa: E402
from trainables.model import load_tokenizer  # noqa: E402
from trainables.training import fine_tune  # noqa: E402
from tune.prepare import prepare_data  # noqa: E402
from tune.profiles import RunProfile  # noqa: E402


def prepare(data: str, tokenizer, model_path: str, folder: Path, train_rows: int | None, args) -> FineTuneConfig:
    rows = {"train": train_rows, "val": None if train_rows is None else min(256, train_rows),
            "test": None if train_rows is None else min(256, train_rows)}
    prepared = prepare_data(data, RunProfile("bench", 1, rows, None, epochs=1), tokenizer, model_path, folder)
    return FineTuneConfig(preset="minilm", model=model_path, method="qlora", target_modules="attention_output",
                          lora_r=16, lora_alpha=32, learning_rate=2e-4, epochs=args.epochs, batch_size=args.batch_size,
                          use_gpu=True, gpu_memory_gb=args.gpu_memory_gb, run_dir=prepared.run_dir,
                          tokens_file=prepared.tokens_file, split_hash=prepared.split_hash,
                          max_length=prepared.max_length)


def run_worker(config_json: str, record: str) -> None:
    fine_tune(FineTuneConfig.from_dict(json.loads(config_json)), record_path=record, trial_id=Path(record).stem,
              device=device())


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def packed(config: FineTuneConfig, k: int, folder: Path) -> dict:
    """Run k trials at once, each in its own process (as Ray runs them), and time them together."""
    records = [folder / f"packed{k}-{i}.json" for i in range(k)]
    processes = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(replace(config, seed=i).to_dict()),
                                   str(record)]) for i, record in enumerate(records)]
    if any(p.wait() != 0 for p in processes):
        raise RuntimeError(f"a packed trial failed (k={k})")
    trials = [read_record(r) for r in records]
    epochs = [h for t in trials for h in t["history"]]
    window = max(h["started_at"] + h["train_seconds"] for h in epochs) - min(h["started_at"] for h in epochs)
    reviews = len_train(config) * len(epochs)
    return {"trials": k, "train_reviews_total": reviews, "wall_seconds": window,
            "samples_per_second": reviews / window,
            "per_trial_samples_per_second": [t["samples_per_second"] for t in trials],
            "peak_memory_mb": [t["gpu_peak_mb"] for t in trials],
            "micro_batch": [t["config"]["batch_size"] for t in trials]}


def len_train(config: FineTuneConfig) -> int:
    from core.tokens import read_tokens

    return len(read_tokens(storage.join(config.data_dir, config.tokens_file))["train"][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--tokenizer", default="minilm", help="tokenizer folder (default: the packaged MiniLM's)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the full trial (default 1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0)
    parser.add_argument("--packing", type=int, default=4, help="K trials at once on the card (default 4)")
    parser.add_argument("--packing-reviews", type=int, default=3072, help="training reviews per packed trial")
    parser.add_argument("--skip-full", action="store_true", help="packing only")
    parser.add_argument("--smoke", action="store_true",
                        help="check the script: a 2-layer model, 128 reviews per split; runs on CPU")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(*args.worker)
        return
    if not torch.cuda.is_available() and not args.smoke:
        sys.exit("error: this benchmark needs a CUDA GPU (--smoke checks the script on CPU with a tiny model).")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(args.tokenizer)
    result = {"command": " ".join(["python", *sys.argv]),
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "gpu_memory_gb": args.gpu_memory_gb}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = (bert_model(folder / "model", tokenizer, layers=2, hidden=64, heads=2) if args.smoke
                      else stella_size_model(folder / "model", tokenizer))
        if not args.skip_full:
            config = prepare(args.data, tokenizer, model_path, folder / "full", 128 if args.smoke else None, args)
            started = time.perf_counter()
            record = fine_tune(config, record_path=str(folder / "full.json"), trial_id="full",
                               device=device())
            result["full_trial"] = {
                "train_reviews": len_train(config), "epochs": args.epochs, "max_length": config.max_length,
                "wall_seconds": time.perf_counter() - started,
                "epoch_seconds": [h["train_seconds"] for h in record["history"]],
                "eval_seconds": [h["eval_seconds"] for h in record["history"]],
                "samples_per_second": record["samples_per_second"],
                "padding_efficiency": [h["padding_efficiency"] for h in record["history"]],
                "peak_memory_mb": record["gpu_peak_mb"], "as_trained": {
                    k: record["config"][k] for k in ("batch_size", "grad_accumulation", "gradient_checkpointing")},
                "val_f1": record["val"]["f1"], "test_f1": record["test"]["f1"]}
            print(json.dumps(result["full_trial"]), flush=True)
            (out / "gpu-trials.json").write_text(json.dumps(result, indent=1))
        config = replace(prepare(args.data, tokenizer, model_path, folder / "packing", args.packing_reviews, args),
                         epochs=1)
        alone = packed(config, 1, folder)
        print(json.dumps(alone), flush=True)
        together = packed(config, args.packing, folder)
        print(json.dumps(together), flush=True)
        result["packing"] = {"alone": alone, "packed": together,
                             "speedup": together["samples_per_second"] / alone["samples_per_second"]}
    (out / "gpu-trials.json").write_text(json.dumps(result, indent=1))
    (out / "gpu-trials.md").write_text(summary(result))
    print(summary(result))


def summary(result: dict) -> str:
    lines = [f"# Trials on {result['device']}, each capped at {result['gpu_memory_gb']:g} GiB", "",
             f"`{result['command']}` on {result['date']}, torch {result['torch']}. Stella-size stand-in "
             "(24 x 1024, 335M), QLoRA NF4 r16/alpha32 on query, key, value and attention output, through "
             "`trainables.training.fine_tune`.", ""]
    if "full_trial" in result:
        full = result["full_trial"]
        per_epoch = sum(full["epoch_seconds"]) / len(full["epoch_seconds"])
        evals = sum(full["eval_seconds"]) / len(full["eval_seconds"])
        lines += [f"Full trial: {full['train_reviews']:,} training reviews, max length {full['max_length']}, "
                  f"trained as {full['as_trained']}: **{per_epoch:.0f} s per epoch** "
                  f"({full['samples_per_second']:.0f} samples/s) + {evals:.0f} s evaluation per epoch, "
                  f"peak {full['peak_memory_mb']:.0f} MB; padding efficiency "
                  f"{', '.join(f'{p:.3f}' for p in full['padding_efficiency'])}. A 3-epoch trial: about "
                  f"{3 * (per_epoch + evals) / 60:.1f} min.", ""]
    pack = result["packing"]
    lines += ["| trials on the card | samples/s (all trials) | wall s | peak MB per trial | micro-batch |",
              "|---:|---:|---:|---|---|"]
    for row in (pack["alone"], pack["packed"]):
        lines.append(f"| {row['trials']} | {row['samples_per_second']:.0f} | {row['wall_seconds']:.0f} | "
                     f"{', '.join(f'{m:.0f}' for m in row['peak_memory_mb'])} | {row['micro_batch']} |")
    lines += ["", f"Packed / alone: **{pack['speedup']:.2f}x** throughput.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
