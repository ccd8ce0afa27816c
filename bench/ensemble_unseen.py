"""A run's ensemble against its default export, on reviews the search never saw.

    python bench/ensemble_unseen.py RUN_DIR [--data PATH] [--reviews 2000]

Exports the run's default bundle (the best fine-tune by validation) and its ensemble
(`results.export --ensemble`), draws `--reviews` reviews of the dataset that are in none of the
run's splits (stratified by label, seed 0), and predicts them with each bundle through
`results.predict` in a fresh process, timing it. Writes bench/results/ensemble/unseen.json and
.md: macro-F1 with a 95 % bootstrap interval, McNemar's p between the two, and seconds per
bundle (an ensemble runs every member).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import load_reviews  # noqa: E402
from core.groups import read_split  # noqa: E402
from core.metrics import classification_metrics  # noqa: E402
from core.run_folder import RunFolder  # noqa: E402
from results.leaderboard import bootstrap_macro_f1_interval, mcnemar_p  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"


def unseen_reviews(run_dir: str, data: str, count: int) -> pd.DataFrame:
    """`count` reviews (text, label) of `data` in none of the run's splits, stratified by label."""
    frame, _ = load_reviews(data)
    used = set(read_split(RunFolder.at(run_dir).data)["text"])
    rest = frame[~frame["text"].isin(used)]
    sample = rest.groupby("label").sample(frac=count / len(rest), random_state=0)
    return sample[["text", "label"]].reset_index(drop=True)


def run(*args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ensemble"))
    args = parser.parse_args()
    reviews = unseen_reviews(args.run_dir, args.data, args.reviews)
    labels = reviews["label"].to_numpy()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        reviews[["text"]].to_csv(folder / "unseen.csv", index=False)
        for name, flags in (("default export", []), ("ensemble", ["--ensemble"])):
            bundle = folder / name.replace(" ", "-")
            run("-m", "results.export", args.run_dir, "--out", str(bundle), *flags)
            written = json.loads((bundle / "bundle.json").read_text())
            out = folder / f"{bundle.name}.csv"
            seconds = run("-m", "results.predict", str(bundle), str(folder / "unseen.csv"), "--out", str(out),
                          "--trust-pickle")
            prob = pd.read_csv(out)["prob_real"].to_numpy()
            low, high = bootstrap_macro_f1_interval(labels, prob)
            members = ([f"{m['folder']} x{m['weight']:.2f}" for m in written["members"]]
                       if written["kind"] == "ensemble" else [written["trial_id"]])
            results[name] = {"members": members, "macro_f1": classification_metrics(labels, prob)["macro_f1"],
                             "low": low, "high": high, "predict_seconds": seconds, "prob": prob}
    p = mcnemar_p(labels, results["default export"]["prob"], results["ensemble"]["prob"])
    summary = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d"),
               "reviews": len(reviews), "real": int(labels.sum()), "mcnemar_p": p,
               "bundles": {name: {k: v for k, v in r.items() if k != "prob"} for name, r in results.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unseen.json").write_text(json.dumps(summary, indent=1))
    rows = "\n".join(f"| {name} | {', '.join(r['members'])} | {100 * r['macro_f1']:.2f} ({100 * r['low']:.1f}-"
                     f"{100 * r['high']:.1f}) | {r['predict_seconds']:.0f} |" for name, r in results.items())
    (out / "unseen.md").write_text(
        f"# Ensemble against the default export, on unseen reviews\n\n`{summary['command']}` on {summary['date']}: "
        f"{len(reviews)} reviews of the dataset in none of the run's splits ({summary['real']} real), "
        "stratified by label, seed 0; each bundle predicted in a fresh process with `results.predict` (seconds "
        "include loading every member).\n\n| bundle | members | macro-F1 (95% CI) | predict s |\n|---|---|---|---:|\n"
        f"{rows}\n\nMcNemar p (same reviews): {p:.3g}.\n")
    print((out / "unseen.md").read_text())


if __name__ == "__main__":
    main()
