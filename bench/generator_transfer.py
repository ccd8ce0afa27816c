"""Do detectors trained on the fake-review dataset's 2019-era fakes catch fakes from a current model?

    python bench/generator_transfer.py                  # the shared data; ~20 minutes on 2 cores

Three searches through the product's own CLI (python -m tune.search minilm --profile cpu), each
with one trial, the cpu profile's best configuration (the preset's first seed: full fine-tune,
learning rate 1e-4, 2 epochs; docs/cpu-profile-leaderboard.md), and the TF-IDF baseline beside it:

- `fake-reviews only`: --data the fake-review dataset's pool (below);
- `+ LFM fakes`: the same pool plus half of the LFM fakes (--data twice);
- `LFM held out`: --data the pool and all LFM fakes, --group-col source --test-groups lfm2.5-350m
  (the product's held-out-source protocol: trained on the fake-review dataset alone, tested on
  LFM fakes paired with real reviews).

Before anything runs, the data is cut once (seed 0): 1,000 reviews of the fake-review dataset
(stratified) and 1,500 real reviews of it are kept out of every search, and the LFM fakes are
split in halves stratified by category. Each search's best fine-tune and its TF-IDF baseline are
exported twice, at threshold 0.5 and with --max-fpr 0.02, and scored with python -m
results.evaluate on

- `fake-review eval`: the 1,000 kept-out fake-review reviews (the old generator);
- `LFM eval`: the LFM half no search trained on, with the 1,500 kept-out real reviews.

Writes OUT/results.json and OUT/results.md (default OUT: bench/results/generator-transfer).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EVAL_REVIEWS, EVAL_REAL = 1000, 1500


def cut_data(reviews: Path, fakes: Path, folder: Path) -> dict[str, Path]:
    """The searches' input files and the two evaluation files, written under `folder`."""
    frame = pd.read_csv(reviews, dtype=str, keep_default_na=False)
    pool, kept = train_test_split(frame, test_size=EVAL_REVIEWS, stratify=frame["label"], random_state=0)
    kept_real = pool[pool["label"] == "OR"].sample(EVAL_REAL, random_state=0)
    unused_fakes = pool[pool["label"] == "CG"].sample(EVAL_REAL, random_state=0)  # the pool stays balanced
    pool = pool.drop(kept_real.index).drop(unused_fakes.index)
    lfm = pd.read_csv(fakes, dtype=str, keep_default_na=False)
    lfm_train, lfm_eval = train_test_split(lfm, test_size=0.5, stratify=lfm["category"], random_state=0)
    files = {"pool": folder / "fake_reviews.csv", "lfm_train": folder / "lfm2.5-350m.csv",
             "lfm_all": folder / "all" / "lfm2.5-350m.csv", "eval_old": folder / "fake_review_eval.csv",
             "eval_lfm": folder / "lfm_eval.csv"}
    files["lfm_all"].parent.mkdir(exist_ok=True)
    pool.to_csv(files["pool"], index=False)
    lfm_train.to_csv(files["lfm_train"], index=False)
    lfm.to_csv(files["lfm_all"], index=False)
    kept.to_csv(files["eval_old"], index=False)
    pd.concat([lfm_eval.assign(source="lfm2.5-350m"), kept_real.assign(source="fake-review dataset (real)")])[
        ["text_", "label", "source"]].to_csv(files["eval_lfm"], index=False)
    return files


