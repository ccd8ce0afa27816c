"""Launch the baselines as Ray tasks beside the QLoRA search (CPU only; the embedding step takes
a trial's share of a GPU when there is one). Each grid point writes its record and model in the
run folder (RunFolder.baseline_record); a point whose record exists (a resumed run) is not run again."""

from __future__ import annotations

import ray
import torch

from core import storage
from core.record import write_record
from core.run_folder import RunFolder
from search_spaces.baselines import CHOICES, GRIDS
from trainables.baselines import BaselineConfig, failed_baseline_record, run_baseline
from trainables.config import FineTuneConfig
from trainables.embeddings import cached_embeddings, embeddings_file
from trainables.model import loading_overrides
from tune.run_state import RunState
from tune.trial import first_line


@ray.remote
def embeddings_task(fixed: FineTuneConfig, data_dir: str, pooling: str, pad_id: int, threads: int):
    """The frozen backbone's embeddings of the run's split (the trials' model, revision, tokens)."""
    torch.set_num_threads(threads)
    # The loading overrides of the node that runs this task (is xformers installed there?)
    return cached_embeddings(data_dir, fixed.tokens_file, fixed.model, fixed.split_hash, fixed.max_length, pooling,
                             pad_id, trust_remote_code=fixed.trust_remote_code,
                             overrides=loading_overrides(fixed.preset), revision=fixed.model_revision)


@ray.remote(num_cpus=1)
def baseline_task(config: BaselineConfig, folder: RunFolder, baseline_id: str, embeddings=None) -> dict:
    """One grid point; `embeddings` (the embedding task's result) only makes it wait for them."""
    record = run_baseline(config, folder.baseline_record(baseline_id), folder.baseline_model(baseline_id))
    return {"trial_id": record["trial_id"], "val_f1": record["val"]["f1"]}


def baseline_configs(state: RunState, preset) -> list[tuple[str, BaselineConfig]]:
    """Every grid point of the run's baselines, validated before anything starts."""
    fixed = state.fixed
    data_dir = RunFolder(state.run_dir).data
    cache = embeddings_file(fixed.model, fixed.split_hash, fixed.max_length, preset.POOLING, fixed.model_revision)
    configs = []
    for method in CHOICES[state.baselines]:
        for index, params in enumerate(GRIDS[method]):
            configs.append((f"{method}-{index}", BaselineConfig(
                method=method, preset=state.preset, model=fixed.model, model_revision=fixed.model_revision,
                seed=fixed.seed, max_length=fixed.max_length, data_dir=data_dir, embeddings_file=cache,
                split_hash=fixed.split_hash, **params)))
    return configs


def launch_baselines(configs: list[tuple[str, BaselineConfig]], folder: RunFolder, state: RunState | None = None,
                     preset=None) -> list[tuple[str, BaselineConfig, ray.ObjectRef]]:
    """Start every grid point without a record (a resumed run's finished points are not run
    again); returns (id, config, the task's result) of each started. The embedding methods need
    the run's state and preset (the backbone to embed with)."""
    pending = [(trial_id, config) for trial_id, config in configs
               if not storage.exists(folder.baseline_record(trial_id))]
    embeddings = None
    if any(config.method.startswith("embed-") for _, config in pending):
        embeddings = start_embeddings(state, preset, folder)
    started = [
        (trial_id, config, baseline_task.remote(config, folder, trial_id,
                                                embeddings if config.method.startswith("embed-") else None))
        for trial_id, config in pending
    ]
    if configs:
        print(f"Baselines: {len(started)} of {len(configs)} grid points run beside the search "
              f"({', '.join(sorted({c.method for _, c in configs}))}).")
    return started


def start_embeddings(state: RunState, preset, folder: RunFolder) -> ray.ObjectRef:
    """The frozen forward pass takes a trial's share of a GPU, or a trial's CPUs: with one CPU it
    left the other of two cores idle while the first trial waited for both (about 100 s of the cpu
    profile's budget). The classifiers stay on one CPU each."""
    fixed = state.fixed
    threads = fixed.cpus_per_worker
    resources = {"num_gpus": fixed.gpu_fraction} if fixed.use_gpu else {"num_cpus": threads}
    return embeddings_task.options(**resources).remote(fixed, folder.data, preset.POOLING, state.pad_id, threads)


def finish_baselines(pending: list[tuple[str, BaselineConfig, ray.ObjectRef]], folder: RunFolder) -> None:
    """Wait for each baseline and print its score. One that raised (or whose embedding pass did)
    gets a failed record saying why, so the search still finishes and a resume does not run it
    again (launch_baselines skips every point with a record)."""
    for trial_id, config, result in pending:
        try:
            done = ray.get(result)
        except ray.exceptions.RayError as error:
            reason = first_line(error)
            write_record(folder.baseline_record(trial_id), failed_baseline_record(config, trial_id, reason))
            print(f"Baseline {trial_id} failed: {reason} (written to its record; a resume does not rerun it)")
            continue
        print(f"Baseline {done['trial_id']}: validation F1 {100 * done['val_f1']:.2f}")
