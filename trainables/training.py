"""The whole fine-tuning loop of one trial, with no Ray in it: Ray Train runs it in a worker
(tune/trial.py), and benchmarks and GPU checks call `fine_tune` directly.

Every epoch it trains, evaluates on validation and test, rewrites the trial's record.json, and
hands a checkpoint folder (trainable weights, optimizer, scheduler, epoch, RNG) to `report`.
Validation metrics are for choosing; test metrics are written for the report, never for choice,
and every epoch's record is complete, so a trial that ASHA stops still has its row.
"""

from __future__ import annotations

import json
import os
import random
import resource
import tempfile
import time
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core import storage
from core.groups import SplitGroups
from core.metrics import classification_metrics, selection_score
from core.record import library_versions, read_record, write_record
from core.run_folder import CHECKPOINT_RECORD, RunFolder
from core.tokens import (
    collate,
    length_grouped_batches,
    read_tokens,
    sorted_batches,
)
from trainables.batch_probe import fit_card
from trainables.config import FineTuneConfig
from trainables.model import (
    build_classifier,
    load_tokenizer,
    load_trainable_state_dict,
    loading_overrides,
    parameter_counts,
    state_dict_bytes,
    trainable_state_dict,
)

# What a trial reports to Tune after each epoch: the run's selection metric on validation
# (core.metrics.selection_score); ASHA and Optuna read this key and nothing else.
SCORE = "score"
WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "training_state.pt"


def fine_tune(config: FineTuneConfig, record_path: str, trial_id: str, device: torch.device,
              resume_from: str | None = None, report: Callable[[dict, str], None] | None = None,
              train_run: str | None = None, placement: dict | None = None) -> dict:
    """The whole fine-tuning loop of one trial, callable without Ray (benchmarks, GPU checks).

    After every epoch: evaluate, rewrite the record, save a checkpoint folder and `report` it.
    `placement` (where the epoch ran: Ray's node and GPU ids) goes into each epoch's history.
    Returns the final record.
    """
    if device.type == "cuda":
        cap_cuda_memory(device, config.gpu_memory_gb)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(config.cpus_per_worker)
    seed_everything(config.seed)

    data = read_tokens(storage.join(config.data_dir, config.tokens_file))
    test_groups = SplitGroups.of_run(config.data_dir)
    pad_id = load_tokenizer(config.model, config.trust_remote_code, config.model_revision).pad_token_id or 0
    model = build_classifier(config, device)
    searched = config
    if device.type == "cuda":  # measure the largest micro-batch the cap allows (cached per run)
        state = rng_state()
        config = fit_card(model, config, device)
        set_rng_state(state)
        torch.cuda.reset_peak_memory_stats(device)
    trainable, total_params = parameter_counts(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )
    steps_per_epoch = -(-len(data["train"][0]) // (config.batch_size * config.grad_accumulation))
    scheduler = linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps_per_epoch * config.epochs),
        steps_per_epoch * config.epochs,
    )
    history: list[dict] = []
    starts: list[int] = []  # the epoch each (re)start of this trial began at
    start_epoch = 0
    if resume_from:
        history, start_epoch, starts = restore(resume_from, model, optimizer, scheduler)
    starts = [*starts, start_epoch]

    if start_epoch >= config.epochs:
        # Resumed from its last epoch's checkpoint (stopped after it, before the trial ended):
        # nothing left to train. Report that epoch again, so Tune hears how the trial ended.
        last = history[-1]
        if report:
            report(epoch_report(last["epoch"], last["val"], last["train_loss"], config), resume_from)
        saved = os.path.join(resume_from, CHECKPOINT_RECORD)  # checkpoints from before it: the record
        return read_record(saved if os.path.exists(saved) else record_path)
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
        metrics = epoch_report(epoch + 1, val, stats["train_loss"], config)
        history.append({"epoch": epoch + 1, "val": val, **stats, **({"placement": placement} if placement else {})})
        weights = trainable_state_dict(model)
        record = {
            "method": config.method,
            "preset": config.preset,
            "model": config.model,
            "trial_id": trial_id,
            "params": searched.searched_params(),
            "config": config.to_dict(),  # as trained: micro-batch, accumulation, checkpointing
            "loading_overrides": loading_overrides(config.preset),  # what this machine changed at load
            "epochs_run": epoch + 1,
            "selection": {"metric": config.selection_metric, "val_score": metrics[SCORE]},
            "started_at_epochs": starts,
            "val": val,
            "test": classification_metrics(test_labels, test_prob),
            "test_labels": test_labels.tolist(),
            "test_prob_real": [round(float(p), 6) for p in test_prob],
            **test_groups.record_fields(test_labels, test_prob),
            "history": history,
            "train_seconds": sum(h["train_seconds"] for h in history),
            "eval_seconds": sum(h["eval_seconds"] for h in history),
            "samples_per_second": stats["samples_per_second"],
            # Two different measures, two keys: CUDA's peak allocation, and the process's peak RSS
            "gpu_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
            "device": device_name(device),
            "trainable_params": trainable,
            "total_params": total_params,
            "adapter_bytes": state_dict_bytes(weights),
            "train_run_dir": RunFolder(config.run_dir).train_run(train_run or trial_id),
            "versions": library_versions(),
            "split_hash": config.split_hash,
            "seed": config.seed,
        }
        with tempfile.TemporaryDirectory() as folder:
            save_file(weights, os.path.join(folder, WEIGHTS_FILE))
            with open(os.path.join(folder, CHECKPOINT_RECORD), "w") as handle:  # see RunFolder.settle_trial_records
                json.dump(record, handle, indent=1)
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1, "history": history, "starts": starts, "rng": rng_state()},
                       os.path.join(folder, STATE_FILE))
            if report:
                report(metrics, folder)
        # After the checkpoint is stored: a record never claims an epoch that a crash would lose;
        # a stop between the two leaves the checkpoint's copy ahead, which the search settles.
        write_record(record_path, record)
    return record


def linear_schedule_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int,
                                total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' get_linear_schedule_with_warmup, step for step (tests/unit/test_model.py
    compares them): importing it pulls in transformers' Trainer utilities and peft, about 4 s of
    every trial worker's start on one core, and a full fine-tune needs neither."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_report(epoch: int, val: dict, train_loss: float, config: FineTuneConfig) -> dict:
    """What a trial tells Tune after an epoch: ASHA and Optuna read SCORE and nothing else."""
    return {"epoch": epoch, SCORE: selection_score(val, config.selection_metric), "val_f1": val["f1"],
            "train_loss": train_loss,
            # False for a trial ASHA or the time budget stops: Optuna hears it as pruned
            "schedule_done": epoch == config.epochs}


def cap_cuda_memory(device: torch.device, gigabytes: float) -> None:
    """Let this process allocate at most `gigabytes` of the card, so a trial on a big card behaves
    as on a small one (an allocation past it raises CUDA's out-of-memory error)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gigabytes * 2**30 / total), index)


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
    started_at = time.time()
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
        "started_at": started_at,  # wall clock: lines up trials that share a GPU
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
    state = torch.load(os.path.join(folder, STATE_FILE), weights_only=True)  # tensors and plain data only
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["history"], state["epoch"], state["starts"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG's state as tensors and plain values, so a checkpoint loads with weights_only=True."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
