"""Launch the baselines as Ray tasks beside the QLoRA search (CPU only; the embedding step takes
a trial's share of a GPU when there is one). Each grid point writes RUN_DIR/baselines/<id>/record.json; a point
whose record exists (a resumed run) is not run again."""

from __future__ import annotations

import ray

from core import storage
from core.run_folder import RunFolder
from search_spaces.baselines import CHOICES, GRIDS
from core.record import write_record
from trainables.baselines import BaselineConfig, failed_baseline_record, run_baseline
from trainables.embeddings import cached_embeddings, embeddings_path
from trainables.model import loading_overrides


@ray.remote
def embeddings_task(data_dir, tokens_file, model, split_hash, max_length, pooling, pad_id, trust_remote_code,
                    preset_name, threads, revision):
    import torch

    torch.set_num_threads(threads)
    # The loading overrides of the node that runs this task (is xformers installed there?)
    path, computed = cached_embeddings(data_dir, tokens_file, model, split_hash, max_length, pooling,
                                       pad_id, trust_remote_code, overrides=loading_overrides(preset_name),
                                       revision=revision)
    return path, computed


@ray.remote(num_cpus=1)
def baseline_task(config: BaselineConfig, record_path: str, embeddings=None) -> dict:
    record = run_baseline(config, record_path)
    return {"trial_id": record["trial_id"], "val_f1": record["val"]["f1"]}


def baseline_configs(choice: str, preset_name: str, preset, base: dict) -> list[tuple[str, BaselineConfig]]:
    """Every grid point of the chosen baselines, validated before anything starts."""
    data_dir = RunFolder(base["run_dir"]).data
    embeddings_file = storage.name(embeddings_path(data_dir, base["model"], base["split_hash"],
                                                   base["max_length"], preset.POOLING, base.get("model_revision")))
    configs = []
    for method in CHOICES[choice]:
        for index, params in enumerate(GRIDS[method]):
            configs.append((f"{method}-{index}", BaselineConfig(
                method=method, preset=preset_name, model=base["model"], model_revision=base.get("model_revision"),
                seed=base["seed"],
                max_length=base["max_length"],
                data_dir=data_dir, embeddings_file=embeddings_file,
                split_hash=base["split_hash"], **params)))
    return configs


def launch_baselines(configs: list[tuple[str, BaselineConfig]], preset, base: dict, pad_id: int,
                     folder: RunFolder, use_gpu: bool) -> list[tuple[str, BaselineConfig, ray.ObjectRef]]:
    """Start every grid point without a record; returns (id, config, the task's result) of each."""
    pending = [(trial_id, config) for trial_id, config in configs
               if not storage.exists(folder.baseline_record(trial_id))]
    embeddings = None
    if any(config.method.startswith("embed-") for _, config in pending):
        # The frozen forward pass takes a trial's share of a GPU, or a trial's CPUs: with one CPU
        # it left the other of two cores idle while the first trial waited for both (about 100 s
        # of the cpu profile's budget). The classifiers stay on one CPU each.
        threads = base["cpus_per_worker"]
        resources = {"num_gpus": base.get("gpu_fraction", 1.0)} if use_gpu else {"num_cpus": threads}
        embeddings = embeddings_task.options(**resources).remote(
            folder.data, base["tokens_file"], base["model"], base["split_hash"], base["max_length"],
            preset.POOLING, pad_id, preset.TRUST_REMOTE_CODE, base["preset"], threads, base.get("model_revision"))
    return [
        (trial_id, config, baseline_task.remote(config, folder.baseline_record(trial_id),
                                                embeddings if config.method.startswith("embed-") else None))
        for trial_id, config in pending
    ]


def finish_baselines(pending: list[tuple[str, BaselineConfig, ray.ObjectRef]], folder: RunFolder) -> None:
    """Wait for each baseline and print its score. One that raised (or whose embedding pass did)
    gets a failed record saying why, so the search still finishes and a resume does not run it
    again (launch_baselines skips every point with a record)."""
    from tune.trial import first_line

    for trial_id, config, result in pending:
        try:
            done = ray.get(result)
        except ray.exceptions.RayError as error:
            reason = first_line(error)
            write_record(folder.baseline_record(trial_id), failed_baseline_record(config, trial_id, reason))
            print(f"Baseline {trial_id} failed: {reason} (written to its record; a resume does not rerun it)")
            continue
        print(f"Baseline {done['trial_id']}: validation F1 {100 * done['val_f1']:.2f}")
