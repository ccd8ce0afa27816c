"""Ray Tune's OptunaSearch, told the truth about multi-fidelity.

Ray's own class reports intermediate values at Ray's `training_iteration` and tells Optuna that
a trial ASHA stopped after one epoch is COMPLETE with that one-epoch score, so TPE learns from
truncated results as if they were final (ray/tune/search/optuna/optuna_search.py, Ray 2.60).
Here:
- intermediate values are reported at the trial's own report point (core/reports.py; after a
  resume it and Ray's iteration differ), the last one too (Ray hands the result that ASHA stops a trial at to on_trial_complete only);
- a trial that ends before its schedule does (stopped by ASHA or by the time budget) is told as
  PRUNED; TPE then ranks it by how far it got and its last value, as Optuna's own pruners do;
- `add_finished` puts the trials of earlier experiments (a search being extended) into the
  study with their real state and values at every report point, since Ray's `evaluated_rewards` does not
  work with a define-by-run space.

The study lives in the run folder (RUN_DIR/optuna.journal, Optuna's journal file storage, one
study named STUDY_NAME for the search and its extensions), so optuna-dashboard and
`optuna.load_study` open it; each Optuna trial carries its Ray trial id (user attribute
RAY_TRIAL_ID). Ray's experiment-wide stop (the time budget, Ctrl-C) ends running trials without
calling the searcher (TuneController._schedule_trial_stop); `settle_study` gives those, after the
search, the state their records show. A run folder in an object store keeps the study only in
Ray's searcher pickle (one moved there from a local folder: from its journal, `study_in_memory`),
and `--extend` rebuilds it from the records.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import optuna
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from core import storage
from core.errors import ConfigError
from core.metrics import selection_score
from core.record import has_scores
from core.reports import EPOCH, POINT, SCHEDULE_DONE, SCORE, history_point
from core.run_folder import OPTUNA_JOURNAL, RUN_FOLDER_ENV, RunFolder
from search_spaces.optuna_space import DefineByRun, optuna_distribution, optuna_domains, optuna_params


def tpe_sampler(seed: int, startup_trials: int = 10):
    with warnings.catch_warnings():  # multivariate and group are "experimental" since Optuna 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate + group: Optuna's TPE for conditional (define-by-run) spaces, modelling the
        # settings of each branch jointly; constant_liar keeps concurrent trials from drawing alike.
        # The first `startup_trials` finished or pruned trials (the seeds among them) are drawn at
        # random; TPE models the rest (Optuna's default: 10, more than a small budget runs).
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=startup_trials)


STUDY_NAME = "search"
RAY_TRIAL_ID = "ray_trial_id"


def journal_storage(folder: RunFolder):
    """The run folder's Optuna storage: a journal file in a local run folder, None (in memory,
    inside Ray's searcher pickle) in an object store, where a journal cannot be appended to."""
    if storage.is_uri(folder.path):
        return None
    return JournalStorage(JournalFileBackend(folder.optuna_journal))


