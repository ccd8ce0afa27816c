"""The fine-tuning trial: a Tune function that launches a one-worker Ray Train TorchTrainer.

run_trial (Tune, the trial's driver)  ->  TorchTrainer(num_workers=1)  ->  train_worker (the work)

Every epoch the worker trains, evaluates on validation and test, rewrites the trial's record.json,
and reports validation metrics with a checkpoint (trainable weights, optimizer, scheduler, epoch,
RNG). ASHA sees validation metrics only; test metrics are written for the report, never for choice,
and every epoch's record is complete, so a trial ASHA stops still has its row in the leaderboard.
"""

from __future__ import annotations

import os
import random
import resource
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from safetensors.torch import load_file, save_file
from transformers import get_linear_schedule_with_warmup

from trainables.config import QLoRAConfig
from trainables.memory import MemoryBudgetError, check_budget
from trainables.metrics import classification_metrics
from trainables.model import (
    build_classifier,
    load_tokenizer,
    load_trainable_state_dict,
    parameter_counts,
    state_dict_bytes,
    trainable_state_dict,
)
from trainables.record import RECORD_NAME, library_versions, read_record, write_record
from trainables.tokens import (
    collate,
    length_grouped_batches,
    read_tokens,
    sorted_batches,
)

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "training_state.pt"
SEARCHED = ("method", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate",
            "epochs", "batch_size", "max_length")


class TrialFailed(RuntimeError):
    """A trial that could not run even after its retry; the message says why."""


def run_trial(config: dict) -> None:
    """Tune function: validate the config, then run one Ray Train job for it.

    A trial over its memory budget (estimated before it starts) or out of CUDA memory while it
    trains is tried once more at half the batch size with twice the gradient accumulation (the
    same effective batch). If that fails too, TrialFailed says why; Tune marks the trial errored
    and goes on, and the search writes the reason into the trial's record.
    """
    trial = QLoRAConfig.from_dict(config)
    context = tune.get_context()
    record_path = Path(context.get_trial_dir()) / RECORD_NAME
    attempts = [trial]
    if trial.batch_size > 1:
        attempts.append(replace(trial, batch_size=trial.batch_size // 2, grad_accumulation=trial.grad_accumulation * 2))
    notes = []
    for attempt, settings in enumerate(attempts):
        try:
            check_budget(settings)
            run_train(settings, record_path, context.get_trial_id(), attempt)
            return
        except Exception as error:
            message = str(error)
            if not (isinstance(error, MemoryBudgetError) or "OutOfMemoryError" in message
                    or "out of memory" in message):
                raise
            notes.append(f"batch size {settings.batch_size}: {first_line(error)}")
            if attempt + 1 < len(attempts):
                notes.append(f"retried at batch size {attempts[attempt + 1].batch_size} with "
                             f"{attempts[attempt + 1].grad_accumulation} accumulation steps")
    raise TrialFailed("; ".join(notes))


def run_train(trial: QLoRAConfig, record_path: Path, trial_id: str, attempt: int) -> None:
    name = trial_id if attempt == 0 else f"{trial_id}-retry{attempt}"
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"trial": trial.to_dict(), "record_path": str(record_path), "trial_id": trial_id,
                           "train_run": name},
        scaling_config=ScalingConfig(
            num_workers=1,
            use_gpu=trial.use_gpu,
            resources_per_worker={"CPU": trial.cpus_per_worker, **({"GPU": 1} if trial.use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            # The same name on a resumed search: Ray Train restores this run's latest checkpoint.
            name=name,
            storage_path=str(Path(trial.data_dir).parent / "train"),
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


def mark_failed(record_path: Path, trial: QLoRAConfig, trial_id: str, reason: str) -> None:
    """Keep whatever the trial measured before it failed, and say why it failed. The search calls
    this for the trials Tune reports errored (a trial that Tune stopped is not one)."""
    record = read_record(record_path) if record_path.exists() else {
        "method": trial.method, "preset": trial.preset, "model": trial.model, "trial_id": trial_id,
        "params": {k: getattr(trial, k) for k in SEARCHED}, "config": trial.to_dict(),
        "split_hash": trial.split_hash, "seed": trial.seed}
    record.update(status="failed", error=reason)
    write_record(record_path, record)


def train_worker(loop_config: dict) -> None:
    """Runs inside the Ray Train worker: resume from Ray's checkpoint, report to Ray."""
    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else nullcontext() as resume_from:
        fine_tune(
            QLoRAConfig.from_dict(loop_config["trial"]),
            record_path=loop_config["record_path"],
            trial_id=loop_config["trial_id"],
            train_run=loop_config["train_run"],
            device=ray.train.torch.get_device(),
            resume_from=resume_from,
            report=report_to_ray,
        )


def report_to_ray(metrics: dict, checkpoint_folder: str) -> None:
    ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_folder))


def fine_tune(config: QLoRAConfig, record_path: str, trial_id: str, device: torch.device,
              resume_from: str | None = None, report: Callable[[dict, str], None] | None = None,
              train_run: str | None = None) -> dict:
    """The whole fine-tuning loop of one trial, callable without Ray (benchmarks, GPU checks).

    After every epoch: evaluate, rewrite the record, save a checkpoint folder and `report` it.
    Returns the final record.
    """
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, config.gpu_memory_gb * 2**30 / total), device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(config.cpus_per_worker)
    seed_everything(config.seed)

    data = read_tokens(Path(config.data_dir) / config.tokens_file)
    pad_id = load_tokenizer(config.model, config.trust_remote_code).pad_token_id or 0
    model = build_classifier(config, device)
    trainable, total_params = parameter_counts(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )
    steps_per_epoch = -(-len(data["train"][0]) // (config.batch_size * config.grad_accumulation))
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps_per_epoch * config.epochs),
        steps_per_epoch * config.epochs,
    )
    history: list[dict] = []
    starts: list[int] = []  # the epoch each (re)start of this trial began at
    start_epoch = 0
    if resume_from:
        history, start_epoch, starts = restore(resume_from, model, optimizer, scheduler)
    starts = [*starts, start_epoch]

    rng = np.random.default_rng(config.seed)
    for _ in range(start_epoch):  # the same batch order as an uninterrupted run
        length_grouped_batches([len(x) for x in data["train"][0]], config.batch_size, rng)
    for epoch in range(start_epoch, config.epochs):
        stats = train_epoch(model, optimizer, scheduler, data["train"], config.batch_size, pad_id, device, rng,
                            accumulation=config.grad_accumulation)
        started = time.perf_counter()
        val_labels, val_prob = predict(model, data["val"][0], data["val"][1], config.batch_size, pad_id, device)
        test_labels, test_prob = predict(model, data["test"][0], data["test"][1], config.batch_size, pad_id, device)
        stats["eval_seconds"] = time.perf_counter() - started
        val = classification_metrics(val_labels, val_prob)
        history.append({"epoch": epoch + 1, "val": val, **stats})
        weights = trainable_state_dict(model)
        record = {
            "method": config.method,
            "preset": config.preset,
            "model": config.model,
            "trial_id": trial_id,
            "params": {k: getattr(config, k) for k in SEARCHED},
            "config": config.to_dict(),
            "epochs_run": epoch + 1,
            "started_at_epochs": starts,
            "val": val,
            "test": classification_metrics(test_labels, test_prob),
            "test_labels": test_labels.tolist(),
            "test_prob_real": [round(float(p), 6) for p in test_prob],
            "history": history,
            "train_seconds": sum(h["train_seconds"] for h in history),
            "eval_seconds": sum(h["eval_seconds"] for h in history),
            "samples_per_second": stats["samples_per_second"],
            "peak_memory_mb": peak_memory_mb(device),
            "device": device_name(device),
            "trainable_params": trainable,
            "total_params": total_params,
            "adapter_bytes": state_dict_bytes(weights),
            "train_run_dir": str(Path(config.data_dir).parent / "train" / (train_run or trial_id)),
            "versions": library_versions(),
            "split_hash": config.split_hash,
            "seed": config.seed,
        }
        write_record(record_path, record)
        with tempfile.TemporaryDirectory() as folder:
            save_file(weights, os.path.join(folder, WEIGHTS_FILE))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1, "history": history, "starts": starts, "rng": rng_state()},
                       os.path.join(folder, STATE_FILE))
            if report:
                report({"epoch": epoch + 1, "val_f1": val["f1"], "train_loss": stats["train_loss"]}, folder)
    return record


