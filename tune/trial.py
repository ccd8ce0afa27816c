"""The fine-tuning trial on Ray: a Tune function that launches a one-worker Ray Train TorchTrainer.

run_trial (Tune, the trial's driver)  ->  TorchTrainer(num_workers=1)  ->  train_worker
                                                                            -> training.fine_tune

The training loop itself (trainables/training.py) imports no Ray; this module is the glue: the
memory-budget retry, the Train run's storage and checkpoints, and reporting to Tune.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from core import storage
from core.record import failed_record, is_failed, read_record, write_record
from core.run_folder import RunFolder
from search_spaces.optuna_space import trial_settings
from trainables.config import FineTuneConfig, trial_identity

# The training stack (transformers, peft, bitsandbytes) is imported only in the worker that
# trains (train_from), the memory estimate included: the trial's driver and Ray Train's
# controller also load this module, and importing transformers there cost each trial about
# 5 s of start-up on one core (measured: fit_budget's first call in a fresh process).


class TrialFailed(RuntimeError):
    """A trial that could not run even after its retry; the message says why."""


def run_trial(config: dict) -> None:
    """Tune function: run one Ray Train job for the trial, and once more at half the micro-batch
    if it ran out of CUDA memory.

    The worker first fits the trial into its memory budget (train_from): fit_budget refuses a
    trial that cannot fit before training starts; on a CPU its estimate also picks micro-batches
    or gradient checkpointing, on a GPU the worker measures them. A trial that still runs out of
    CUDA memory is tried once more at half the micro-batch with twice the accumulation (the same
    optimizer step). If that fails too, TrialFailed says why; Tune marks the trial errored and
    goes on, and the search writes the reason into the trial's record.

    Only what can succeed on a retry is retried: out of memory (at half the micro-batch, here) and
    a lost worker or node (Ray Train, from the last checkpoint). A budget refusal, a bad setting or
    a bug fails once: the worker records it instead of raising (train_worker), Tune does not retry
    a trial driver (tune/tuner.py: max_failures=0).
    """
    started_at = time.time()  # the record's startup_seconds count from here
    folder = RunFolder.of_trial(config["run_dir"])
    trial = FineTuneConfig.from_dict({**trial_settings(config), "run_dir": folder.path})  # flat settings
    trial_id = tune.get_context().get_trial_id()
    record_path = folder.trial_record(trial_id)
    attempts = [trial]
    if trial.batch_size > 1:
        attempts.append(trial.with_micro_batch(trial.batch_size // 2))
    notes = []
    for attempt, settings in enumerate(attempts):
        run_train(settings, record_path, trial_id, attempt, started_at)
        record = read_record(record_path) if storage.exists(record_path) else {}
        if not is_failed(record):
            return
        if not record.get("out_of_memory"):
            raise TrialFailed(record["error"])
        notes.append(f"micro-batch {settings.batch_size}: {record['error']}")
        if attempt + 1 < len(attempts):
            notes.append(f"retried at micro-batch {attempts[attempt + 1].batch_size} with "
                         f"{attempts[attempt + 1].grad_accumulation} accumulation steps")
    raise TrialFailed("; ".join(notes))


def run_train(trial: FineTuneConfig, record_path: str, trial_id: str, attempt: int, started_at: float) -> None:
    name = trial_id if attempt == 0 else f"{trial_id}-retry{attempt}"
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"trial": trial.to_dict(), "record_path": record_path, "trial_id": trial_id,
                           "train_run": name, "started_at": started_at},
        # One worker never communicates: gloo needs no CUDA (nccl would), so a trial also starts
        # on a node whose advertised GPU it cannot use, and falls back to its CPU.
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(
            num_workers=1,
            use_gpu=trial.use_gpu,
            resources_per_worker={"CPU": trial.cpus_per_worker,
                                  **({"GPU": trial.gpu_fraction} if trial.use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            # The same name on a resumed search: Ray Train restores this run's latest checkpoint.
            name=name,
            storage_path=RunFolder(trial.run_dir).train,
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=1),
        ),
    )
    trainer.fit()


def first_line(error: BaseException) -> str:
    """The root cause's message: Ray wraps worker errors in several layers of traceback."""
    text = str(error)
    for marker in ("TrialFailed: ", "MemoryBudgetError: ", "OutOfMemoryError: "):
        if marker in text:
            return text.split(marker, 1)[1].splitlines()[0]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def is_out_of_memory(error: BaseException) -> bool:
    message = f"{type(error).__name__}: {error}"
    return "OutOfMemoryError" in message or "out of memory" in message


def mark_failed(record_path: str, trial: FineTuneConfig, trial_id: str, reason: str,
                out_of_memory: bool = False) -> None:
    """Keep whatever the trial measured before it failed, and say why it failed. The worker calls
    this when training raises; the search, for the trials Tune reports errored (a trial that Tune
    stopped is not one)."""
    record = read_record(record_path) if storage.exists(record_path) else trial_identity(trial, trial_id)
    write_record(record_path, failed_record(record, reason, out_of_memory))


def train_worker(loop_config: dict) -> None:
    """Runs inside the Ray Train worker: resume from Ray's checkpoint, report to Ray."""
    checkpoint = ray.train.get_checkpoint()
    trial = FineTuneConfig.from_dict(loop_config["trial"])
    try:
        with checkpoint.as_directory() if checkpoint else nullcontext() as resume_from:
            train_from(trial, loop_config, resume_from)
    except Exception as error:  # fails the same way on a retry: recorded, not raised (run_trial)
        mark_failed(loop_config["record_path"], trial, loop_config["trial_id"], first_line(error),
                    out_of_memory=is_out_of_memory(error))


def train_from(trial: FineTuneConfig, loop_config: dict, resume_from: str | None) -> None:
    marks = {"worker_started": time.time()}  # the record's startup parts (training.startup_parts)
    from trainables.memory import fit_budget
    from trainables.training import fine_tune

    marks["training_imported"] = time.time()
    fitted, _ = fit_budget(trial)  # MemoryBudgetError: recorded by train_worker, not retried
    marks["memory_fitted"] = time.time()
    fine_tune(
        trial if trial.use_gpu else fitted,  # on a GPU fine_tune measures instead (batch_probe.fit_card)
        record_path=loop_config["record_path"],
        trial_id=loop_config["trial_id"],
        train_run=loop_config["train_run"],
        # A GPU Ray gave this worker, or the CPU when CUDA is missing (a node that advertises
        # GPUs it does not have, as the multi-node tests' fake GPU nodes do).
        device=ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu"),
        resume_from=resume_from,
        report=report_to_ray,
        started_at=loop_config.get("started_at"),
        marks=marks,
        placement={"node_id": ray.get_runtime_context().get_node_id(),
                   "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()]},
    )


def report_to_ray(metrics: dict, checkpoint_folder: str | None) -> None:
    """A report point's metrics, with the checkpoint folder at a scored point (training.score_point)."""
    ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_folder) if checkpoint_folder else None)
