"""Frozen-backbone embeddings for the baselines, computed once per key and cached in the run folder.

Key: (model, its pinned revision, split hash, max length, pooling). Pooling is the one the model is meant for: mean
over tokens for sentence encoders (MiniLM, Stella), mean over the encoder's states for T5.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
from transformers import AutoModel

from core import storage
from core.run_folder import DataFolder
from core.tokens import collate, read_tokens, sorted_batches
from trainables.model import resolve_model_path

POOLINGS = ("mean", "encoder-mean")


def embeddings_key(model: str, split_hash: str, max_length: int, pooling: str, revision: str | None = None) -> str:
    pinned = f"|{revision}" if revision else ""  # a local model (no revision) keeps its earlier key
    return hashlib.sha256(f"{model}|{split_hash}|{max_length}|{pooling}{pinned}".encode()).hexdigest()[:16]


def embeddings_file(model: str, split_hash: str, max_length: int, pooling: str, revision: str | None = None) -> str:
    """The cache's file name in the run's data folder (what a baseline's config keeps)."""
    return DataFolder.embeddings_name(embeddings_key(model, split_hash, max_length, pooling, revision))


def embeddings_path(data_dir: str, model: str, split_hash: str, max_length: int, pooling: str,
                    revision: str | None = None) -> str:
    return DataFolder(data_dir).file(embeddings_file(model, split_hash, max_length, pooling, revision))


def load_backbone(model: str, pooling: str, trust_remote_code: bool, device: torch.device,
                  overrides: dict | None = None, revision: str | None = None):
    """The frozen backbone at `revision` (the hub commit the search pinned: the same weights and
    code as its trials); `overrides`: trainables.model.loading_overrides of the model's preset."""
    backbone = AutoModel.from_pretrained(resolve_model_path(model), trust_remote_code=trust_remote_code,
                                         revision=revision, **(overrides or {}))
    if pooling == "encoder-mean":
        backbone = backbone.get_encoder()
    return backbone.to(device).eval()


@torch.no_grad()
def embed(backbone, ids: list[np.ndarray], pad_id: int, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Masked mean of the last hidden states, one row per text, in the input order."""
    out = None
    for batch in sorted_batches([len(x) for x in ids], batch_size):
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = backbone(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()
        if out is None:
            out = np.zeros((len(ids), pooled.shape[1]), dtype=np.float32)
        out[batch] = pooled
    return out


def cached_embeddings(data_dir: str, tokens_file: str, model: str, split_hash: str, max_length: int,
                      pooling: str, pad_id: int, *, trust_remote_code: bool = False,
                      device: torch.device | None = None, overrides: dict | None = None,
                      revision: str | None = None) -> tuple[str, bool]:
    """(location of the cached embeddings, whether this call computed them)."""
    path = embeddings_path(data_dir, model, split_hash, max_length, pooling, revision)
    if storage.exists(path):
        return path, False
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = load_backbone(model, pooling, trust_remote_code, device, overrides, revision)
    arrays = {}
    for name, (ids, labels) in read_tokens(DataFolder(data_dir).file(tokens_file)).items():
        arrays[f"{name}_x"] = embed(backbone, ids, pad_id, device)
        arrays[f"{name}_y"] = labels
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    storage.write_bytes(path, buffer.getvalue())
    return path, True


def read_embeddings(location: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(io.BytesIO(storage.read_bytes(location))) as arrays:
        return {name: (arrays[f"{name}_x"], arrays[f"{name}_y"]) for name in ("train", "val", "test")}