def run(command: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")


def search(name: str, data: list[Path], extra: list[str], storage: Path, log: Path) -> Path:
    """One search; a finished one in --work is kept (its leaderboard written again), so a rerun goes on."""
    state = storage / name / "run.json"
    if state.exists() and json.loads(state.read_text()).get("finished"):
        run([sys.executable, "-m", "results.leaderboard", str(storage / name)], log)
        return storage / name
    run([sys.executable, "-m", "tune.search", "minilm", *[a for d in data for a in ("--data", str(d))],
         "--profile", "cpu", "--num-samples", "1", "--cpus-per-trial", str(os.cpu_count() or 1),
         "--storage", str(storage), "--name", name, *extra], log)
    return storage / name


def best_baseline(run_dir: Path) -> str:
    records = [json.loads(p.read_text()) for p in (run_dir / "baselines").glob("*/record.json")]
    records = [r for r in records if "val" in r]
    return max(records, key=lambda r: (r["val"]["macro_f1"], r["trial_id"]))["trial_id"]


def evaluate(bundle: Path, data: Path, out: Path, log: Path, group: str | None = None) -> dict:
    run([sys.executable, "-m", "results.evaluate", str(bundle), str(data), "--out", str(out), "--trust-pickle",
         *(["--group-col", group] if group else [])], log)
    return json.loads((out / "evaluation.json").read_text())


def summary(evaluation: dict) -> dict:
    """The figures the table shows, from results.evaluate's JSON (overall, and the LFM group)."""
    overall = evaluation["overall"]
    out = {name: overall["metrics"].get(name) for name in ("macro_f1", "fake_recall", "real_flagged")}
    out["roc_auc"] = overall["roc_auc"]
    return out


def pct(metric: dict | None) -> str:
    return "n/a" if metric is None else (f"{100 * metric['value']:.1f} ({100 * metric['low']:.1f}-"
                                         f"{100 * metric['high']:.1f})")


def markdown(result: dict) -> str:
    lines = [
        "# Generator transfer: fake-review-dataset fakes vs fakes from a current small model (LFM2.5-350M)",
        "",
        f"Measured {result['date']} on {result['machine']}, commit {result['commit']}, with "
        "`python bench/generator_transfer.py` (each search: `python -m tune.search minilm --profile cpu "
        "--num-samples 1`, the cpu profile's best configuration (full fine-tune, lr 1e-4, 2 epochs) and "
        "the TF-IDF baseline; each model exported at threshold 0.5 and with `--max-fpr 0.02`, scored with "
        "`python -m results.evaluate`). Intervals: 95 % bootstrap.",
        "",
        f"- fake-review eval: {EVAL_REVIEWS:,} reviews of the fake-review dataset no search saw (both classes).",
        f"- LFM eval: {result['lfm_eval_fakes']:,} LFM fakes no search trained on, with {result['lfm_eval_real']:,} "
        "real reviews of the fake-review dataset no search saw.",
        "- `LFM held out` trains on the fake-review dataset only (the LFM source is its test split), so its "
        "in-run test row is the product's own protocol for the same question as the LFM-eval column of "
        "`fake-reviews only`.",
        "",
        "| detector | model | threshold | fake-review eval macro-F1 | LFM eval: LFM fakes caught % | LFM eval: real "
        "flagged % | LFM eval macro-F1 | LFM eval ROC AUC |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        old, new = row["fake_review_eval"], row["lfm_eval"]
        lines.append(f"| {row['detector']} | {row['model']} | {row['threshold']} | {pct(old['macro_f1'])} | "
                     f"{pct(new['fake_recall'])} | {pct(new['real_flagged'])} | {pct(new['macro_f1'])} | "
                     f"{new['roc_auc']:.3f} |")
    lines += ["", "In-run test split of each search (the leaderboard's; `LFM held out`: LFM fakes paired with "
              "real reviews):", "", "| detector | model | test macro-F1 | test F1 (95% CI) | train + eval minutes |",
              "|---|---|---:|---|---:|"]
    for row in result["in_run"]:
        lines.append(f"| {row['detector']} | {row['model']} | {100 * row['test_macro_f1']:.2f} | "
                     f"{100 * row['test_f1']:.2f} ({100 * row['test_f1_low']:.1f}-{100 * row['test_f1_high']:.1f}) | "
                     f"{row['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "fake_reviews" / "fake_reviews_dataset.csv.gz")
    parser.add_argument("--fakes", type=Path, default=SHARED / "modern_fakes" / "lfm2.5-350m.csv.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generator-transfer")
    parser.add_argument("--work", type=Path, help="keep the run folders and bundles here (default: a temp folder)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="generator-transfer-"))
    work.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    log.write_text("")
    files = cut_data(args.data, args.fakes, work)
    storage = work / "runs"
    searches = {
        "fake-reviews only": search("old", [files["pool"]], [], storage, log),
        "+ LFM fakes": search("pooled", [files["pool"], files["lfm_train"]], [], storage, log),
        "LFM held out": search("held", [files["pool"], files["lfm_all"]],
                               ["--group-col", "source", "--test-groups", "lfm2.5-350m"], storage, log),
    }
    rows, in_run = [], []
    for number, (detector, run_dir) in enumerate(searches.items()):
        board = json.loads((run_dir / "leaderboard" / "leaderboard.json").read_text())
        for model, trial in (("fine-tune", None), ("TF-IDF", best_baseline(run_dir))):
            board_row = next(r for r in board if (r["trial"] == trial if trial else r["method"] == "full"))
            in_run.append({"detector": detector, "model": f"{model} ({board_row['trial']})",
                           "test_macro_f1": board_row["test_macro_f1"], "test_f1": board_row["test_f1"],
                           "test_f1_low": board_row["test_f1_low"], "test_f1_high": board_row["test_f1_high"],
                           "minutes": board_row["wall_seconds"] / 60})
            for threshold, flags in (("0.5", []), ("max FPR 2 % (val)", ["--max-fpr", "0.02"])):
                bundle = work / "bundles" / f"{number}-{model}-{len(flags)}"
                shutil.rmtree(bundle, ignore_errors=True)
                bundle.parent.mkdir(exist_ok=True)
                run([sys.executable, "-m", "results.export", str(run_dir), "--out", str(bundle),
                     *(["--trial", trial] if trial else []), *flags], log)
                chosen = json.loads((bundle / "bundle.json").read_text()).get("threshold", 0.5)
                rows.append({"detector": detector, "model": f"{model} ({board_row['trial']})",
                             "threshold": f"{threshold}: {chosen:.3f}" if flags else threshold,
                             "fake_review_eval": summary(evaluate(bundle, files["eval_old"], bundle / "eval-old", log)),
                             "lfm_eval": summary(evaluate(bundle, files["eval_lfm"], bundle / "eval-lfm", log))})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lfm_eval = pd.read_csv(files["eval_lfm"])
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, no GPU",
              "commit": commit.strip(), "lfm_eval_fakes": int((lfm_eval["label"] == "CG").sum()),
              "lfm_eval_real": int((lfm_eval["label"] == "OR").sum()), "rows": rows, "in_run": in_run}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
