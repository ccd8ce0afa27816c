"""Search quality per minute: the previous search design against this one, same machine, same data,
same wall-clock budget, several searcher seeds.

    python bench/search_quality.py --data ../shared/data/fake_reviews/fake_reviews_dataset.csv.gz \
        --minutes 12 --seeds 42 7 --previous dc8d7a0 --out bench/results/search-quality

Each design is the default command a user runs (`python -m tune.search minilm --data ...`: the `cpu`
profile and every baseline of that design, plus --seed), started in its own process and stopped
with SIGINT at the budget if still running. Each design runs from a fresh git worktree of its
commit (the current one: HEAD), so what runs is exactly what is committed.
Both profiles test on the same 600 reviews (the data contract's split, then a seeded subsample
of each split that does not depend on the other splits' sizes; the script checks it).

A trial counts from the moment its last epoch ended (its record's history: start + train + eval
seconds), measured from the search process's start. At each minute the curve shows the test
macro-F1 of the trial the design itself would choose among those finished: the previous design
chose by validation F1 of `real`, this one by its selection metric (validation macro-F1, constant
predictors last). The TF-IDF line is the run's own TF-IDF + LR, chosen by validation macro-F1 in
both designs.
Writes OUT/results.json, OUT/results.md and OUT/best_so_far.png; runs go to OUT/runs/ (ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.metrics import selection_score  # noqa: E402
from core.record import find_records, read_record  # noqa: E402

FINE_TUNES = ("qlora", "lora", "full")


def run_design(code_dir: Path, data: str, storage: Path, seed: int, minutes: float) -> dict:
    """Run one search as a user would, under a wall-clock limit. Returns when and how it ended."""
    name = f"seed{seed}"
    command = [sys.executable, "-m", "tune.search", "minilm", "--data", data, "--storage", str(storage),
               "--name", name, "--seed", str(seed)]
    env = {**os.environ, "PYTHONPATH": str(code_dir)}  # the design's own modules, in Ray's workers too
    started = time.time()
    log = open(storage / f"{name}.log", "w")
    process = subprocess.Popen(command, cwd=code_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        process.wait(timeout=minutes * 60)
        ended_by = "finished"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: Tune saves its state, records stay
        ended_by = "budget (SIGINT)"
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log.close()
    return {"run_dir": str(storage / name), "started": started, "wall_minutes": (time.time() - started) / 60,
            "ended_by": ended_by, "exit_code": process.returncode}


def finished_at(record: dict) -> float:
    last = record["history"][-1]
    return last["started_at"] + last["train_seconds"] + last["eval_seconds"]


def curve(run: dict, design: str, minutes: float) -> dict:
    """Best-so-far test macro-F1 of the design's own choice, minute by minute."""
    records = [read_record(p) for p in find_records(run["run_dir"])]
    tuned = [r for r in records if r["method"] in FINE_TUNES and r.get("history")]
    tfidf = [r for r in records if r["method"] == "tfidf-logreg"]
    choose = ((lambda r: r["val"]["f1"]) if design == "previous"
              else (lambda r: selection_score(r["val"], "macro_f1")))
    trials = sorted(((finished_at(r) - run["started"]) / 60, r) for r in tuned if "val" in r)
    grid = np.arange(0, minutes + 1e-9, 0.25)
    best = []
    for t in grid:
        done = [r for at, r in trials if at <= t]
        best.append(100 * max(done, key=choose)["test"]["macro_f1"] if done else None)
    # The reference line, chosen the same way in both designs: validation macro-F1.
    tfidf_line = 100 * max(tfidf, key=lambda r: r["val"]["macro_f1"])["test"]["macro_f1"] if tfidf else None
    reached = next((float(t) for t, b in zip(grid, best) if b is not None and tfidf_line is not None
                    and b >= tfidf_line), None)
    chosen = max((r for _, r in trials), key=choose) if trials else None
    return {
        "minutes": grid.tolist(), "best_test_macro_f1": best, "tfidf_test_macro_f1": tfidf_line,
        "minutes_to_tfidf": reached, "trials_finished": len(trials),
        "final": None if chosen is None else {
            "method": chosen["method"], "params": chosen["params"], "val_f1": chosen["val"]["f1"],
            "val_macro_f1": chosen["val"].get("macro_f1"), "test_macro_f1": chosen["test"]["macro_f1"],
            "test_f1": chosen["test"]["f1"], "epochs_run": chosen["epochs_run"]},
        "split_hash": records[0]["split_hash"] if records else None,
        "test_reviews_key": test_reviews_key(run["run_dir"]),
    }


