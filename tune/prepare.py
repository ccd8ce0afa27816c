"""Prepare a run's data once, in the driver: clean, split, subsample, hash, tokenize.

Everything lands in the run's data folder (core/run_folder.DataFolder), so trials (and a resumed
run) read the same files: the split, its protocol, and the token ids per (tokenizer, max length,
split hash).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import storage
from core.data import held_out_pairing, load_reviews, protocol_name, split_hash, split_reviews, subsample
from core.groups import write_protocol, write_split
from core.run_folder import RunFolder
from core.tokens import cached_tokens, choose_max_length
from tune.profiles import RunProfile

SPLIT_SEED = 42  # the data contract's split seed; --seed changes training and the searcher only
MODEL_MAX_LENGTH = 512  # the study's limit; reviews past it are rare (p99 ~ 400 tokens)


@dataclass(frozen=True)
class PreparedData:
    run_dir: str
    data_dir: str
    tokens_file: str
    split_hash: str
    max_length: int
    rows: dict[str, int]
    truncated: int
    cleaning: str
    label_mapping: str
    protocol: str
    group_col: str | None
    groups: dict[str, int]  # group -> test reviews, with groups


def prepare_data(data_path: str | list[str], profile: RunProfile, tokenizer, tokenizer_id: str,
                 run_dir: str, *, text_col: str | None = None, label_col: str | None = None,
                 fake_label: str | None = None, group_col: str | None = None,
                 test_groups: list[str] | None = None, data_split: str | None = None) -> PreparedData:
    """`data_path`: one path or several (combined); `group_col` and `data_split`: core.data.load_reviews's;
    `test_groups`: hold those groups out as the test split."""
    frame, report = load_reviews(data_path, text_col, label_col, fake_label, group_col, data_split)
    split = subsample(split_reviews(frame, seed=SPLIT_SEED, test_groups=test_groups), profile.rows, seed=SPLIT_SEED)
    protocol = protocol_name(test_groups, held_out_pairing(frame, test_groups))
    digest = split_hash(split, protocol)
    data_dir = RunFolder(run_dir).data
    write_split(data_dir, split)
    write_protocol(data_dir, protocol, report.group_col, test_groups)

    lengths = [len(ids) for ids in tokenizer(split["text"].tolist(), verbose=False)["input_ids"]]
    cap = min(MODEL_MAX_LENGTH, profile.max_length_cap or MODEL_MAX_LENGTH,
              getattr(tokenizer, "model_max_length", MODEL_MAX_LENGTH))
    train_lengths = [n for n, s in zip(lengths, split["split"]) if s == "train"]
    max_length = choose_max_length(train_lengths, cap)
    tokens = cached_tokens(split, tokenizer, tokenizer_id, max_length, digest, data_dir)
    return PreparedData(
        run_dir=str(run_dir),
        data_dir=data_dir,
        tokens_file=storage.name(tokens),
        split_hash=digest,
        max_length=max_length,
        rows={name: int(n) for name, n in split["split"].value_counts().items()},
        truncated=int(np.sum(np.asarray(lengths) > max_length)),
        cleaning=report.summary(),
        label_mapping=report.label_mapping,
        protocol=protocol,
        group_col=report.group_col,
        groups=({str(g): int(n) for g, n in split.loc[split["split"] == "test", "group"].value_counts().sort_index().items()}
                if report.group_col else {}),
    )
