"""Ray Tune's OptunaSearch, told the truth about multi-fidelity.

Ray's own class reports intermediate values at Ray's `training_iteration` and tells Optuna that
a trial ASHA stopped after one epoch is COMPLETE with that one-epoch score, so TPE learns from
truncated results as if they were final (ray/tune/search/optuna/optuna_search.py, Ray 2.60).
Here:
- intermediate values are reported at the trial's own epoch (after a resume the two differ),
  the last one too (Ray hands the result that ASHA stops a trial at to on_trial_complete only);
- a trial that ends before its schedule does (stopped by ASHA or by the time budget) is told as
  PRUNED; TPE then ranks it by how far it got and its last value, as Optuna's own pruners do;
- `add_finished` puts the trials of earlier experiments (a search being extended) into the
  study with their real state and per-epoch values, since Ray's `evaluated_rewards` does not
  work with a define-by-run space.

Ray's experiment-wide stop (the time budget, Ctrl-C) ends running trials without calling the
searcher (TuneController._schedule_trial_stop), so those stay RUNNING in the study that Ray
pickles; `--extend` rebuilds the study from the records, where they are pruned.
"""

from __future__ import annotations

import warnings

import optuna
from ray.tune.search.optuna import OptunaSearch

from core.errors import ConfigError
from core.metrics import selection_score
from trainables.training import SCORE
from tune.space import DefineByRun, optuna_distribution, optuna_domains, optuna_params


def tpe_sampler(seed: int):
    with warnings.catch_warnings():  # multivariate and group are "experimental" since Optuna 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate + group: Optuna's TPE for conditional (define-by-run) spaces, modelling the
        # settings of each branch jointly; constant_liar keeps concurrent trials from drawing alike.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


class EpochAwareOptunaSearch(OptunaSearch):
    def __init__(self, space: dict, seeds: list[dict], seed: int):
        super().__init__(space=DefineByRun(space), metric=SCORE, mode="max", sampler=tpe_sampler(seed),
                         points_to_evaluate=[optuna_params(point, space) for point in seeds] or None)
        self.space_data = space

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._ot_trials[trial_id].report(result[SCORE], result["epoch"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # When ASHA decides STOP (at a rung, or at its last), Ray calls this with that result
        # instead of on_trial_result: the epoch it was judged at is recorded here.
        if result and SCORE in result and "epoch" in result:
            self.on_trial_result(trial_id, result)
        stopped_early = result is not None and not error and result.get("schedule_done") is False
        if stopped_early and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def add_finished(self, records: list[dict], metric: str) -> int:
        """Add every fine-tuning record with validation metrics to the study; returns how many."""
        added = 0
        for record in records:
            if "val" not in record or not record.get("history"):
                continue
            settings = record["params"]
            try:
                params = optuna_params(settings, self.space_data)
            except ConfigError:  # a trial from a space this preset no longer has
                continue
            steps = {h["epoch"]: selection_score(h["val"], metric) for h in record["history"]}
            done = record["epochs_run"] >= settings.get("epochs", record["epochs_run"])
            self._ot_study.add_trial(optuna.trial.create_trial(
                params=params,
                distributions={name: optuna_distribution(domain)
                               for name, domain in optuna_domains(settings, self.space_data).items()},
                value=selection_score(record["val"], metric) if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED,
                intermediate_values=steps,
            ))
            added += 1
        return added
