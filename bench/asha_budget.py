"""An estimate, not a measurement: the training samples a 20-trial search on the `full` profile
spends under ASHA's rungs at epochs (the previous design) and at report points inside an epoch
(this one), and what they cost at measured throughputs.

    python bench/asha_budget.py --out bench/results/asha-budget

Ray's own ASHAScheduler decides, fed by a simulated search: each trial has a quality drawn at
random, its validation score at every report point is that quality (so rankings never change
with training: the best case for early stopping, see below), and trials arrive in a random order,
`--concurrent` at a time, each reporting its points in turn. ASHA is the real
`ray.tune.schedulers.ASHAScheduler` with each design's time attribute, grace period, reduction
factor and maximum; a trial stops where it says STOP. Averaged over `--repeats` random searches.

Real learning curves cross (a slow starter can end first), which this ignores, and the trials
ASHA stops early are those a real search would also have to train in part; the figure is what
each schedule spends, not what it finds. Throughputs: the training samples per second measured
on an H200 for the Stella-size stand-in (README, "GPU", 8 GiB cap: 50.6 and 90.1 samples/s) and
this machine's cost per training sample of a MiniLM trial from bench/results/search-quality.
Writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_REVIEWS = 19_393  # the full profile's training split (README, "Results")
DESIGNS = {
    # name: (report points an epoch, grace in points, reduction factor); 3 epochs in both
    "previous: rungs at epochs 1 and 2": (1, 1, 2),
    "current: rungs at 1/4, 3/4 and 2 1/4 epochs": (4, 1, 3),
}
H200_SAMPLES_PER_SECOND = {"qlora r16, Stella-size stand-in (slowest setting)": 50.6,
                           "fastest setting measured": 90.1}


class FakeTrial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def simulate(points_per_epoch: int, grace: int, factor: int, epochs: int, trials: int, concurrent: int,
             rng: np.random.Generator) -> float:
    """Report points trained by one simulated search (all its trials together)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    last = points_per_epoch * epochs
    scheduler = ASHAScheduler(time_attr="eval_point", metric="score", mode="max", max_t=last,
                              grace_period=grace, reduction_factor=factor)
    quality = rng.uniform(size=trials)
    waiting = list(rng.permutation(trials))
    running: dict[int, int] = {}  # trial -> points done
    fakes = {i: FakeTrial(f"t{i}") for i in range(trials)}
    trained = 0
    while waiting or running:
        while waiting and len(running) < concurrent:
            index = waiting.pop(0)
            scheduler.on_trial_add(None, fakes[index])
            running[index] = 0
        for index in list(running):  # each running trial reports its next point, in turn
            running[index] += 1
            trained += 1
            result = {"eval_point": running[index], "score": float(quality[index])}
            decision = scheduler.on_trial_result(None, fakes[index], result)
            if decision == TrialScheduler.STOP or running[index] >= last:
                scheduler.on_trial_complete(None, fakes[index], result)
                del running[index]
    return trained / points_per_epoch  # epochs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=4, help="trials running at once (4 = --trials-per-gpu 4)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--quality", default="bench/results/search-quality/results.json",
                        help="the search-quality benchmark's results, for this machine's cost per sample")
    parser.add_argument("--out", default="bench/results/asha-budget")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {"trials": args.trials, "epochs": args.epochs, "concurrent": args.concurrent, "repeats": args.repeats,
               "train_reviews": TRAIN_REVIEWS, "designs": {}}
    for name, (per_epoch, grace, factor) in DESIGNS.items():
        epochs = [simulate(per_epoch, grace, factor, args.epochs, args.trials, args.concurrent, rng)
                  for _ in range(args.repeats)]
        results["designs"][name] = {"evals_per_epoch": per_epoch, "rung_grace": grace, "rung_factor": factor,
                                    "epochs_mean": float(np.mean(epochs)), "epochs_p10": float(np.percentile(epochs, 10)),
                                    "epochs_p90": float(np.percentile(epochs, 90)),
                                    "samples_mean": float(np.mean(epochs)) * TRAIN_REVIEWS}
    cpu_cost = cpu_seconds_per_sample(ROOT / args.quality)
    results["cpu_seconds_per_sample"] = cpu_cost
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [f"# Training a {args.trials}-trial search spends on the full profile (an estimate)\n",
             f"Command: `python bench/asha_budget.py {' '.join(sys.argv[1:])}`. Simulated with Ray's own "
             f"ASHAScheduler: {args.trials} trials of {args.epochs} epochs over {TRAIN_REVIEWS:,} training reviews, "
             f"{args.concurrent} at a time, scores that never cross, {args.repeats} random searches (see the script).\n",
             "| schedule | epochs trained, mean (10th-90th pct.) | training samples | "
             + " | ".join(f"H200 hours at {v} samples/s" for v in H200_SAMPLES_PER_SECOND.values()) + " |",
             "|---|---|---:|" + "---:|" * len(H200_SAMPLES_PER_SECOND)]
    for name, design in results["designs"].items():
        hours = " | ".join(f"{design['samples_mean'] / v / 3600:.1f}" for v in H200_SAMPLES_PER_SECOND.values())
        lines.append(f"| {name} | {design['epochs_mean']:.1f} ({design['epochs_p10']:.1f}-{design['epochs_p90']:.1f}) | "
                     f"{design['samples_mean']:,.0f} | {hours} |")
    if cpu_cost:
        lines.append(f"\nOn this project's 2-core CPU a MiniLM trial cost {cpu_cost:.4f} s per training sample "
                     "(train and evaluation, the search-quality benchmark's current design).")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def cpu_seconds_per_sample(path: Path) -> float | None:
    if not path.exists():
        return None
    runs = json.loads(path.read_text())["designs"].get("current", {}).values()
    costs = [run["curve"]["cost"]["seconds_per_sample"] for run in runs if run["curve"].get("cost")]
    costs = [c for c in costs if c]
    return float(np.mean(costs)) if costs else None


if __name__ == "__main__":
    sys.exit(main())
