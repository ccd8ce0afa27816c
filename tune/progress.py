"""The search's console: a line when a trial starts (its searched settings), a line when it ends
(its epochs and validation score, why it failed, or that the search's end stopped it), and after
each end a one-line summary: trials
done of planned, the best selection score so far and its trial, minutes elapsed and an estimate
of those left. It replaces Ray Tune's tables (each trial's whole fixed config, a status table
every 30 s); `--verbose` brings those back.
"""

from __future__ import annotations

import os
import time

from ray.tune import Callback

from core import storage
from core.metrics import CONSTANT_PREDICTOR_SCORE
from core.record import read_record
from core.reports import EPOCH, SCORE
from core.run_folder import RUN_FOLDER_ENV, RunFolder
from results.leaderboard import describe_params
from search_spaces.optuna_space import trial_settings
from tune.trial import first_line


def settings_text(config: dict) -> str:
    settings = trial_settings(config)
    return f"{settings['method']} {describe_params({'method': settings['method'], 'params': settings})}".strip()


class ProgressLines(Callback):
    """Pickled with the Tuner's RunConfig, so a resumed search prints the same way; `setup` starts
    the clock and the counts afresh in each process that runs the search."""

    def __init__(self, planned: int, metric: str, folder: RunFolder, budget_s: float | None) -> None:
        self.planned, self.metric, self.folder, self.budget_s = planned, metric, folder, budget_s
        self.setup()

    def setup(self, **info) -> None:
        self.started = time.monotonic()
        self.done = 0
        self.best: tuple[float, str] | None = None
        self.epochs: dict[str, float] = {}  # fractional epochs at each trial's last report
        self.running: set[str] = set()  # started here, no end line yet
        here = os.environ.get(RUN_FOLDER_ENV)  # a moved run folder: where it is now
        if here:
            self.folder = RunFolder(here)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)
        print(f"Trial {trial.trial_id} started: {settings_text(trial.config)}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.epochs[trial.trial_id] = result.get(EPOCH, 0)
        if SCORE in result and (self.best is None or result[SCORE] > self.best[0]):
            self.best = (result[SCORE], trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        result = trial.last_result or {}
        score = result.get(SCORE)
        shown = "" if score is None else f", validation {self.metric} {score_text(score)}"
        epochs = self.epochs.get(trial.trial_id, result.get(EPOCH, 0))
        print(f"Trial {trial.trial_id} ended after {epochs:g} epoch(s){shown}.", flush=True)
        self.finished(trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        print(f"Trial {trial.trial_id} failed: {self.reason(trial)}", flush=True)
        self.finished(trials, trial)

    def on_experiment_end(self, trials, **info) -> None:
        """Trials still running when the search ended (its time budget, Ctrl-C or SIGTERM): Tune
        stops them without a completion callback, so say where each stopped."""
        for trial in trials:
            if trial.trial_id in self.running:
                epochs = self.epochs.get(trial.trial_id, 0)
                kept = (f"had trained {epochs:g} epoch(s) and keeps its record at its last scored point" if epochs
                        else "had reached no report point, so it has no record")
                print(f"Trial {trial.trial_id} stopped with the search: it {kept}.", flush=True)
        self.running.clear()

    def reason(self, trial) -> str:
        location = self.folder.trial_record(trial.trial_id)
        if storage.exists(location):
            error = read_record(location).get("error")
            if error:
                return error
        error = trial.get_error()
        return first_line(error) if error else f"see {trial.error_file or 'the trial folder'}"

    def finished(self, trials, trial) -> None:
        # Tune's own count, so a resumed search counts the trials its first run finished
        ended = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {trial.trial_id}
        self.done = max(self.done + 1, len(ended))
        elapsed = time.monotonic() - self.started
        best = (f"best validation {self.metric} {score_text(self.best[0])} (trial {self.best[1]})"
                if self.best else "no report point reached yet")
        left = self.planned - self.done
        if self.budget_s:
            estimate = max(0.0, min(self.budget_s - elapsed, elapsed / self.done * left))
        else:
            estimate = elapsed / self.done * left
        print(f"[{self.done}/{self.planned} trials done; {best}; {elapsed / 60:.1f} min elapsed, "
              f"about {estimate / 60:.0f} min left]", flush=True)


def score_text(score: float) -> str:
    return "constant predictor" if score <= CONSTANT_PREDICTOR_SCORE else f"{100 * score:.2f}"