class EpochAwareOptunaSearch(OptunaSearch):
    def __init__(self, space: dict, seeds: list[dict], seed: int, storage=None, startup_trials: int = 10):
        """`storage`: the Optuna storage of the study (journal_storage), as OptunaSearch names it."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study opened or trial told
        super().__init__(space=DefineByRun(space), metric=SCORE, mode="max", sampler=tpe_sampler(seed, startup_trials),
                         points_to_evaluate=[optuna_params(point, space) for point in seeds] or None,
                         storage=storage, study_name=STUDY_NAME)
        self.space_data = space

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # so the study's trials can be matched with their records
            self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return params

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore, then the journal of the run folder where it is now: a moved run folder's
        pickle names the journal where it was. A local run folder moved into a bucket brought its
        journal along, but a journal cannot be appended to there: the study goes on in memory, as
        every bucket search's does, from the journal's trials."""
        super().restore(checkpoint_path)
        here = os.environ.get(RUN_FOLDER_ENV)
        if self._storage is None or not here:
            return
        folder = RunFolder(here)
        self._storage = journal_storage(folder)
        if self._storage is None:
            self._ot_study = study_in_memory(folder, self._sampler)
        else:
            self._ot_study = optuna.load_study(study_name=STUDY_NAME, storage=self._storage, sampler=self._sampler)
        self._ot_trials = {tid: optuna.Trial(self._ot_study, trial._trial_id) for tid, trial in self._ot_trials.items()}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        # A result from before report points inside an epoch has only its epoch: one point each.
        self._ot_trials[trial_id].report(result[SCORE], history_point(result))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # When ASHA decides STOP (at a rung, or at its last), Ray calls this with that result
        # instead of on_trial_result: the point it was judged at is recorded here.
        if result and SCORE in result and (POINT in result or EPOCH in result):
            self.on_trial_result(trial_id, result)
        stopped_early = result is not None and not error and result.get(SCHEDULE_DONE) is False
        if stopped_early and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def add_finished(self, records: list[dict], metric: str) -> int:
        """Put every fine-tuning record with validation metrics in the study, unless the study
        (the run folder's journal) already holds its trial; returns how many finished trials the
        study holds."""
        held = {t.user_attrs.get(RAY_TRIAL_ID) for t in self._ot_study.get_trials(deepcopy=False)}
        added = 0
        for record in records:
            if not has_scores(record) or not record.get("history"):
                continue
            if record.get("trial_id") in held:
                added += 1
                continue
            settings = record["params"]
            try:
                params = optuna_params(settings, self.space_data)
            except ConfigError:  # a trial from a space this preset no longer has
                continue
            steps = {history_point(h): selection_score(h["val"], metric) for h in record["history"]}
            done = schedule_done(record)
            self._ot_study.add_trial(optuna.trial.create_trial(
                params=params,
                distributions={name: optuna_distribution(domain)
                               for name, domain in optuna_domains(settings, self.space_data).items()},
                value=selection_score(record["val"], metric) if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED,
                intermediate_values=steps,
                user_attrs={RAY_TRIAL_ID: record.get("trial_id")},
            ))
            added += 1
        return added


def study_in_memory(folder: RunFolder, sampler) -> optuna.Study:
    """The run folder's journal (read from wherever the folder is) as an in-memory study. Trials
    keep their ids: the journal holds this one study, numbered from 0 in the order it created
    them, and the copy adds them in that order."""
    memory = InMemoryStorage()
    with tempfile.TemporaryDirectory() as local:
        copy = os.path.join(local, OPTUNA_JOURNAL)
        with open(copy, "wb") as file:
            file.write(storage.read_bytes(folder.optuna_journal))
        optuna.copy_study(from_study_name=STUDY_NAME, from_storage=JournalStorage(JournalFileBackend(copy)),
                          to_storage=memory)
    return optuna.load_study(study_name=STUDY_NAME, storage=memory, sampler=sampler)


def schedule_done(record: dict) -> bool:
    """Whether the record's model is its schedule's end: ran every epoch it was set to."""
    return record["epochs_run"] >= record["params"].get("epochs", record["epochs_run"])


def settle_study(folder: RunFolder, records: list[dict], metric: str) -> None:
    """Give every trial the journal still holds as RUNNING the state its record shows: COMPLETE
    with its selection score when it ran its whole schedule, PRUNED when it stopped earlier (the
    time budget, Ctrl-C), FAIL without an epoch."""
    study_storage = journal_storage(folder)
    if study_storage is None or STUDY_NAME not in {s.study_name for s in study_storage.get_all_studies()}:
        return
    study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage)
    by_id = {r["trial_id"]: r for r in records}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = by_id.get(trial.user_attrs.get(RAY_TRIAL_ID), {})
        if not has_scores(record) or not record.get("history"):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        elif schedule_done(record):
            study.tell(trial.number, selection_score(record["val"], metric))
        else:
            study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
