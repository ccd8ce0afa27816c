"""Search economics at the same budget: ASHA's rungs at epochs (the previous design) against rungs
inside an epoch (this one), same machine, same data, same wall-clock limit, several searcher seeds.

    python bench/search_quality.py --data ../shared/data/fake_reviews/fake_reviews_dataset.csv.gz \
        --minutes 12 --seeds 42 7 --previous 890106e --out bench/results/search-quality

Each design is the default command a user runs (`python -m tune.search minilm --data ...`: the `cpu`
profile and every baseline of that design, plus --seed), started in its own process and stopped
with SIGINT at the limit if still running. Each design runs from a git worktree of its commit (the
current one: HEAD), so what runs is exactly what is committed. Both test on the same 600 reviews
(the script checks it). A design and seed already run for the same commit are read from OUT/runs/
(`--rerun` runs them again); `--designs current` runs one design and reads the other's saved runs.

Per run: configurations evaluated (fine-tuning trials with at least one validation score), how many
reached the design's first rung, were stopped there or later by ASHA ("ended" before their
schedule's end, in the console), completed their schedule, or were cut by the time budget; the
fine-tune the design itself chooses (best validation macro-F1) with its test macro-F1 and a 95 %
bootstrap interval; the TF-IDF line (the run's TF-IDF + LR chosen by validation macro-F1); the
minutes until the chosen fine-tune first stood above that line; training samples spent and the
seconds each cost (train + evaluation, per training sample), which the README's estimate for the
full profile uses; and the Optuna study's trial states.
Writes OUT/results.json, OUT/results.md and OUT/best_so_far.png; runs go to OUT/runs/ (ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.metrics import selection_score  # noqa: E402
from core.record import FINE_TUNES, find_records, read_record  # noqa: E402
from core.reports import history_point  # noqa: E402
from results.importance import rungs_of  # noqa: E402
from tune.searcher import STUDY_NAME, journal_storage, schedule_done  # noqa: E402


def run_design(code_dir: Path, data: str, storage: Path, seed: int, minutes: float) -> dict:
    """Run one search as a user would, under a wall-clock limit. Returns when and how it ended."""
    name = f"seed{seed}"
    command = [sys.executable, "-m", "tune.search", "minilm", "--data", data, "--storage", str(storage),
               "--name", name, "--seed", str(seed)]
    env = {**os.environ, "PYTHONPATH": str(code_dir)}  # the design's own modules, in Ray's workers too
    shutil.rmtree(storage / name, ignore_errors=True)  # a rerun starts afresh, not as a resume
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
    return {"run_dir": str(storage / name), "log": str(storage / f"{name}.log"), "started": started,
            "wall_minutes": (time.time() - started) / 60, "ended_by": ended_by, "exit_code": process.returncode}


def finished_at(record: dict) -> float:
    last = record["history"][-1]
    return last["started_at"] + last["train_seconds"] + last["eval_seconds"]


def curve(run: dict, design: str, minutes: float) -> dict:
    """Best-so-far test macro-F1 of the design's own choice, minute by minute, and the run's counts."""
    records = [read_record(p) for p in find_records(run["run_dir"])]
    tuned = [r for r in records if r["method"] in FINE_TUNES and r.get("history") and "val" in r]
    tfidf = [r for r in records if r["method"] == "tfidf-logreg"]
    choose = lambda r: selection_score(r["val"], "macro_f1")  # noqa: E731 (both designs choose so)
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
    best_tfidf = max(tfidf, key=lambda r: r["val"]["macro_f1"]) if tfidf else None
    return {
        "minutes": grid.tolist(), "best_test_macro_f1": best, "tfidf_test_macro_f1": tfidf_line,
        "tfidf_interval": macro_f1_interval(best_tfidf) if best_tfidf else None,
        "minutes_to_tfidf": reached, "trials_finished": len(trials),
        "final": None if chosen is None else {
            "trial_id": chosen["trial_id"], "method": chosen["method"], "params": chosen["params"],
            "val_f1": chosen["val"]["f1"], "val_macro_f1": chosen["val"].get("macro_f1"),
            "test_macro_f1": chosen["test"]["macro_f1"], "test_interval": macro_f1_interval(chosen),
            "test_f1": chosen["test"]["f1"], "epochs_run": chosen["epochs_run"]},
        "counts": trial_counts(tuned, Path(run["log"]).read_text() if Path(run.get("log", "")).is_file() else ""),
        "study": study_states(run["run_dir"]),
        "cost": training_cost(tuned, run["run_dir"]),
        "split_hash": records[0]["split_hash"] if records else None,
        "test_reviews_key": test_reviews_key(run["run_dir"]),
    }


def macro_f1_interval(record: dict, samples: int = 1000, seed: int = 0) -> list[float]:
    """95 % bootstrap interval of the record's test macro-F1 (x 100), over its test reviews."""
    from sklearn.metrics import f1_score

    labels = np.asarray(record["test_labels"])
    predicted = (np.asarray(record["test_prob_real"]) >= 0.5).astype(int)
    rng = np.random.default_rng(seed)
    scores = [f1_score(labels[i], predicted[i], average="macro", zero_division=0)
              for i in (rng.integers(0, len(labels), len(labels)) for _ in range(samples))]
    return [100 * float(np.percentile(scores, 2.5)), 100 * float(np.percentile(scores, 97.5))]


