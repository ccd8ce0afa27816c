"""The whole fine-tuning loop of one trial, with no Ray in it: Ray Train runs it in a worker
(tune/trial.py), and benchmarks and GPU checks call `fine_tune` directly.

A trial stops to score validation `evals_per_epoch` times an epoch (its report points,
core/reports.py) and reports each one. At its scored points (ASHA's rungs, each epoch's end, the
schedule's end) it also scores test, rewrites the headline of its record.json and hands a
checkpoint folder (trainable weights, optimizer, scheduler, point, RNG) to `report`; between them
only the validation history grows. Validation metrics are for choosing; test metrics are written
for the report, never for choice, and the record is complete from the first report point on, so a
trial that ASHA stops at its first rung still has its row, scored on the model its checkpoint holds.
"""

from __future__ import annotations

import json
import os
import random
import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from core.groups import SplitGroups
from core.metrics import classification_metrics, selection_score
from core.record import library_versions, read_record, scored_record, write_record
from core.reports import EPOCH, POINT, SCHEDULE_DONE, SCORE
from core.run_folder import CHECKPOINT_RECORD, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS, DataFolder, RunFolder
from core.tokens import (
    collate,
    length_grouped_batches,
    read_tokens,
    sorted_batches,
)
from trainables.batch_probe import fit_card
from trainables.config import FineTuneConfig, trial_identity
from trainables.model import (
    build_classifier,
    load_tokenizer,
    load_trainable_state_dict,
    loading_overrides,
    parameter_counts,
    state_dict_bytes,
    trainable_state_dict,
)


