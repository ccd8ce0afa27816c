"""Tokenize the split once per (tokenizer, max length) and batch it with little padding.

Reviews are short (median 49 MiniLM tokens, p90 213): padding every one to 512 spends ~83 % of
the compute on padding. Batches here are dynamic-padded and grouped by length.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from core import storage
from core.run_folder import DataFolder

LENGTH_COVERAGE = 0.98  # max length covers this share of reviews without truncation


def choose_max_length(lengths: list[int], model_max: int, coverage: float = LENGTH_COVERAGE) -> int:
    """The shortest multiple of 8 that keeps `coverage` of the texts whole, at most model_max."""
    quantile = float(np.quantile(np.asarray(lengths), coverage))
    return int(min(model_max, max(8, math.ceil(quantile / 8) * 8)))


def tokens_key(tokenizer_id: str, max_length: int, split_hash: str) -> str:
    raw = f"{tokenizer_id}|{max_length}|{split_hash}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def tokenize_split(split: pd.DataFrame, tokenizer, max_length: int) -> pa.Table:
    encoded = tokenizer(split["text"].tolist(), truncation=True, max_length=max_length)
    return pa.table(
        {
            "input_ids": pa.array(encoded["input_ids"], type=pa.list_(pa.int32())),
            "label": pa.array(split["label"].to_numpy(), type=pa.int8()),
            "split": pa.array(split["split"].tolist()),
        }
    )


def cached_tokens(split: pd.DataFrame, tokenizer, tokenizer_id: str, max_length: int,
                  split_hash: str, data_dir: str) -> str:
    """Location of the tokenized split in the run's data folder, written only when this key was
    never tokenized."""
    location = DataFolder(data_dir).tokens(tokens_key(tokenizer_id, max_length, split_hash))
    if not storage.exists(location):
        sink = pa.BufferOutputStream()
        pq.write_table(tokenize_split(split, tokenizer, max_length), sink)
        storage.write_bytes(location, sink.getvalue().to_pybytes())
    return location


def read_tokens(location: str) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """split name -> (token id arrays, labels)."""
    table = pq.read_table(pa.BufferReader(storage.read_bytes(location)))
    frame = table.to_pandas()
    result = {}
    for name, part in frame.groupby("split", sort=False):
        result[name] = ([np.asarray(x, dtype=np.int64) for x in part["input_ids"]],
                        part["label"].to_numpy().astype(np.int64))
    return result


def length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator,
                           group_batches: int = 50) -> list[np.ndarray]:
    """Shuffle, cut into groups of `group_batches` batches, sort each group by length, then
    shuffle the batches: similar lengths share a batch while the order stays random."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    group = batch_size * group_batches
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Evaluation order: longest first, so the largest batch comes first and padding is minimal."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(ids: list[np.ndarray], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (or to `pad_to`, to reproduce fixed padding)."""
    width = pad_to or max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        seq = seq[:width]
        input_ids[row, :len(seq)] = torch.from_numpy(seq)
        attention[row, :len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}
