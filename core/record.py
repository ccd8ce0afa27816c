"""The result record: one `record.json` per trial, the only thing the analyzer reads."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from core import storage

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


def write_record(location: str, record: dict[str, Any]) -> None:
    """Written whole or not at all: a crash mid-write never leaves a half record behind."""
    storage.write_text(location, json.dumps(record, indent=1, allow_nan=True))


def read_record(location: str) -> dict[str, Any]:
    return json.loads(storage.read_text(location))


def find_records(run_dir: str) -> list[str]:
    return storage.find(run_dir, RECORD_NAME)