def train_epoch(model, optimizer, scheduler, split, batch_size, pad_id, device, rng,
                pad_to: int | None = None, group_by_length: bool = True, accumulation: int = 1) -> dict:
    """One pass over `split`. pad_to/group_by_length=False reproduce fixed-length padding in random
    batches (the study's setup) for the throughput benchmark; trials use the defaults."""
    ids, labels = split
    model.train()
    if group_by_length:
        batches = length_grouped_batches([len(x) for x in ids], batch_size, rng)
    else:
        order = rng.permutation(len(ids))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    real_tokens = padded_tokens = 0
    loss_sum = 0.0
    started = time.perf_counter()
    for step, batch in enumerate(batches, 1):
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id, pad_to).items()}
        real_tokens += int(inputs["attention_mask"].sum())
        padded_tokens += inputs["attention_mask"].numel()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels[batch], device=device))
        (loss / accumulation).backward()
        if step % accumulation == 0 or step == len(batches):
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach().item() * len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "train_loss": loss_sum / len(ids),
        "train_seconds": seconds,
        "samples_per_second": len(ids) / seconds,
        "padding_efficiency": real_tokens / padded_tokens,
    }


@torch.no_grad()
def predict(model, ids, labels, batch_size, pad_id, device, progress=False) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probability of real) in the split's own row order."""
    model.eval()
    prob = np.zeros(len(ids))
    batches = sorted_batches([len(x) for x in ids], batch_size * 2)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="classifying", unit="batch")
    for batch in batches:
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**inputs).logits
        prob[batch] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return np.asarray(labels), prob


def restore(folder, model, optimizer, scheduler) -> tuple[list[dict], int, list[int]]:
    load_trainable_state_dict(model, load_file(os.path.join(folder, WEIGHTS_FILE)))
    state = torch.load(os.path.join(folder, STATE_FILE), weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["history"], state["epoch"], state["starts"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS on Linux


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
