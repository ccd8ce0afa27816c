"""The run folder: the one place that knows its layout, and the one writer of its records.

    STORAGE/NAME/
      run.json                       what the search was started with and how far it got (tune/run_state.py)
      data/                          the prepared data (tune/prepare.py), a DataFolder:
        split.parquet                  text, label, split (and group) of every row the run uses
        protocol.json                  how test was chosen: a random split, or the held-out groups
        tokens-<key>.parquet           token ids per row, per (tokenizer, max length, split hash)
        embeddings-<key>.npz           the baselines' frozen embeddings, per (model, revision, ...)
        micro_batches.json             the GPU probe's largest micro-batches (trainables/batch_probe.py)
      trials/<trial id>/record.json  one record per fine-tuning trial (core/record.py)
      baselines/<id>/record.json     one record per baseline grid point, beside its fitted model.joblib
      train/<trial id>/              Ray Train's run of each trial: its checkpoints, each holding
        checkpoint_*/                  trainable.safetensors, training_state.pt, record_at_checkpoint.json
      tune/search/, tune/extend-N/   Ray Tune's experiments: the first search, then each --extend
      optuna.journal                 the Optuna study of the search and its extensions (local run folders)
      leaderboard/                   the analyzer's tables and plots
      mlflow.db, wandb/              --track's stores when no tracking server is named (tune/tracking.py)
    STORAGE/.locks/NAME              held by the one search running in NAME (core/run_lock.py)

STORAGE is a folder or an s3:// or gs:// URI (core/storage.py). NAME is one folder name,
never a path, so a run folder is always inside its storage. The search, its trials, the analyzer
and export all reach these files through a RunFolder, so a run folder copied to another machine
or out of a bucket works from where it is now.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from core import storage
from core.errors import UserError
from core.run_lock import lock_run_folder

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
STATE_FILE = "run.json"
RECORD_FILE = "record.json"
MLFLOW_STORE = "mlflow.db"
BASELINE_MODEL_FILE = "model.joblib"
SPLIT_FILE = "split.parquet"
PROTOCOL_FILE = "protocol.json"
MICRO_BATCH_FILE = "micro_batches.json"
# A checkpoint folder's files (trainables/training.py writes them, export reads the weights)
CHECKPOINT_WEIGHTS = "trainable.safetensors"
CHECKPOINT_STATE = "training_state.pt"
TUNE_FOLDER = "tune"
FIRST_EXPERIMENT = "search"
# Set by the search for every Ray task and actor of its job (ray.init's runtime_env): where the run
# folder is now. A trial restored from a run folder that was moved has its old location in its
# saved config; this wins.
RUN_FOLDER_ENV = "REVIEW_TUNE_RUN_FOLDER"
# Each checkpoint (a trial's scored report points, core/reports.py) holds the trial's record as of
# that point, under a name the record search (record_paths) does not match: the record to trust
# when a stop fell between the two writes.
CHECKPOINT_RECORD = "record_at_checkpoint.json"
OPTUNA_JOURNAL = "optuna.journal"
# Ray Train (2.x, the v2 trainer) rewrites this beside a run's checkpoints each time it registers
# one, which it does only once the checkpoint's copy is whole; `latest_checkpoint_result` names the
# newest. Ray copies a checkpoint into place without a rename, so a stop during the copy leaves a
# newer, incomplete checkpoint_* folder that only this file tells apart.
TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"


def check_name(name: str) -> str:
    """A run folder name: letters, digits, '.', '_' and '-', and not '.' or '..'."""
    if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise UserError(f"--name {name!r} is not a run folder name: use letters, digits, '.', '_' and '-' "
                        "only (no '/', not '.' or '..'); the run folder is always created inside --storage.")
    return name


@dataclass(frozen=True)
class DataFolder:
    """RUN_DIR/data: what tune/prepare.py writes once and every trial and baseline reads."""

    path: str

    @property
    def split(self) -> str:
        return storage.join(self.path, SPLIT_FILE)

    @property
    def protocol(self) -> str:
        return storage.join(self.path, PROTOCOL_FILE)

    @property
    def micro_batches(self) -> str:
        return storage.join(self.path, MICRO_BATCH_FILE)

    @staticmethod
    def tokens_name(key: str) -> str:
        """The token cache's file name, as run.json keeps it (`tokens_file`)."""
        return f"tokens-{key}.parquet"

    def tokens(self, key: str) -> str:
        return self.file(self.tokens_name(key))

    @staticmethod
    def embeddings_name(key: str) -> str:
        return f"embeddings-{key}.npz"

    def file(self, name: str) -> str:
        """A cache file of this folder by the name a run's state or config keeps."""
        return storage.join(self.path, name)


