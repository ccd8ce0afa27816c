"""Turn a run folder's trial records into a ranked table (by validation F1; test is reported only).

    python -m results.leaderboard RUN_DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainables.errors import UserError
from trainables.record import find_records, read_record


def load_records(run_dir: str | Path) -> list[dict]:
    paths = find_records(run_dir)
    if not paths:
        raise UserError(f"No trial records (record.json) under {run_dir}. Is it a run folder?")
    records = []
    for path in paths:
        record = read_record(path)
        record["record_path"] = str(path)
        records.append(record)
    hashes = sorted({r["split_hash"] for r in records})
    if len(hashes) > 1:
        raise UserError(
            f"Records in {run_dir} come from different data splits ({', '.join(hashes)}); "
            "their scores cannot be compared. Compare one run folder (or one split) at a time."
        )
    return records


def rank(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["val"]["f1"], reverse=True)


def describe_params(record: dict) -> str:
    params = record.get("params", {})
    if record["method"] in ("qlora", "lora"):
        keys = ("target_modules", "lora_r", "lora_alpha", "learning_rate", "epochs")
    else:
        keys = tuple(k for k in params if k != "method")
    parts = []
    for key in keys:
        if key in params:
            value = params[key]
            parts.append(f"{key}={value:.2g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def format_table(records: list[dict]) -> str:
    lines = ["| rank | trial | method | settings | epochs | val F1 | test F1 | train s |",
             "|---:|---|---|---|---:|---:|---:|---:|"]
    for i, r in enumerate(rank(records), 1):
        epochs = f"{r['epochs_run']}/{r['params']['epochs']}" if r.get("epochs_run") else ""
        lines.append(
            f"| {i} | {r.get('trial_id', '')} | {r['method']} | {describe_params(r)} | {epochs} | "
            f"{100 * r['val']['f1']:.2f} | {100 * r['test']['f1']:.2f} | {r.get('train_seconds', 0):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by python -m tune.search")
    args = parser.parse_args(argv)
    try:
        print(format_table(load_records(args.run_dir)))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