def fine_tune(config: FineTuneConfig, record_path: str, trial_id: str, device: torch.device, *,
              resume_from: str | None = None, report: Callable[[dict, str | None], None] | None = None,
              train_run: str | None = None, placement: dict | None = None,
              started_at: float | None = None, marks: dict[str, float] | None = None) -> dict:
    """The whole fine-tuning loop of one trial, callable without Ray (benchmarks, GPU checks).

    At every report point: score validation, rewrite the record and `report` (with a checkpoint
    folder at scored points, None between them). `placement` (where it ran: Ray's node and GPU
    ids) goes into each point's history; `started_at` (wall clock, the trial's start) is what
    the record's `startup_seconds` counts from, and `marks` (name -> wall clock) are the caller's
    steps before this function, listed in the record's `startup_parts`. Returns the final record.
    """
    started_at = started_at or time.time()
    marks = {**(marks or {}), "fine_tune_called": time.time()}
    setup_device(config, device)
    seed_everything(config.seed)
    data, test_groups, pad_id = read_run_data(config)
    marks["data_read"] = time.time()
    model = build_classifier(config, device)
    marks["model_built"] = time.time()
    searched, config = config, fit_to_device(model, config, device)
    optimizer, scheduler = setup_optimizer(model, config, len(data["train"][0]), device)
    history, point, starts = (restore(resume_from, model, optimizer, scheduler, config.evals_per_epoch)
                              if resume_from else ([], 0, []))
    starts = [*starts, point / config.evals_per_epoch]
    if point >= config.last_point:
        return report_finished(point, history, config, record_path, resume_from, report)
    context = TrialContext(config=config, searched=searched, trial_id=trial_id, device=device,
                           train_run=train_run or trial_id, placement=placement, started_at=started_at,
                           params=parameter_counts(model), test_groups=test_groups, starts=starts, marks=marks,
                           scored_points=config.scored_points, bf16=bf16_autocast(model, device), data=data,
                           pad_id=pad_id, record_path=record_path, report=report, optimizer=optimizer,
                           scheduler=scheduler, history=history)
    saved = os.path.join(resume_from, CHECKPOINT_RECORD) if resume_from else None
    record = read_record(saved) if saved and os.path.exists(saved) else None
    rng = np.random.default_rng(config.seed)
    lengths = [len(x) for x in data["train"][0]]
    for _ in range(point // config.evals_per_epoch):  # the same batch order as an uninterrupted run
        length_grouped_batches(lengths, config.batch_size, rng)
    marks["ready_to_train"] = time.time()  # optimizer, schedule, a resume's checkpoint loaded
    while point < config.last_point:
        segments = epoch_segments(length_grouped_batches(lengths, config.batch_size, rng),
                                  config.evals_per_epoch, config.grad_accumulation)
        for segment in segments[point % config.evals_per_epoch:]:
            context.marks.setdefault("first_step", time.time())
            stats = train_steps(model, optimizer, scheduler, data["train"], segment, pad_id, device,
                                accumulation=config.grad_accumulation)
            point += 1
            record = score_point(model, point, stats, record, context)
    return record


def setup_device(config: FineTuneConfig, device: torch.device) -> None:
    """A GPU's memory capped at the trial's share (its peak counted from here); a CPU's threads."""
    if device.type == "cuda":
        cap_cuda_memory(device, config.gpu_memory_gb)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(config.cpus_per_worker)


def read_run_data(config: FineTuneConfig) -> tuple[dict, SplitGroups, int]:
    """The run's tokenized split, its test groups, and the tokenizer's pad id."""
    data = read_tokens(DataFolder(config.data_dir).file(config.tokens_file))
    pad_id = load_tokenizer(config.model, config.trust_remote_code, config.model_revision).pad_token_id or 0
    return data, SplitGroups.of_run(config.data_dir), pad_id


def fit_to_device(model, config: FineTuneConfig, device: torch.device) -> FineTuneConfig:
    """On a GPU, the largest micro-batch the cap allows, measured (cached per run; RNG untouched);
    on a CPU the config as given (the memory estimate fitted it before: tune/trial.train_from)."""
    if device.type != "cuda":
        return config
    state = rng_state()
    fitted = fit_card(model, config, device)
    set_rng_state(state)
    torch.cuda.reset_peak_memory_stats(device)
    return fitted


def setup_optimizer(model, config: FineTuneConfig, train_rows: int, device: torch.device):
    """AdamW over the trainable weights, and a linear schedule with warmup over every epoch."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )
    steps_per_epoch = -(-train_rows // (config.batch_size * config.grad_accumulation))
    scheduler = linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps_per_epoch * config.epochs), steps_per_epoch * config.epochs)
    return optimizer, scheduler


def report_finished(point: int, history: list[dict], config: FineTuneConfig, record_path: str,
                    resume_from: str, report) -> dict:
    """Resumed from its last checkpoint (stopped after it, before the trial ended): nothing left to
    train. Report that point again, so Tune hears how the trial ended; return its record."""
    last = history[-1]
    if report:
        report(point_report(point, last["val"], last["train_loss"], config), resume_from)
    saved = os.path.join(resume_from, CHECKPOINT_RECORD)  # checkpoints from before it: the record
    return read_record(saved if os.path.exists(saved) else record_path)


@dataclass
class TrialContext:
    """What every report point of one trial's run needs besides the model and its data."""

    config: FineTuneConfig  # as trained (a GPU's measured micro-batch)
    searched: FineTuneConfig  # as the searcher drew it: the record's params
    trial_id: str
    device: torch.device
    train_run: str
    placement: dict | None
    started_at: float  # wall clock at the trial's start
    params: tuple[int, int]  # trainable, total
    test_groups: SplitGroups
    starts: list[float]
    marks: dict[str, float]  # wall clock at each start-up step, "first_step" last
    scored_points: set[int]  # where test is scored and a checkpoint stored (config.scored_points)
    bf16: bool  # trained and scored in bf16 mixed precision (bf16_autocast)
    data: dict  # the tokenized split: name -> (token ids, labels)
    pad_id: int
    record_path: str
    report: Callable[[dict, str | None], None] | None  # to Ray (tune/trial.report_to_ray), or None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    history: list[dict]  # every report point so far (grows in place)


def score_point(model, point: int, stats: dict, record: dict | None, context: TrialContext) -> dict | None:
    """Score validation at a report point (and test at a scored point), record it and report it.

    At a scored point the checkpoint is stored before the record is rewritten: a record never
    claims a model that a crash would lose; a stop between the two leaves the checkpoint's copy
    ahead, which the search settles (tune/settle.settle_trial_records). Between scored points the
    record (only its history grows) is written before the report, since ASHA never stops a trial
    there but the time budget may."""
    scored = point in context.scored_points
    val, val_predictions, test = evaluate(model, point, stats, scored, context)
    metrics = point_report(point, val, stats["train_loss"], context.config)
    if not scored:
        record = {**record, "history": context.history, **time_totals(context.history)} if record else None
        if record:
            write_record(context.record_path, record)
        if context.report:
            context.report(metrics, None)
        return record
    weights = trainable_state_dict(model)
    record = trial_record(context, point, val, val_predictions, metrics[SCORE], test, weights)
    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint(folder, weights, record, point, context)
        if context.report:
            context.report(metrics, folder)
    write_record(context.record_path, record)
    return record


def evaluate(model, point: int, stats: dict, scored: bool, context: TrialContext):
    """Validation metrics and (labels, probabilities of real), and at a scored point test's (labels,
    probabilities of real); the point joins the history."""
    config, data, history = context.config, context.data, context.history
    started = time.perf_counter()
    val_labels, val_prob = predict(model, *data["val"], config.batch_size, context.pad_id, context.device)
    val = classification_metrics(val_labels, val_prob)
    test = predict(model, *data["test"], config.batch_size, context.pad_id, context.device) if scored else None
    stats["eval_seconds"] = time.perf_counter() - started
    samples_seen = (history[-1]["samples_seen"] if history else 0) + stats.pop("samples")
    history.append({POINT: point, EPOCH: point / config.evals_per_epoch, "samples_seen": samples_seen,
                    "val": val, "scored": scored, **stats,
                    **({"placement": context.placement} if context.placement else {})})
    return val, (val_labels, val_prob), test


def write_checkpoint(folder: str, weights: dict, record: dict, point: int, context: TrialContext) -> None:
    """A scored point's checkpoint: trainable weights, the record as of it (tune/settle.py), and
    optimizer, schedule, point, history, starts and RNG (everything a resume continues from)."""
    save_file(weights, os.path.join(folder, CHECKPOINT_WEIGHTS))
    with open(os.path.join(folder, CHECKPOINT_RECORD), "w") as handle:
        json.dump(record, handle, indent=1)
    torch.save({"optimizer": context.optimizer.state_dict(), "scheduler": context.scheduler.state_dict(),
                POINT: point, "history": context.history, "starts": context.starts, "rng": rng_state()},
               os.path.join(folder, CHECKPOINT_STATE))


def trial_record(context: TrialContext, point: int, val: dict, val_predictions, score: float, test,
                 weights: dict) -> dict:
    """The record at a scored point: its headline (val, test: (labels, probability of real)) is the
    model of the checkpoint stored at this point; its history has every report point so far."""
    config, device, history = context.config, context.device, context.history
    test_labels, test_prob = test
    val_labels, val_prob = val_predictions
    trainable, total_params = context.params
    return scored_record(
        trial_identity(config, context.trial_id, searched=context.searched),
        loading_overrides=loading_overrides(config.preset),  # what this machine changed at load
        epochs_run=point / config.evals_per_epoch,  # where the headline's model was scored
        eval_point=point,
        selection={"metric": config.selection_metric, "val_score": score},
        started_at_epochs=context.starts,
        # this (re)start's seconds from the trial's start (run_trial) to its first training step
        startup_seconds=context.marks["first_step"] - context.started_at,
        startup_parts=startup_parts(context),
        val=val,
        val_labels=val_labels.tolist(),  # in the split's validation order, as test's: what an ensemble is chosen on
        val_prob_real=[round(float(p), 6) for p in val_prob],
        test=classification_metrics(test_labels, test_prob),
        test_labels=test_labels.tolist(),
        test_prob_real=[round(float(p), 6) for p in test_prob],
        **context.test_groups.record_fields(test_labels, test_prob),
        history=history,
        **time_totals(history),
        samples_per_second=history[-1]["samples_per_second"],
        # Two different measures, two keys: CUDA's peak allocation, and the process's peak RSS
        gpu_peak_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        cpu_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        device=device_name(device),
        bf16_autocast=context.bf16,
        trainable_params=trainable,
        total_params=total_params,
        adapter_bytes=state_dict_bytes(weights),
        train_run_dir=RunFolder(config.run_dir).train_run(context.train_run),
        versions=library_versions(),
    )


def startup_parts(context: TrialContext) -> dict[str, float]:
    """Seconds each start-up step took, in order: from the trial's start to the first mark, then
    from each mark to the next (Ray Train's worker start, imports, memory fit, data, model, ...)."""
    parts, previous = {}, context.started_at
    for name, at in sorted(context.marks.items(), key=lambda item: item[1]):
        parts[name] = round(at - previous, 3)
        previous = at
    return parts


def time_totals(history: list[dict]) -> dict:
    return {"train_seconds": sum(h["train_seconds"] for h in history),
            "eval_seconds": sum(h["eval_seconds"] for h in history)}


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


def point_report(point: int, val: dict, train_loss: float, config: FineTuneConfig) -> dict:
    """What a trial tells Tune at a report point: ASHA reads SCORE at POINT, Optuna the same."""
    return {POINT: point, EPOCH: point / config.evals_per_epoch,
            SCORE: selection_score(val, config.selection_metric), "val_f1": val["f1"], "train_loss": train_loss,
            # False for a trial ASHA or the time budget stops: Optuna hears it as pruned
            SCHEDULE_DONE: point == config.last_point}


def cap_cuda_memory(device: torch.device, gigabytes: float) -> None:
    """Let this process allocate at most `gigabytes` of the card, so a trial on a big card behaves
    as on a small one (an allocation past it raises CUDA's out-of-memory error)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gigabytes * 2**30 / total), index)


def bf16_autocast(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether the model runs in bf16 mixed precision (float32 weights and optimizer): on a GPU
    (the study's setting), and on a CPU with native bf16 matmuls (AVX512-BF16) unless the model has
    4-bit layers, which compute in float32 there (trainables/quantize.py). On the 2-core EPYC a
    MiniLM training step ran 1.4-1.7x and evaluation 1.4-1.6x faster than in float32
    (README, "Search economics"); a CPU without AVX512-BF16 stays in float32."""
    if device.type == "cuda":
        return True
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(native) and not getattr(model, "is_loaded_in_4bit", False)


def epoch_segments(batches: list, parts: int, accumulation: int = 1) -> list[list]:
    """One epoch's batches cut into `parts` runs of whole optimizer steps, as even as they come:
    the training between consecutive report points."""
    steps = [batches[i:i + accumulation] for i in range(0, len(batches), accumulation)]
    parts_of_steps = np.array_split(np.arange(len(steps)), parts)
    return [[batch for i in part for batch in steps[i]] for part in parts_of_steps]


def train_steps(model, optimizer, scheduler, split, batches, pad_id, device, *, pad_to: int | None = None,
                accumulation: int = 1) -> dict:
    """Train on `batches` (index arrays into `split`), stepping the optimizer every `accumulation`
    micro-batches and after the last."""
    ids, labels = split
    model.train()
    real_tokens = padded_tokens = samples = 0
    loss_sum = 0.0
    bf16 = bf16_autocast(model, device)
    started_at = time.time()
    started = time.perf_counter()
    for step, batch in enumerate(batches, 1):
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id, pad_to).items()}
        real_tokens += int(inputs["attention_mask"].sum())
        padded_tokens += inputs["attention_mask"].numel()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels[batch], device=device))
        (loss / accumulation).backward()
        if step % accumulation == 0 or step == len(batches):
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach().item() * len(batch)
        samples += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "train_loss": loss_sum / max(1, samples),
        "started_at": started_at,  # wall clock: lines up trials that share a GPU
        "train_seconds": seconds,
        "samples": samples,
        "samples_per_second": samples / seconds if seconds > 0 else 0.0,
        "padding_efficiency": real_tokens / max(1, padded_tokens),
    }


