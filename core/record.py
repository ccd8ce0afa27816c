"""The result record: one record.json per fine-tuning trial and per baseline grid point, the only
thing the analyzer, export and the searcher's warm start read.

`Record` is the schema: every key a record may hold, what it means and who writes it. Records
are built only through `scored_record` (a fine-tune's scored point, a baseline's fit) and
`failed_record` (a trial or grid point that raised), which refuse keys outside the schema and
missing ones; `load_records` reads a run folder's records back, each brought up to the current
schema by `upgrade_record` (the one place that knows older records' keys).
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any, TypedDict, get_type_hints

from core import storage
from core.data import RANDOM_PROTOCOL
from core.errors import UserError
from core.run_folder import RECORD_FILE, find_records

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "ray", "optuna", "scikit-learn")
FAILED = "failed"  # a record's `status` when its trial or grid point raised
FINE_TUNES = ("qlora", "lora", "full")  # the methods a trial fine-tunes with; the rest are baselines
ADAPTER_METHODS = ("qlora", "lora")


class Record(TypedDict, total=False):
    # Identity: every record, failed ones included
    method: str  # qlora, lora, full (FINE_TUNES), or a baseline: tfidf-logreg, embed-logreg, embed-svm, embed-mlp
    preset: str  # the search-space preset (search_spaces/)
    model: str  # the backbone as the search named it ("tfidf" for the TF-IDF baseline)
    trial_id: str  # Ray Tune's trial id, or a baseline's METHOD-INDEX
    params: dict  # the settings that define it in the leaderboard (searched, or the grid point's)
    config: dict  # its whole config as trained (FineTuneConfig or BaselineConfig fields)
    split_hash: str  # the data split it was scored on; records of two splits are never compared
    seed: int
    # Scores: the model its checkpoint (or saved baseline) holds
    epochs_run: float | None  # fractional epochs at the scored point; None for a baseline
    eval_point: int  # the report point scored (core/reports.py); fine-tunes only
    selection: dict  # {"metric": the run's selection metric, "val_score": its value}
    val: dict  # core.metrics.classification_metrics on validation
    val_labels: list  # validation labels in the split's order (what an ensemble is chosen on)
    val_prob_real: list  # probability of real for each validation review, same order
    test: dict  # the same on test: reported, never used to choose
    test_labels: list  # test labels in the split's order (1 = real)
    test_prob_real: list  # probability of real for each test review, same order
    protocol: str  # the split protocol (core/data.protocol_name)
    test_group: list  # each test review's group, with groups
    test_by_group: dict  # group -> test metrics, with groups
    history: list  # every report point: val metrics, loss, seconds, placement ([] for a baseline)
    started_at_epochs: list  # the epoch each (re)start of a trial began at
    startup_seconds: float  # this (re)start's seconds to its first training step
    startup_parts: dict  # those seconds by step (trainables/training.startup_parts)
    loading_overrides: dict  # what the trial's machine changed when loading the model
    train_seconds: float
    eval_seconds: float
    samples_per_second: float
    gpu_peak_mb: float | None  # CUDA's peak allocation
    cpu_peak_rss_mb: float | None  # the process's peak resident memory
    device: str  # "cpu" or the card's name
    bf16_autocast: bool  # trained and scored in bf16 mixed precision
    trainable_params: int
    total_params: int
    adapter_bytes: int  # the trainable weights' (or the pickled baseline's) size
    train_run_dir: str  # Ray Train's run of the trial (its checkpoints), where the record was written
    versions: dict  # library versions (library_versions)
    # Failure: a trial or grid point that raised keeps what it measured before
    status: str  # FAILED, or absent
    error: str  # the root cause's first line
    out_of_memory: bool
    # Added by load_records, never written: where the record was read from
    record_path: str


FIELDS = frozenset(get_type_hints(Record))
IDENTITY = ("method", "preset", "model", "trial_id", "params", "config", "split_hash", "seed")
SCORES = ("epochs_run", "val", "test", "test_labels", "test_prob_real", "protocol", "history",
          "train_seconds", "eval_seconds", "device", "versions")


def check_fields(record: dict, required: tuple[str, ...]) -> None:
    """A programming error, not a user's: a builder that writes a key the schema lacks, or omits one."""
    unknown = sorted(set(record) - FIELDS)
    missing = [key for key in required if key not in record]
    if unknown or missing:
        raise ValueError(f"Record outside its schema (core/record.Record): unknown {unknown}, missing {missing}.")
    for split in ("val", "test"):
        if len(record.get(f"{split}_labels", ())) != len(record.get(f"{split}_prob_real", ())):
            raise ValueError(f"A record's {split}_labels and {split}_prob_real differ in length.")


