"""Reviews per second: `results.predict` in one process against `--ray`, here and on a two-node cluster.

    python -m results.export runs/minilm --out bundle      # README command 1's best fine-tune
    python bench/batch_predict.py --bundle bundle           # ~15 minutes on 2 cores

Each configuration runs the product's CLI in a fresh process on the same Parquet file of ROWS
reviews drawn from the shared fake-review dataset, and is timed end to end (process start, Ray
start where there is one, loading the bundle, reading, scoring, writing):

- `one process`: python -m results.predict BUNDLE reviews.parquet (float32, every core);
- `one process, 1 thread`: the same with OMP_NUM_THREADS=1 (what one CPU actor gets);
- `one process, --bf16`: bf16 mixed precision where the CPU has AVX512-BF16 (not batch-invariant);
- `--ray`: Ray Data on a local Ray instance (actors: one per CPU but one);
- `--ray --address`: on a local two-node cluster (ray.cluster_utils.Cluster: a head and a worker
  node of half the cores each), which Ray Data treats as it would two machines.

Every output is compared with the first: rows in input order, and the largest difference in
probability of real. Writes OUT/results.json and OUT/results.md (default bench/results/batch-predict).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"


def predict(bundle: Path, source: Path, out: Path, *options: str, env: dict | None = None) -> dict:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "results.predict", str(bundle), str(source), "--out", str(out),
                             *options], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(options)} failed:\n{result.stderr[-3000:]}")
    scoring = re.search(r"over (\d+) s\)", result.stdout)  # --ray says how long its pipeline ran
    return {"wall_s": round(wall, 1), "pipeline_s": int(scoring.group(1)) if scoring else None,
            "summary": result.stdout.strip().splitlines()[-1]}


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """(probability of real per row, label per row, whether the rows are in input order)."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        in_order = frame["row"].tolist() == list(range(len(frame)))
    else:
        frame, in_order = pd.read_csv(path, keep_default_na=False), True
    return pd.to_numeric(frame["prob_real"].replace("", np.nan)).to_numpy(dtype=float), frame["label"].to_numpy(), in_order


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import torch

    bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return f"{os.cpu_count()} cores ({model}{', AVX512-BF16' if bf16 else ''}), no GPU, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a fine-tune bundle (results.export)")
    parser.add_argument("--rows", type=int, default=12000, help="reviews to score (default 12,000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch-predict")
    args = parser.parse_args()
    bundle = json.loads((args.bundle / "bundle.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="batch-predict-"))
    reviews = pd.read_csv(REVIEWS, dtype=str, keep_default_na=False)
    source = work / "reviews.parquet"
    reviews.sample(args.rows, random_state=0, replace=args.rows > len(reviews))[["text_"]].to_parquet(source)

    runs = {}
    runs["one process"] = predict(args.bundle, source, work / "single.csv")
    runs["one process, 1 thread"] = predict(args.bundle, source, work / "thread.csv", env={"OMP_NUM_THREADS": "1"})
    runs["one process, --bf16"] = predict(args.bundle, source, work / "bf16.csv", "--bf16")
    runs["--ray"] = predict(args.bundle, source, work / "ray.parquet", "--ray")
    from ray.cluster_utils import Cluster

    half = max(1, (os.cpu_count() or 2) // 2)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": half, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=half)
        cluster.wait_for_nodes()
        runs["--ray --address (two nodes)"] = predict(args.bundle, source, work / "cluster.parquet", "--ray",
                                                      "--address", cluster.address)
    finally:
        cluster.shutdown()

    outputs = dict(zip(runs, ["single.csv", "thread.csv", "bf16.csv", "ray.parquet", "cluster.parquet"]))
    reference, reference_labels, _ = read_predictions(work / "single.csv")
    for name, file in outputs.items():
        prob, labels, in_order = read_predictions(work / file)
        runs[name].update(rows_per_s=round(args.rows / runs[name]["wall_s"], 1), in_order=in_order,
                          max_prob_difference=float(np.nanmax(np.abs(prob - reference))),
                          labels_differing=int((labels != reference_labels).sum()))
    results = {"rows": args.rows, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
               "bundle": {key: bundle.get(key) for key in ("kind", "method", "max_length", "trial_id")},
               "command": f"python bench/batch_predict.py --bundle BUNDLE --rows {args.rows}", "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    bundle = results["bundle"]
    lines = [f"# Batch prediction: one process against Ray Data ({results['date']})", "",
             f"`{results['command']}` on {results['machine']}; {results['rows']:,} reviews of the shared "
             f"fake-review dataset in one Parquet file; the bundle: {bundle['method']} fine-tune "
             f"(trial {bundle['trial_id']}), max length {bundle['max_length']} tokens. Wall time is end "
             "to end (process start, Ray start, loading, reading, scoring, writing); Ray's pipeline time is "
             "what `--ray` reports from its first read to its last row written.", "",
             "| configuration | wall s | reviews/s | Ray pipeline s | rows in order | "
             "max abs difference in p(real) vs one process | labels that differ |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for name, run in results["runs"].items():
        lines.append(f"| {name} | {run['wall_s']} | {run['rows_per_s']} | {run['pipeline_s'] or ''} | "
                     f"{'yes' if run['in_order'] else 'NO'} | {run['max_prob_difference']:.1e} | "
                     f"{run['labels_differing']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