def test_reviews_key(run_dir: str) -> str | None:
    """A hash of the run's test reviews, to check both designs test on the same ones."""
    import hashlib

    import pandas as pd

    path = Path(run_dir) / "data" / "split.parquet"
    if not path.exists():
        return None
    split = pd.read_parquet(path)
    texts = sorted(split.loc[split["split"] == "test", "text"])
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def write_outputs(results: dict, out: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "results.json").write_text(json.dumps(results, indent=1))
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {"previous": "tab:red", "current": "tab:blue"}
    styles = ["-", "--", ":", "-."]
    for design, runs in results["designs"].items():
        for index, (seed, run) in enumerate(runs.items()):
            c = run["curve"]
            points = [(t, b) for t, b in zip(c["minutes"], c["best_test_macro_f1"]) if b is not None]
            if points:
                ax.step(*zip(*points), where="post", color=colours[design], linestyle=styles[index % 4],
                        label=f"{design} design, seed {seed}")
            if c["tfidf_test_macro_f1"] is not None:
                ax.axhline(c["tfidf_test_macro_f1"], color=colours[design], linestyle=styles[index % 4],
                           alpha=0.35, linewidth=1)
    ax.set_xlabel("minutes since the search command started")
    ax.set_ylabel("test macro-F1 of the validation-chosen fine-tune")
    ax.set_title("Search quality per minute (faint lines: each run's TF-IDF + LR)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", dpi=110)

    lines = [f"# Search quality per minute\n\nCommand: `{command}`\n\nMachine: {results['machine']}. "
             f"Budget: {results['minutes']} minutes of wall time per search, from process start.\n",
             "| design | seed | trials finished | chosen fine-tune | its test macro-F1 | TF-IDF test macro-F1 "
             "| minutes to the TF-IDF line | wall min | ended by |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for design, runs in results["designs"].items():
        for seed, run in runs.items():
            c, final = run["curve"], run["curve"]["final"]
            chosen = "none" if final is None else f"{final['method']} ({final['epochs_run']} epochs)"
            score = "" if final is None else f"{100 * final['test_macro_f1']:.2f}"
            reached = "not reached" if c["minutes_to_tfidf"] is None else f"{c['minutes_to_tfidf']:.2f}"
            lines.append(
                f"| {design} ({results['commits'][design]}) | {seed} | {c['trials_finished']} | {chosen} | "
                f"{score} | {c['tfidf_test_macro_f1']:.2f} | {reached} | {run['wall_minutes']:.1f} | "
                f"{run['ended_by']} |")
    lines.append(f"\nSame 600 test reviews in every run: {results['same_test_reviews']}.")
    lines.append(f"\n{results['summary']}\n\n![best so far](best_so_far.png)\n")
    (out / "results.md").write_text("\n".join(lines))


def summary(results: dict) -> str:
    times = {design: [run["curve"]["minutes_to_tfidf"] for run in runs.values()]
             for design, runs in results["designs"].items()}
    budget = results["minutes"]
    parts = []
    for design, values in times.items():
        shown = ", ".join("not within the budget" if v is None else f"{v:.2f}" for v in values)
        parts.append(f"{design}: {shown} minutes to reach its TF-IDF line")
    current, previous = times.get("current", []), times.get("previous", [])
    if current and all(v is not None for v in current) and np.mean(current) > 0:
        mean_current = float(np.mean(current))
        if previous and all(v is not None for v in previous):
            ratio = f"{np.mean(previous) / mean_current:.1f}x"
        else:  # the previous design never got there: the ratio is at least budget / current time
            ratio = f"more than {budget / mean_current:.1f}x (the previous design did not reach it in {budget} minutes)"
        parts.append(f"ratio of minutes (previous / current): {ratio}")
    return "; ".join(parts) + "."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget of each search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--previous", default="dc8d7a0", help="commit of the previous search design")
    parser.add_argument("--out", default="bench/results/search-quality")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commits = {"current": head, "previous": args.previous}
    code = {}
    for design, commit in commits.items():
        code[design] = out / "runs" / f"{design}-code"
        if not code[design].exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(code[design]), commit], cwd=ROOT, check=True)
    results = {"minutes": args.minutes, "seeds": args.seeds, "designs": {}, "commits": commits,
               "machine": f"{os.cpu_count()} cores, no GPU", "data": args.data}
    data = str(Path(args.data).resolve())
    for seed in args.seeds:
        for design in ("current", "previous"):
            storage = out / "runs" / design
            storage.mkdir(exist_ok=True)
            print(f"{design} design, seed {seed}: running for up to {args.minutes} minutes...", flush=True)
            run = run_design(code[design], data, storage, seed, args.minutes)
            run["curve"] = curve(run, design, args.minutes)
            results["designs"].setdefault(design, {})[str(seed)] = run
            final = run["curve"]["final"]
            print(f"  {run['ended_by']} after {run['wall_minutes']:.1f} min; chosen: "
                  f"{final and final['method']} test macro-F1 {final and round(100 * final['test_macro_f1'], 2)}; "
                  f"TF-IDF {run['curve']['tfidf_test_macro_f1']}", flush=True)
    keys = {run["curve"]["test_reviews_key"] for runs in results["designs"].values() for run in runs.values()}
    results["same_test_reviews"] = len(keys) == 1 and None not in keys
    results["summary"] = summary(results)
    command = "python bench/search_quality.py " + " ".join(sys.argv[1:])
    write_outputs(results, out, command)
    print(results["summary"])
    print(f"Written: {out}/results.md, results.json, best_so_far.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