def trial_counts(tuned: list[dict], log: str) -> dict:
    """How the fine-tuning trials ended: the console says which ended (ASHA's stop or the schedule's
    end) and which the search's end cut short; the records say how far each got."""
    import re

    ended = set(re.findall(r"Trial (\w+) ended after", log))
    cut = set(re.findall(r"Trial (\w+) stopped with the search", log))
    done = {r["trial_id"] for r in tuned if schedule_done(r)}
    first_rung = {r["trial_id"] for r in tuned if max(history_point(h) for h in r["history"]) >= rungs_of(r)[0]}
    return {"evaluated": len(tuned), "reached_first_rung": len(first_rung),
            "stopped_by_asha": len(ended - done), "completed": len(done & ended), "cut_by_budget": len(cut)}


def study_states(run_dir: str) -> dict | None:
    """The run folder's Optuna study: trials by state, and how many have an intermediate value."""
    from core.run_folder import RunFolder

    folder = RunFolder(run_dir)
    if not Path(folder.optuna_journal).exists():
        return None
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(folder))
    states = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {"states": states, "with_intermediate_values": sum(1 for t in study.trials if t.intermediate_values)}


def training_cost(tuned: list[dict], run_dir: str) -> dict:
    """Training samples the fine-tunes spent, and the seconds (train + evaluation) each cost."""
    import pandas as pd

    split = pd.read_parquet(Path(run_dir) / "data" / "split.parquet")
    train_rows = int((split["split"] == "train").sum())
    samples = sum(r["history"][-1].get("samples_seen", r["history"][-1]["epoch"] * train_rows) for r in tuned)
    seconds = sum(r.get("train_seconds", 0) + r.get("eval_seconds", 0) for r in tuned)
    return {"train_rows": train_rows, "samples": int(samples),
            "seconds_per_sample": seconds / samples if samples else None,
            "startup_seconds": [round(r["startup_seconds"], 1) for r in tuned if "startup_seconds" in r]}


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
    ax.set_title("Best fine-tune so far (faint lines: each run's TF-IDF + LR)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", dpi=110)

    lines = [f"# Search economics at the same budget\n\nCommand: `{command}`\n\nMachine: {results['machine']}. "
             f"Limit: {results['minutes']} minutes of wall time per search, from process start. Designs: "
             "`previous` = ASHA's rungs at epochs; `current` = rungs inside an epoch (this commit).\n",
             "| design | seed | evaluated | reached 1st rung | stopped by ASHA | completed | cut by budget "
             "| chosen fine-tune | its val macro-F1 | its test macro-F1 (95% CI) | TF-IDF test macro-F1 (95% CI) "
             "| minutes to the TF-IDF line | study: with values / PRUNED / COMPLETE | wall min |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|"]
    for design, runs in results["designs"].items():
        for seed, run in runs.items():
            c, final, counts = run["curve"], run["curve"]["final"], run["curve"]["counts"]
            chosen = "none" if final is None else f"{final['method']} ({final['epochs_run']:g} epochs)"
            score = "" if final is None else interval_text(final["test_macro_f1"], final["test_interval"])
            val = "" if final is None else f"{100 * final['val_macro_f1']:.2f}"
            reached = "not reached" if c["minutes_to_tfidf"] is None else f"{c['minutes_to_tfidf']:.2f}"
            tfidf = interval_text(c["tfidf_test_macro_f1"] / 100, c["tfidf_interval"])
            study = c["study"] or {"states": {}, "with_intermediate_values": 0}
            states = study["states"]
            lines.append(
                f"| {design} ({results['commits'][design]}) | {seed} | {counts['evaluated']} | "
                f"{counts['reached_first_rung']} | {counts['stopped_by_asha']} | {counts['completed']} | "
                f"{counts['cut_by_budget']} | {chosen} | {val} | {score} | {tfidf} | {reached} | "
                f"{study['with_intermediate_values']} / {states.get('PRUNED', 0)} / {states.get('COMPLETE', 0)} | "
                f"{run['wall_minutes']:.1f} |")
    lines.append("\nCost of training (train + evaluation seconds per training sample, over every fine-tuning "
                 "trial) and the seconds from each trial's start to its first training step (current design):\n")
    for design, runs in results["designs"].items():
        for seed, run in runs.items():
            cost = run["curve"]["cost"]
            per = "" if cost["seconds_per_sample"] is None else f"{cost['seconds_per_sample']:.4f} s"
            startups = ", ".join(f"{s:g}" for s in cost["startup_seconds"]) or "not recorded"
            lines.append(f"- {design}, seed {seed}: {cost['samples']:,} training samples, {per} each; "
                         f"start-up seconds: {startups}")
    lines.append(f"\nSame 600 test reviews in every run: {results['same_test_reviews']}.")
    lines.append(f"\n{results['summary']}\n\n![best so far](best_so_far.png)\n")
    (out / "results.md").write_text("\n".join(lines))


