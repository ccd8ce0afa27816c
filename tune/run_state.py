"""A search's state: what run.json holds, typed. Built once when a search starts (tune/lifecycle.py),
read back with every older run.json's upgrade in one place (`from_json`), and changed only through
named steps (moved, extended, finished), so nothing else indexes run.json by key.

`base` is the trials' fixed settings (FineTuneConfig fields: the model, the profile's fidelity,
resources, the prepared data); Ray Tune gets it as its `param_space` and the searcher's
define-by-run space adds the drawn settings to it. It stays a plain mapping in run.json, as Ray
restores it, and is read through `fixed` (a FineTuneConfig).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.data import RANDOM_PROTOCOL
from core.metrics import DEFAULT_METRIC
from core.run_folder import RunFolder
from trainables.config import FineTuneConfig

DEFAULT_TPE_STARTUP_TRIALS = 10  # a run.json from before the profile set it: Optuna's default


@dataclass
class RunState:
    preset: str = field(metadata={"help": "the search-space preset (search_spaces/)"})
    profile: str = field(metadata={"help": "the run profile (tune/profiles.py), --profile"})
    data: str | list[str] = field(metadata={"help": "--data: a hub id as given, a path made absolute; several: a list"})
    base: dict[str, Any] = field(metadata={"help": "the trials' fixed settings: FineTuneConfig fields"})
    baselines: str = field(metadata={"help": "--baselines: none, tfidf, fast or all"})
    num_samples: int = field(metadata={"help": "trials of the first search, --num-samples"})
    seed: int = field(metadata={"help": "the searcher's and training's seed, --seed"})
    run_dir: str = field(default="", metadata={"help": "where the run folder is now (trials read their data there)"})
    pad_id: int = field(default=0, metadata={"help": "the tokenizer's pad id (the embedding baselines' batches)"})
    max_concurrent: int | None = field(default=None, metadata={"help": "--max-concurrent; None = from the resources"})
    labels: str = field(default="", metadata={"help": "the label mapping the data was read with"})
    protocol: str = field(default=RANDOM_PROTOCOL,
                          metadata={"help": "the split protocol: random, or the held-out groups"})
    group_col: str | None = field(default=None, metadata={"help": "the grouping column, or None"})
    loading: str | None = field(default=None, metadata={"help": "model-loading overrides on the driver"})
    tpe_startup_trials: int = field(default=DEFAULT_TPE_STARTUP_TRIALS,
                                    metadata={"help": "random trials before TPE models (the seeds count)"})
    metric: str = field(default=DEFAULT_METRIC, metadata={"help": "the validation selection metric, --metric"})
    time_budget_s: float | None = field(default=None, metadata={
        "help": "seconds of trials of each search or extension, or None; --time-budget replaces it"})
    experiment: str = field(default="", metadata={
        "help": "the current Tune experiment relative to the run folder (RunFolder.experiment_name); "
                "'' = the run folder itself, as before the tune/ subfolder"})
    extensions: int = field(default=0, metadata={"help": "how many times --extend added trials"})
    extend_samples: int | None = field(default=None, metadata={"help": "trials of the current --extend"})
    finished: bool = field(default=False, metadata={"help": "the search (or its last extension) ended"})
    track: list[str] = field(default_factory=list, metadata={"help": "--track: mlflow, wandb (tune/tracking.py)"})
    tracking_uri: str | None = field(default=None, metadata={"help": "--tracking-uri: MLflow's, if given"})

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> "RunState":
        """run.json as any earlier version wrote it: `data_dir` in base (before run_dir: dropped,
        the run folder's path is where the data is), no `metric` (the default) or
        `tpe_startup_trials` (Optuna's), keys since retired (ignored)."""
        known = {f.name for f in fields(cls)}
        state = cls(**{key: value for key, value in saved.items() if key in known})
        state.base = {key: value for key, value in state.base.items() if key != "data_dir"}
        return state

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, folder: RunFolder) -> "RunState | None":
        saved = folder.read_state()
        return None if saved is None else cls.from_json(saved)

    def write(self, folder: RunFolder) -> None:
        folder.write_state(self.to_json())

    # What the trials get
    @property
    def fixed(self) -> FineTuneConfig:
        """The trials' fixed settings, as a config (the searched ones at their defaults)."""
        return FineTuneConfig.from_dict(self.base)

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's param_space: the fixed settings, which the searcher's drawn ones join."""
        return dict(self.base)

    # Steps of a search's life
    def moved_to(self, folder: RunFolder) -> None:
        """The run folder is now at `folder` (copied to another machine, out of a bucket): trials
        read the data, and write their records and checkpoints, there."""
        self.run_dir = folder.path
        self.base = {**self.base, "run_dir": folder.path}

    def extend(self, trials: int) -> None:
        """Start the next --extend: a new Tune experiment of `trials` trials."""
        self.extensions += 1
        self.experiment = RunFolder.experiment_name(self.extensions)
        self.extend_samples = trials
        self.finished = False

    @property
    def planned_trials(self) -> int:
        """The current search's or extension's trials."""
        return self.extend_samples if self.extensions else self.num_samples

    def set_time_budget(self, minutes: float | None) -> float | None:
        """--time-budget if given (0 = none) replaces the run's; returns the budget in seconds. It
        applies to each new search or extension through Ray Tune's time_budget_s; a resume given
        --time-budget stops at that many minutes from the resume (Interruption.stop_after), at the latest."""
        if minutes is not None:
            self.time_budget_s = minutes * 60 or None
        return self.time_budget_s
