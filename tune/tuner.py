"""The Ray Tune objects of a search: the trial function with its resources, the Optuna searcher,
the Tuner (ASHA over report points inside epochs, the time budget, failure policy) and the console.
"""

from __future__ import annotations

import os

from core.reports import POINT, SCORE
from core.run_folder import RunFolder
from tune.ray_setup import TRIAL_DRIVER, ray_gpus
from tune.run_state import RunState

# Ray Tune, the trial function, the searcher and the console are imported where they are built:
# tune/search.py imports this module, and `--help` or a refused flag answers without loading Ray.


def trainable():
    from ray import tune

    from tune.trial import run_trial

    # The trial function only drives its Ray Train worker, which holds the CPU or GPU; it takes a
    # slot of a custom resource instead of a CPU, so drivers never starve workers.
    return tune.with_resources(run_trial, {"cpu": 0, TRIAL_DRIVER: 1})


def new_searcher(preset, state: RunState, seeds: list[dict], folder: RunFolder):
    from tune.searcher import EpochAwareOptunaSearch, journal_storage

    return EpochAwareOptunaSearch(preset.SPACE, seeds, state.seed, journal_storage(folder),
                                  startup_trials=state.tpe_startup_trials)


def trials_at_once(state: RunState) -> int:
    """--max-concurrent, else what the cluster holds: GPUs x trials per GPU, or CPUs / trial CPUs."""
    import ray

    if state.max_concurrent is not None:
        return state.max_concurrent
    fixed = state.fixed
    if fixed.use_gpu:
        return ray_gpus() * round(1 / fixed.gpu_fraction)
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // fixed.cpus_per_worker)


def new_tuner(searcher, state: RunState, storage: str, name: str, time_budget_s: float | None, console: "Console",
              callbacks: list = ()):
    """A Tuner for the state's current search or extension, in the experiment folder storage/name;
    `callbacks`: more Tune callbacks (tracking) beside the console's."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    fidelity = state.fixed  # a run.json from before report points: one an epoch
    return tune.Tuner(
        trainable(),
        param_space=state.param_space(),  # the fixed settings; the searcher's define-by-run space adds the rest
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            # Rungs count report points as the trial reports them (core/reports.py), so a trial
            # resumed from its point-4 checkpoint is judged at point 5, not at its first report
            # after the restart. Every trial's schedule spans the same points, so a rung compares
            # trials at the same point of the same learning-rate schedule.
            scheduler=ASHAScheduler(metric=SCORE, mode="max", time_attr=POINT, max_t=fidelity.last_point,
                                    grace_period=fidelity.rung_grace, reduction_factor=fidelity.rung_factor),
            num_samples=state.planned_trials,
            max_concurrent_trials=trials_at_once(state),
            time_budget_s=time_budget_s,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        # A trial driver is not retried: out of memory and lost workers are retried inside it
        # (tune/trial.run_trial), and anything else would fail the same way again.
        run_config=tune.RunConfig(name=name, storage_path=storage,
                                  failure_config=tune.FailureConfig(max_failures=0), **console.run_config(callbacks)),
    )


class Console:
    """What the search prints while it runs: our one-line progress (tune/progress.py), or with
    --verbose Ray Tune's own tables and every worker's log."""

    def __init__(self, verbose: bool, planned: int, metric: str, folder: RunFolder, budget_s: float | None):
        self.verbose, self.planned, self.metric, self.folder, self.budget_s = verbose, planned, metric, folder, budget_s
        if not verbose:
            # Tune's legacy output engine at verbose=0 prints nothing; the new one still prints its
            # experiment box and a TensorBoard hint into Ray's temporary session folder.
            os.environ["RAY_AIR_NEW_OUTPUT"] = "0"

    def run_config(self, callbacks: list = ()) -> dict:
        """RunConfig's console settings, its progress callback first and then `callbacks`."""
        if self.verbose:
            return {"callbacks": list(callbacks)} if callbacks else {}
        from tune.progress import ProgressLines

        return {"verbose": 0,
                "callbacks": [ProgressLines(self.planned, self.metric, self.folder, self.budget_s), *callbacks]}
