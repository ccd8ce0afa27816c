"""Throughput of the trial's training loop: the study's settings against ours, same model, same
reviews, one process, one machine.

    python bench/trial_throughput.py                  # CPU: the packaged MiniLM
    python bench/trial_throughput.py --stella-size    # GPU: 24-layer, 1024-wide stand-in (335M)

study: every review padded to 512 tokens, batch 2, gradient checkpointing, random batches.
ours:  max length chosen from the data (98 % of reviews whole), dynamic padding, length-grouped
       batches, batch 32 (16 for the Stella-size model), no checkpointing; bf16 autocast on GPU.
ours + torch.compile (--compile): the same, the model compiled with dynamic shapes,
       timed on the same reviews as a second "ours" row; compile time is left out of samples/s
       and reported apart.
On GPU every setting runs under the trials' 8 GiB cap (--gpu-memory-gb).
Both: LoRA r16/alpha32 on attention (query, key, value, output), NF4 base when bitsandbytes is
installed (else a full-precision base; the results file says which), AdamW.

Writes bench/results/throughput-<device>.json and .md (the README quotes them).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import load_reviews, split_reviews  # noqa: E402
from core.tokens import choose_max_length  # noqa: E402
from trainables.config import FineTuneConfig  # noqa: E402
from trainables.model import build_classifier, load_tokenizer  # noqa: E402
from trainables.training import cap_cuda_memory, train_epoch  # noqa: E402
from tune.prepare import MODEL_MAX_LENGTH  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"


def stella_size_model(folder: Path, tokenizer) -> str:
    """A BERT-large-shaped encoder (24 layers, 1024 wide, 335M parameters) from a config."""
    return bert_model(folder, tokenizer, layers=24, hidden=1024, heads=16)


def bert_model(folder: Path, tokenizer, layers: int, hidden: int, heads: int) -> str:
    """A randomly initialised BERT encoder saved with `tokenizer`, loadable like a downloaded model."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def measure(name: str, model_path: str, texts, labels, tokenizer, device, *, max_length: int, batch_size: int,
            checkpointing: bool, pad_to: int | None, grouped: bool, method: str, epoch_reviews: int,
            compile_model: bool = False) -> dict:
    ids = [np.asarray(x, dtype=np.int64) for x in
           tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    config = FineTuneConfig(model=model_path, method=method, target_modules="attention_output",
                            batch_size=batch_size, max_length=max_length, gradient_checkpointing=checkpointing,
                            cpus_per_worker=torch.get_num_threads())
    torch.manual_seed(0)
    model = build_classifier(config, device)
    if compile_model:
        model = torch.compile(model, dynamic=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    rng = np.random.default_rng(0)
    warmup = (ids[: batch_size * 2], labels[: batch_size * 2])  # kernels, allocator, caches, compilation
    started = time.perf_counter()
    options = {"batch_size": batch_size, "pad_id": tokenizer.pad_token_id, "device": device, "rng": rng,
               "pad_to": pad_to, "group_by_length": grouped}
    train_epoch(model, optimizer, scheduler, warmup, **options)
    warmup_seconds = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats = train_epoch(model, optimizer, scheduler, (ids, labels), **options)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result = {
        "setting": name, "max_length": max_length, "batch_size": batch_size, "gradient_checkpointing": checkpointing,
        "padded_to": pad_to or "batch longest", "length_grouped": grouped, "torch_compile": compile_model,
        "warmup_seconds": warmup_seconds,
        "samples_per_second": stats["samples_per_second"], "padding_efficiency": stats["padding_efficiency"],
        "seconds": stats["train_seconds"], "reviews": len(ids),
        "train_split_epoch_minutes_extrapolated": epoch_reviews / stats["samples_per_second"] / 60,
        "peak_memory_mb": peak,
    }
    print(json.dumps(result), flush=True)
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--reviews", type=int,
                        help="reviews timed with our settings (default 1600 on CPU, one length group of "
                             "50 batches; 8192 on GPU)")
    parser.add_argument("--study-reviews", type=int,
                        help="reviews timed with the study's settings, a subset of the same reviews: every "
                             "batch is padded to 512, so its speed does not depend on which (default 128 "
                             "on CPU, 384 on GPU)")
    parser.add_argument("--stella-size", action="store_true", help="the 24-layer, 1024-wide stand-in")
    parser.add_argument("--compile", action="store_true", help="also time ours with and without torch.compile")
    parser.add_argument("--compile-reviews", type=int, default=4096,
                        help="reviews timed with and without torch.compile (default 4096)")
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0, help="CUDA memory cap (default 8)")
    parser.add_argument("--tokenizer", default="minilm",
                        help="tokenizer folder (default: the packaged MiniLM's)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        import bitsandbytes  # noqa: F401
        method = "qlora"
    except ImportError:
        method = "lora"
    if device.type == "cuda":  # what a trial gets: --gpu-memory-gb of the card
        cap_cuda_memory(device, args.gpu_memory_gb)
    tokenizer = load_tokenizer(args.tokenizer)
    frame, _ = load_reviews(args.data)
    train = split_reviews(frame).query("split == 'train'")
    gpu = device.type == "cuda"
    count = args.reviews or (8192 if gpu else 1600)
    study_count = min(count, args.study_reviews or (384 if gpu else 128))
    sample = train.sample(n=count, random_state=0)
    texts, labels = sample["text"].tolist(), sample["label"].to_numpy()
    all_lengths = [len(x) for x in tokenizer(train["text"].tolist(), verbose=False)["input_ids"]]
    ours_length = choose_max_length(all_lengths, MODEL_MAX_LENGTH)

    with tempfile.TemporaryDirectory() as folder:
        model_path = stella_size_model(Path(folder), tokenizer) if args.stella_size else "minilm"
        batch = 16 if args.stella_size else 32
        common = dict(model_path=model_path, tokenizer=tokenizer, device=device, method=method,
                      epoch_reviews=len(train))
        study = measure("study", texts=texts[:study_count], labels=labels[:study_count], **common, max_length=512,
                        batch_size=2, checkpointing=True, pad_to=512, grouped=False)
        ours = measure("ours", texts=texts, labels=labels, **common, max_length=ours_length, batch_size=batch,
                       checkpointing=False, pad_to=None, grouped=True)
        settings = [study, ours]
        if args.compile:
            subset = {"texts": texts[:args.compile_reviews], "labels": labels[:args.compile_reviews]}
            for compiled in (False, True):
                settings.append(measure("ours, torch.compile" if compiled else "ours (same reviews)", **subset,
                                        **common, max_length=ours_length, batch_size=batch, checkpointing=False,
                                        pad_to=None, grouped=True, compile_model=compiled))

    card = (f"{torch.cuda.get_device_name(device)}, capped at {args.gpu_memory_gb:g} GiB" if gpu
            else f"cpu ({torch.get_num_threads()} threads)")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "device": card, "model": "stella-size stand-in (24x1024, 335M)" if args.stella_size else "all-MiniLM-L6-v2",
        "method": method, "torch": torch.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "reviews_truncated_by_ours": int(np.sum(np.asarray(all_lengths) > ours_length)),
        "speedup": ours["samples_per_second"] / study["samples_per_second"],
        "settings": settings,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-{'gpu' if device.type == 'cuda' else 'cpu'}{'-stella-size' if args.stella_size else ''}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    rows = "\n".join(
        f"| {s['setting']} | {s['reviews']} | {s['max_length']} | {s['batch_size']} | {s['gradient_checkpointing']} | "
        f"{s['samples_per_second']:.1f} | {s['padding_efficiency']:.3f} | "
        f"{s['train_split_epoch_minutes_extrapolated']:.1f} | {s['peak_memory_mb']:.0f} |"
        for s in settings)
    (out / f"{stem}.md").write_text(
        f"# Trial throughput: {result['model']}, {method}, {card}\n\n`{result['command']}` on {result['date']}, "
        f"training reviews timed: study {study_count}, ours {count} (a superset); torch {torch.__version__}. "
        "Peak memory is the process's peak resident set on CPU (the study's setting runs first), "
        "CUDA's peak allocation on GPU.\n\n"
        "| setting | reviews timed | max length | batch | checkpointing | samples/s | padding efficiency | "
        f"epoch of {len(train):,} train reviews (min, extrapolated) | peak MB |\n"
        "|---|---:|---:|---:|---|---:|---:|---:|---:|\n"
        f"{rows}\n\nOurs / study: **{result['speedup']:.1f}x** samples per second. "
        f"Our max length truncates {result['reviews_truncated_by_ours']} of {len(all_lengths)} training reviews.\n"
        + compile_summary(settings))
    print((out / f"{stem}.md").read_text())


def compile_summary(settings: list[dict]) -> str:
    timed = {s["setting"]: s for s in settings}
    if "ours, torch.compile" not in timed:
        return ""
    eager, compiled = timed["ours (same reviews)"], timed["ours, torch.compile"]
    return (f"\ntorch.compile (dynamic shapes) on the same {compiled['reviews']} reviews: "
            f"{compiled['samples_per_second']:.1f} vs {eager['samples_per_second']:.1f} samples/s eager "
            f"({compiled['samples_per_second'] / eager['samples_per_second']:.2f}x), after "
            f"{compiled['warmup_seconds']:.0f} s of compilation and warmup (eager: {eager['warmup_seconds']:.0f} s).\n")


if __name__ == "__main__":
    main()