def identity(*, method: str, preset: str, model: str, trial_id: str, params: dict, config: dict,
             split_hash: str, seed: int) -> Record:
    """What every record says of what it is, scored or failed."""
    return Record(method=method, preset=preset, model=model, trial_id=trial_id, params=params, config=config,
                  split_hash=split_hash, seed=seed)


def scored_record(who: Record, **fields: Any) -> Record:
    """A record with scores: `who` (identity) and the SCORES, plus any other schema field."""
    record = Record(**who, **fields)
    check_fields(record, IDENTITY + SCORES)
    return record


def failed_record(record: Record, reason: str, out_of_memory: bool = False) -> Record:
    """`record` (an identity, or a record that scored before it failed) marked failed with its reason."""
    failed = Record({**record, "status": FAILED, "error": reason, "out_of_memory": out_of_memory})
    check_fields(failed, IDENTITY)
    return failed


def is_failed(record: dict) -> bool:
    return record.get("status") == FAILED


def is_fine_tune(record: dict) -> bool:
    return record["method"] in FINE_TUNES


def has_scores(record: dict) -> bool:
    """Every finished record, and a failed one that reached a report point first."""
    return "val" in record


def upgrade_record(record: dict) -> Record:
    """An older record in the current schema: a record from before protocols was scored on a
    random split; one from before the two memory keys kept one `peak_memory_mb` (CUDA's on a GPU,
    the process's RSS on a CPU)."""
    record = dict(record)
    record.setdefault("protocol", RANDOM_PROTOCOL)
    if "peak_memory_mb" in record:
        peak = record.pop("peak_memory_mb")
        on_gpu = record.get("device", "cpu") != "cpu"
        record.setdefault("gpu_peak_mb", peak if on_gpu else None)
        record.setdefault("cpu_peak_rss_mb", None if on_gpu else peak)
    return Record(record)


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_record(location: str, record: Record) -> None:
    """Written whole or not at all: a crash mid-write never leaves a half record behind."""
    storage.write_text(location, json.dumps(record, indent=1, allow_nan=True))


def read_record(location: str) -> Record:
    return json.loads(storage.read_text(location))


def load_records(run_dir: str) -> list[Record]:
    """Every record of a run folder, upgraded, each with its `record_path`; refused when the
    folder has none, or records of different splits or test protocols (never comparable)."""
    paths = find_records(run_dir)
    if not paths:
        raise UserError(f"No trial records ({RECORD_FILE}) under {run_dir}. Is it a run folder?")
    records = [Record({**upgrade_record(read_record(path)), "record_path": str(path)}) for path in paths]
    protocols = sorted({r["protocol"] for r in records})
    if len(protocols) > 1:
        raise UserError(
            f"Records in {run_dir} come from different test protocols ({'; '.join(protocols)}); a "
            "held-out group's score is not comparable with a random split's. Compare one run folder at a time."
        )
    hashes = sorted({r["split_hash"] for r in records})
    if len(hashes) > 1:
        raise UserError(
            f"Records in {run_dir} come from different data splits ({', '.join(hashes)}); "
            "their scores cannot be compared. Compare one run folder (or one split) at a time."
        )
    return records