@dataclass(frozen=True)
class RunFolder:
    path: str  # absolute local path or URI

    @classmethod
    def inside(cls, storage_root: str, name: str) -> "RunFolder":
        """STORAGE/NAME, with NAME checked so that it cannot leave STORAGE."""
        return cls(storage.join(storage.absolute(storage_root), check_name(name)))

    @classmethod
    def of_trial(cls, configured: str) -> "RunFolder":
        """A trial's run folder: where the search says it is now, else its config's."""
        return cls(os.environ.get(RUN_FOLDER_ENV) or configured)

    @classmethod
    def at(cls, location: str) -> "RunFolder":
        """An existing run folder, by its path or URI (the analyzer's and export's argument)."""
        return cls(storage.absolute(location))

    @property
    def name(self) -> str:
        return storage.name(self.path)

    @property
    def storage_root(self) -> str:
        return storage.parent(self.path)

    def __str__(self) -> str:
        return self.path

    # One search at a time (core/run_lock.py)
    @property
    def lock_location(self) -> str:
        """Beside the run folder, never in it: a refused search leaves no run folder behind."""
        return storage.join(self.storage_root, ".locks", self.name)

    def lock(self) -> None:
        """Hold this run folder for the rest of the process's life, or refuse (UserError) naming
        the search that holds it."""
        lock_run_folder(self.lock_location, self.path)

    # State (its fields: tune/run_state.py)
    def read_state(self) -> dict[str, Any] | None:
        location = storage.join(self.path, STATE_FILE)
        return json.loads(storage.read_text(location)) if storage.exists(location) else None

    def write_state(self, state: dict[str, Any]) -> None:
        storage.write_text(storage.join(self.path, STATE_FILE), json.dumps(state, indent=1))

    # Prepared data
    @property
    def data(self) -> str:
        return storage.join(self.path, "data")

    @property
    def data_folder(self) -> DataFolder:
        return DataFolder(self.data)

    # Records (their schema: core/record.py)
    def trial_record(self, trial_id: str) -> str:
        return storage.join(self.path, "trials", trial_id, RECORD_FILE)

    def baseline_record(self, baseline_id: str) -> str:
        return storage.join(self.path, "baselines", baseline_id, RECORD_FILE)

    def baseline_model(self, baseline_id: str) -> str:
        """The fitted baseline (joblib), beside its record."""
        return storage.join(self.path, "baselines", baseline_id, BASELINE_MODEL_FILE)

    def record_paths(self, under: str = "") -> list[str]:
        """Every record.json in the run folder (or in its subfolder `under`: "trials", "baselines")."""
        return find_records(storage.join(self.path, under) if under else self.path)

    # Ray
    @property
    def train(self) -> str:
        """Ray Train's storage_path: one run per trial (and per out-of-memory retry)."""
        return storage.join(self.path, "train")

    def train_run(self, name: str) -> str:
        return storage.join(self.train, name)

    def latest_checkpoint(self, train_run: str) -> str | None:
        """The newest checkpoint that Ray Train registered for a trial's run (TRAIN_SNAPSHOT), where
        the run folder is now; None when it registered none. A newer folder Ray never registered
        (a copy cut short) is never taken."""
        location = self.train_run(train_run)
        snapshot = storage.join(location, TRAIN_SNAPSHOT)
        if not storage.exists(snapshot):
            return None
        latest = json.loads(storage.read_text(snapshot)).get("latest_checkpoint_result")
        if not latest:
            return None
        checkpoint = storage.join(location, storage.name(latest["checkpoint_dir_name"]))
        return checkpoint if storage.exists(checkpoint) else None

    @property
    def tune(self) -> str:
        """Ray Tune's storage_path: one experiment per search and per --extend."""
        return storage.join(self.path, TUNE_FOLDER)

    def experiment(self, relative: str) -> str:
        """The folder of a Tune experiment, given as run.json names it (experiment_name). A run
        folder from before the tune/ subfolder names it '' (the run folder itself)."""
        return storage.join(self.path, relative) if relative else self.path

    @staticmethod
    def experiment_name(extension: int) -> str:
        """The path, relative to the run folder, of the first search (0) or the N-th --extend."""
        return f"{TUNE_FOLDER}/{FIRST_EXPERIMENT if extension == 0 else f'extend-{extension}'}"

    @property
    def optuna_journal(self) -> str:
        """The Optuna study's journal file (tune/searcher.py); local run folders only."""
        return storage.join(self.path, OPTUNA_JOURNAL)

    # Outputs
    @property
    def leaderboard(self) -> str:
        return storage.join(self.path, "leaderboard")

    @property
    def mlflow_store(self) -> str:
        """--track mlflow's SQLite store without a tracking URI (W&B writes its wandb/ beside it)."""
        return storage.join(self.path, MLFLOW_STORE)

    def shared_check_marker(self, token: str) -> str:
        """The file a multi-node search writes for every node to look for: in a folder of the
        storage that the search owns, beside the run folder and never inside it, so a refused
        search leaves no run folder behind (an object store keeps even an emptied folder)."""
        return storage.join(self.storage_root, ".search-checks", f"{self.name}-{token}")


def find_records(location: str) -> list[str]:
    """Every record.json under a folder or URI (a run folder, or any folder of them)."""
    return storage.find(location, RECORD_FILE)
