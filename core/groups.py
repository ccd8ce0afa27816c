"""Per-group test results: the group of every test review, and each group's metrics.

The prepared split (the run's DataFolder.split) keeps a `group` column when the data has groups
(product categories); its test rows are in the same order as every trial's and baseline's test
predictions (core/tokens.py and the TF-IDF baseline read the split in file order). The split's
protocol (random, or which groups were held out) is written beside it (DataFolder.protocol).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import storage
from core.data import RANDOM_PROTOCOL
from core.metrics import classification_metrics
from core.run_folder import DataFolder


def write_protocol(data_dir: str, protocol: str, group_col: str | None, test_groups: list[str] | None) -> None:
    storage.write_text(DataFolder(data_dir).protocol, json.dumps(
        {"protocol": protocol, "group_col": group_col, "test_groups": sorted(test_groups or [])}, indent=1))


def read_protocol(data_dir: str) -> dict:
    """What write_protocol wrote; a run prepared before protocols: a random split without groups."""
    location = DataFolder(data_dir).protocol
    if not storage.exists(location):
        return {"protocol": RANDOM_PROTOCOL, "group_col": None, "test_groups": []}
    return json.loads(storage.read_text(location))


def write_split(data_dir: str, split: pd.DataFrame) -> None:
    table = io.BytesIO()
    split.to_parquet(table, index=False)
    storage.write_bytes(DataFolder(data_dir).split, table.getvalue())


def read_split(data_dir: str) -> pd.DataFrame:
    """The prepared split: text, label, split (and group) of every row, in the order every test
    prediction follows."""
    return pd.read_parquet(io.BytesIO(storage.read_bytes(DataFolder(data_dir).split)))


def test_row_groups(data_dir: str) -> list[str] | None:
    """The group of each test review in prediction order, or None when the run has no groups."""
    split = read_split(data_dir)
    if "group" not in split.columns:
        return None
    return split.loc[split["split"] == "test", "group"].astype(str).tolist()


def metrics_by_group(labels, prob_real, groups: list[str]) -> dict[str, dict]:
    """group -> classification_metrics of that group's test reviews, groups in sorted order."""
    labels, prob_real, groups = np.asarray(labels), np.asarray(prob_real), np.asarray(groups)
    if not len(labels) == len(prob_real) == len(groups):
        raise ValueError(f"{len(labels)} labels, {len(prob_real)} predictions and {len(groups)} groups")
    with warnings.catch_warnings():  # a small group may hold one class: its ROC AUC is NaN, said once
        warnings.simplefilter("ignore", UserWarning)
        return {str(g): classification_metrics(labels[groups == g], prob_real[groups == g])
                for g in sorted(set(groups))}


@dataclass(frozen=True)
class SplitGroups:
    """A run's split protocol and the group of each of its test reviews (None without groups)."""

    protocol: str
    groups: list[str] | None

    @classmethod
    def of_run(cls, data_dir: str) -> "SplitGroups":
        return cls(read_protocol(data_dir)["protocol"], test_row_groups(data_dir))

    def record_fields(self, labels, prob_real) -> dict:
        """What a record adds about its split: the protocol, and with groups each test review's
        group (`test_group`, beside test_labels) and each group's test metrics (`test_by_group`)."""
        fields = {"protocol": self.protocol}
        if self.groups is not None:
            fields["test_group"] = self.groups
            fields["test_by_group"] = metrics_by_group(labels, prob_real, self.groups)
        return fields
