"""The result record: one `record.json` per trial, the only thing the analyzer reads."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

RECORD_NAME = "record.json"
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "ray", "optuna", "scikit-learn")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_record(path: str | Path, record: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a half record behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=1, allow_nan=True))
    os.replace(partial, path)


def read_record(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def find_records(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).rglob(RECORD_NAME))
