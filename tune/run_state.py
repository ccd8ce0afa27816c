"""RUN_DIR/run.json: what a search was started with and how far it got. With the records, the
prepared data and Ray's experiment state beside it, the run folder is the whole truth of a run:
a resumed or extended search reads its settings from here, never from memory or new flags."""

from __future__ import annotations

import json
from typing import Any

from trainables import storage

STATE_FILE = "run.json"


def read_state(run_dir: str) -> dict[str, Any] | None:
    location = storage.join(run_dir, STATE_FILE)
    return json.loads(storage.read_text(location)) if storage.exists(location) else None


def write_state(run_dir: str, state: dict[str, Any]) -> None:
    storage.write_text(storage.join(run_dir, STATE_FILE), json.dumps(state, indent=1))