def interval_text(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return ""
    return f"{100 * value:.2f}" + (f" ({interval[0]:.1f}-{interval[1]:.1f})" if interval else "")


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
    parser.add_argument("--previous", default="890106e", help="commit of the previous design (ASHA's rungs at epochs)")
    parser.add_argument("--out", default="bench/results/search-quality")
    parser.add_argument("--rerun", action="store_true", help="run again what OUT/runs/ holds for the same commit")
    parser.add_argument("--designs", nargs="+", default=["current", "previous"], choices=["current", "previous"],
                        help="which designs to run now; runs of the others are read from OUT/runs/")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commits = {"current": head, "previous": args.previous}
    code = {}
    for design in args.designs:  # each design runs exactly its commit, from its own worktree
        code[design] = out / "runs" / f"{design}-code"
        if code[design].exists():
            subprocess.run(["git", "checkout", "--quiet", "--detach", commits[design]], cwd=code[design], check=True)
        else:
            subprocess.run(["git", "worktree", "add", "--detach", str(code[design]), commits[design]],
                           cwd=ROOT, check=True)
    results = {"minutes": args.minutes, "seeds": args.seeds, "designs": {}, "commits": commits,
               "machine": f"{os.cpu_count()} cores, no GPU", "data": args.data}
    data = str(Path(args.data).resolve())
    for seed in args.seeds:
        for design in ("current", "previous"):
            storage = out / "runs" / design
            storage.mkdir(exist_ok=True)
            saved = storage / f"seed{seed}.run.json"
            kept = json.loads(saved.read_text()) if saved.exists() else None
            if design in args.designs and (kept is None or kept.get("commit") != commits[design] or args.rerun):
                print(f"{design} design, seed {seed}: running for up to {args.minutes} minutes...", flush=True)
                run = run_design(code[design], data, storage, seed, args.minutes)
                saved.write_text(json.dumps({**run, "commit": commits[design]}))
            elif kept is not None:  # this commit's run, from an earlier call
                print(f"{design} design, seed {seed}: read from {saved}", flush=True)
                run = kept
            else:
                continue
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
