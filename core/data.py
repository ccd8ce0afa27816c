"""Load, validate, clean and split a review dataset, once per run.

The contract (DESIGN.md): a text column and a label column; fake (`CG`) = 0, real (`OR`) = 1
(numeric labels: 0 = fake unless --fake-label says which value is fake); empty and null texts
dropped; a text that appears with both labels dropped everywhere, other exact duplicates kept
once; stratified split, test 20 %, then validation 10 % of the rest, seed 42. A hash of which texts landed in which split goes into every result record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from core.errors import DataError

TEXT_COLUMNS = ("text_", "text", "review")
LABEL_COLUMNS = ("label",)
LABEL_NAMES = {0: "fake", 1: "real"}
# Every spelling we accept, lower-cased, mapped to fake = 0 / real = 1.
LABEL_VALUES = {"cg": 0, "fake": 0, "0": 0, "or": 1, "real": 1, "1": 1}
MIN_ROWS_PER_CLASS = 10
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CleanReport:
    rows_read: int
    empty_dropped: int
    duplicates_dropped: int
    conflicting_dropped: int = 0  # rows whose text appears with both labels
    label_mapping: str = ""  # how the file's label values were read, e.g. "CG = fake, OR = real"

    def summary(self) -> str:
        return (
            f"{self.rows_read} rows read, {self.empty_dropped} empty texts, "
            f"{self.conflicting_dropped} rows of texts labelled both ways and "
            f"{self.duplicates_dropped} exact-duplicate texts dropped; labels {self.label_mapping}"
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV, CSV.GZ, TSV, Parquet or JSONL by file extension."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data file not found: {path}. Pass the dataset with --data PATH.")
    name = path.name.lower()
    if name.endswith((".gz", ".bz2", ".xz", ".zst")):
        name = name.rsplit(".", 1)[0]
    try:
        if name.endswith(".csv"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif name.endswith(".tsv"):
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        elif name.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif name.endswith((".jsonl", ".ndjson")):
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            raise DataError(
                f"Unknown data format: {path.name}. Use .csv, .csv.gz, .tsv, .parquet or .jsonl."
            )
    except DataError:
        raise
    except Exception as error:  # pandas raises many types for unreadable files
        raise DataError(f"Could not read {path}: {error}") from error
    if len(frame) == 0:
        raise DataError(f"{path} has no rows.")
    return frame


def find_column(frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], what: str) -> str:
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"No {what} column '{wanted}'. Columns found: {', '.join(columns)}.")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    flag = "--text-col" if what == "text" else "--label-col"
    raise DataError(
        f"No {what} column found (looked for {', '.join(candidates)}). "
        f"Columns found: {', '.join(columns)}. Name it with {flag}."
    )


def label_text(values: pd.Series) -> pd.Series:
    as_text = values.astype(str).str.strip().str.lower()
    return as_text.str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)  # 1.0 read from floats


def map_labels(values: pd.Series, fake_label: str | None = None) -> tuple[pd.Series, str]:
    """(0 = fake / 1 = real, the mapping used as text). CG/OR and fake/real (any case) are read
    by name; 0/1 as 0 = fake; any two values with `fake_label` naming the fake one."""
    as_text = label_text(values)
    distinct = sorted(set(as_text))
    if len(distinct) != 2:
        shown = ", ".join(repr(v) for v in distinct[:20])
        raise DataError(
            f"The label column must hold exactly two classes; found {len(distinct)}: {shown}."
        )
    if fake_label is not None:
        fake = label_text(pd.Series([fake_label]))[0]
        if fake not in distinct:
            raise DataError(f"--fake-label {fake_label!r} is not one of the label values "
                            f"({', '.join(repr(v) for v in distinct)}).")
        mapping = {value: int(value != fake) for value in distinct}
    else:
        mapping = {value: LABEL_VALUES.get(value) for value in distinct}
        if set(mapping.values()) != {0, 1}:
            raise DataError(
                f"Unknown label values {', '.join(repr(v) for v in distinct)}. Use CG/OR, fake/real "
                "or 0/1 (0 = fake), or name the value that means fake with --fake-label VALUE."
            )
    shown = ", ".join(f"{value} = {LABEL_NAMES[label]}" for value, label in sorted(mapping.items(), key=lambda kv: kv[1]))
    return as_text.map(mapping).astype("int64"), shown


def load_reviews(
    path: str | Path, text_col: str | None = None, label_col: str | None = None, fake_label: str | None = None,
) -> tuple[pd.DataFrame, CleanReport]:
    """Read a dataset and return (frame with columns text, label) and what cleaning did."""
    raw = read_table(path)
    text_name = find_column(raw, text_col, TEXT_COLUMNS, "text")
    label_name = find_column(raw, label_col, LABEL_COLUMNS, "label")
    texts = raw[text_name]
    frame = pd.DataFrame({"text": texts.where(texts.notna(), "").astype(str), "label": raw[label_name]})
    rows_read = len(frame)
    frame = frame[frame["text"].str.strip() != ""]  # null (Parquet, JSONL) or blank
    empty_dropped = rows_read - len(frame)
    if len(frame) == 0:
        raise DataError(f"{path} has no rows with text.")
    labels, mapping = map_labels(frame["label"], fake_label)
    frame = frame.assign(label=labels)
    conflicting = frame.groupby("text")["label"].transform("nunique") > 1
    frame = frame[~conflicting]
    before = len(frame)
    frame = frame.drop_duplicates(subset="text", keep="first").reset_index(drop=True)
    duplicates_dropped = before - len(frame)
    counts = frame["label"].value_counts()
    for label, name in LABEL_NAMES.items():
        if counts.get(label, 0) < MIN_ROWS_PER_CLASS:
            raise DataError(
                f"Class '{name}' has {counts.get(label, 0)} rows after cleaning; "
                f"at least {MIN_ROWS_PER_CLASS} are needed to split it."
            )
    return frame, CleanReport(rows_read, empty_dropped, duplicates_dropped, int(conflicting.sum()), mapping)


def split_reviews(frame: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    """Stratified split: test 20 %, then validation 10 % of the rest. Adds a `split` column.

    Rows are ordered by text first, so the same reviews split the same way in any file order.
    """
    frame = frame.sort_values("text", kind="stable", ignore_index=True)
    rest, test = train_test_split(frame, test_size=0.2, stratify=frame["label"], random_state=seed)
    train, val = train_test_split(rest, test_size=0.1, stratify=rest["label"], random_state=seed)
    return pd.concat(
        [train.assign(split="train"), val.assign(split="val"), test.assign(split="test")],
        ignore_index=True,
    )


def subsample(split: pd.DataFrame, rows: dict[str, int | None], seed: int = 42) -> pd.DataFrame:
    """Keep at most rows[name] rows of each split, stratified by label (None keeps all)."""
    parts = []
    for name in SPLITS:
        part = split[split["split"] == name]
        limit = rows.get(name)
        if limit is not None and limit < len(part):
            part, _ = train_test_split(
                part, train_size=limit, stratify=part["label"], random_state=seed
            )
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def split_hash(split: pd.DataFrame) -> str:
    """A short hash of which texts (and labels) are in which split, independent of row order."""
    digest = hashlib.sha256()
    for name in SPLITS:
        part = split[split["split"] == name]
        rows = sorted(
            hashlib.sha256(f"{label}\t{text}".encode()).hexdigest()
            for text, label in zip(part["text"], part["label"])
        )
        digest.update(name.encode())
        digest.update("".join(rows).encode())
    return digest.hexdigest()[:16]