def train_epoch(model, optimizer, scheduler, split, *, batch_size: int, pad_id: int, device: torch.device,
                rng: np.random.Generator, pad_to: int | None = None, group_by_length: bool = True,
                accumulation: int = 1) -> dict:
    """One pass over `split` (the throughput benchmark's unit). pad_to/group_by_length=False
    reproduce fixed-length padding in random batches (the study's setup); trials use the defaults."""
    if group_by_length:
        batches = length_grouped_batches([len(x) for x in split[0]], batch_size, rng)
    else:
        order = rng.permutation(len(split[0]))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return train_steps(model, optimizer, scheduler, split, batches, pad_id, device, pad_to=pad_to,
                       accumulation=accumulation)


@torch.no_grad()
def predict(model, ids, labels, batch_size, pad_id, device, *, bf16: bool = True,
            progress=False) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probability of real) in the split's own row order. `bf16`: in bf16 mixed precision
    where bf16_autocast allows it (the trials' scoring: faster, but a text's probability then moves
    by a few 1e-4 with the padding and size of the batch it lands in); False: float32, where the
    same text gets the same probability in any batch (to about 1e-7)."""
    model.eval()
    bf16 = bf16 and bf16_autocast(model, device)
    prob = np.zeros(len(ids))
    batches = sorted_batches([len(x) for x in ids], batch_size * 2)
    if progress:
        batches = tqdm(batches, desc="classifying", unit="batch")
    for batch in batches:
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits
        prob[batch] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return np.asarray(labels), prob


def restore(folder, model, optimizer, scheduler, evals_per_epoch: int) -> tuple[list[dict], int, list[float]]:
    """Load a checkpoint; returns (history, report points passed, starts). A checkpoint from before
    report points inside an epoch holds its epoch instead: that epoch's end point."""
    load_trainable_state_dict(model, load_file(os.path.join(folder, CHECKPOINT_WEIGHTS)))
    state = torch.load(os.path.join(folder, CHECKPOINT_STATE), weights_only=True)  # tensors and plain data only
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    point = state[POINT] if POINT in state else state["epoch"] * evals_per_epoch
    return state["history"], point, state["starts"]


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
