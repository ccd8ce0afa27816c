"""RUN_DIR/run.json: what a search was started with and how far it got. With the records, the
prepared data and Ray's experiment state beside it, the run folder is the whole truth of a run:
a resumed or extended search reads its settings from here, never from memory or new flags."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "run.json"


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    path = Path(run_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(STATE_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=1))
    os.replace(partial, path)
