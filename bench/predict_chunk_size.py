"""What scoring a stream in chunks costs: one thread's reviews per second by chunk size.

    python bench/predict_chunk_size.py --bundle BUNDLE      # ~3 minutes on 2 cores

`--ray` hands each actor BATCH_ROWS reviews at a time (results/batch_predict.py), and each call
sorts only those by length into the bundle's batches, so a stream pays more padding than one
process that sorts the whole file. This scores the same REVIEWS reviews of the shared dataset in
one process, one torch thread (what a CPU actor gets), through the product's own loader
(results.predict.load_scorer), whole and in chunks, and writes OUT/chunk-size.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/, whose results/ folder would shadow the package

from results.predict import load_scorer, review_text  # noqa: E402

REVIEWS_FILE = ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a fine-tune bundle (results.export)")
    parser.add_argument("--reviews", type=int, default=3072)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch-predict")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = pd.read_csv(REVIEWS_FILE, dtype=str, keep_default_na=False).sample(args.reviews, random_state=0)
    texts = [review_text(value) for value in frame["text_"]]
    score = load_scorer(args.bundle, progress=False)
    score(texts[:64])  # first-call set-up out of the timings
    rows = []
    for size in (args.reviews, 1024, 256):
        started = time.perf_counter()
        for start in range(0, len(texts), size):
            score(texts[start:start + size])
        rate = len(texts) / (time.perf_counter() - started)
        rows.append((size, rate))
        print(f"chunks of {size}: {rate:.1f} reviews/s", flush=True)
    whole = rows[0][1]
    lines = [f"# Scoring in chunks ({time.strftime('%Y-%m-%d')})", "",
             f"`python bench/predict_chunk_size.py --bundle BUNDLE --reviews {args.reviews}`: one torch thread, "
             f"{args.reviews:,} reviews of the shared dataset, {torch.__version__}.", "",
             "| reviews per call | reviews/s | against the whole at once |", "|---:|---:|---:|"]
    lines += [f"| {size:,} | {rate:.1f} | {100 * (rate / whole - 1):+.1f} % |" for size, rate in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chunk-size.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
