"""Find, on the GPU itself, the largest micro-batch a trial can train within its memory cap.

The estimate (trainables/memory.py) decides before a trial starts; this measures. It runs one
forward and backward pass at the run's max length (the worst batch) with the optimizer's state
reserved, halving the batch until the peak stays under 90 % of the cap (the rest is headroom for
the allocator's fragmentation). The answer is cached in the run's data folder per model, method,
adapter, batch, max length, cap and card, so a search probes once, not once per trial.
"""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from core import storage
from core.run_folder import DataFolder
from trainables.config import FineTuneConfig
from trainables.model import enable_gradient_checkpointing

HEADROOM = 0.9


def fit_card(model: torch.nn.Module, config: FineTuneConfig, device: torch.device) -> FineTuneConfig:
    """The settings the trial trains with on this card: the same optimizer step (batch_size x
    grad_accumulation) in the largest micro-batch that fits, with gradient checkpointing turned
    on only when not even one review fits without it."""
    micro = largest_micro_batch(model, config, device)
    if micro == 0 and not config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
        config = replace(config, gradient_checkpointing=True)
        micro = largest_micro_batch(model, config, device)
    if micro == 0:
        raise torch.OutOfMemoryError(
            f"CUDA out of memory: not even one review of {config.max_length} tokens trains within "
            f"{config.gpu_memory_gb:g} GiB with gradient checkpointing. Raise --gpu-memory-gb.")
    if micro == config.batch_size:
        return config
    return config.with_micro_batch(micro)


def cache_key(config: FineTuneConfig, device: torch.device) -> str:
    return "|".join(str(part) for part in (
        config.model, config.method, config.target_modules, config.lora_r, config.batch_size, config.max_length,
        config.gpu_memory_gb, config.gradient_checkpointing, torch.cuda.get_device_name(device)))


def largest_micro_batch(model: torch.nn.Module, config: FineTuneConfig, device: torch.device) -> int:
    """The largest of batch_size, batch_size/2, ..., 1 that fits; 0 when not even 1 does."""
    cache = DataFolder(config.data_dir).micro_batches
    known = json.loads(storage.read_text(cache)) if storage.exists(cache) else {}
    key = cache_key(config, device)
    if key in known:
        return known[key]
    cap = config.gpu_memory_gb * 2**30
    batch = config.batch_size
    while batch >= 1 and not fits(model, batch, config.max_length, device, cap):
        batch //= 2
    known = json.loads(storage.read_text(cache)) if storage.exists(cache) else {}  # another trial may have written
    known[key] = batch
    storage.write_text(cache, json.dumps(known, indent=1))
    return batch


def probe_batch(config, batch: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """`batch` rows of `length` tokens, as costly as real reviews of that length: one ordinary
    token repeated, each row ending in the end-of-sequence token when the model has one (T5's
    classification head reads the eos position and refuses rows without it)."""
    eos = getattr(config, "eos_token_id", None)
    token = min(1000, config.vocab_size - 1)
    token = token - 1 if token == eos else token
    ids = torch.full((batch, length), token, dtype=torch.long, device=device)
    if eos is not None:
        ids[:, -1] = eos
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def fits(model: torch.nn.Module, batch: int, length: int, device: torch.device, cap: float) -> bool:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    model.train()
    try:
        optimizer_state = torch.empty(2 * trainable, dtype=torch.float32, device=device)  # AdamW moments
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(**probe_batch(model.config, batch, length, device)).logits
        logits.float().sum().backward()
        ok = torch.cuda.max_memory_allocated(device) <= HEADROOM * cap
        del optimizer_state, logits
    except torch.OutOfMemoryError:
        ok = False
    model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()
    return ok
