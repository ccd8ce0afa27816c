"""Load, validate, clean and split a review dataset, once per run.

The data contract (README, "The data contract"): a text column and a label column; fake (`CG`)
= 0, real (`OR`) = 1 (numeric labels: 0 = fake unless --fake-label says which value is fake);
empty and null texts dropped; a text that appears with both labels dropped everywhere, other
exact duplicates kept once; stratified split, test 20 %, then validation 10 % of the rest, seed
42. A hash of which texts landed in which split goes into every result record.

Groups (product categories): a group column (default `category` where the data has one) is kept
through the split, so every record can report test metrics per group. The group-held-out protocol
(`test_groups`) puts every review of the named groups in test and splits the rest into train and
validation (10 %, stratified, seed 42); the protocol is part of the split hash. Held-out groups
of one class (a generator's fakes) are paired with as many reviews of the other class, drawn from
the other groups (stratified by group) and kept out of train and validation, so test F1 is defined.

Several sources: `load_reviews` takes one path or a list; the rows are combined before cleaning
(so dedupe and texts labelled both ways work across files), and each row keeps the name of its
file, without extensions, in a `source` column (`--group-col source`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from core.errors import DataError

# `datasets` is imported only for the inputs that need it (a datasets folder, a hub id): it takes
# seconds to import, and every trial process imports this module.

TEXT_COLUMNS = ("text_", "text", "review")
LABEL_COLUMNS = ("label",)
SOURCE_COLUMN = "source"  # the file each row came from, with several --data
GROUP_COLUMNS = ("category",)
NO_GROUPS = "none"  # --group-col none: no per-group results
MISSING_GROUP = "(missing)"
RANDOM_PROTOCOL = "random split"
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
    group_col: str | None = None  # the column kept as `group`, if any
    unlabelled_dropped: int = 0  # rows whose label is null or blank

    def summary(self) -> str:
        return (
            f"{self.rows_read} rows read, {self.empty_dropped} empty texts, {self.unlabelled_dropped} rows "
            "without a label, "
            f"{self.conflicting_dropped} rows of texts labelled both ways and "
            f"{self.duplicates_dropped} exact-duplicate texts dropped; labels {self.label_mapping}"
        )


HUB_PREFIX = "hf:"


TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


def table_format(name: str | Path) -> str | None:
    """csv, tsv, parquet or jsonl by a file name's extension, after a compression suffix; None
    for anything else."""
    name = str(name).lower()
    if name.endswith(COMPRESSIONS):
        name = name.rsplit(".", 1)[0]
    return next((kind for suffix, kind in TABLE_FORMATS.items() if name.endswith(suffix)), None)


def read_table(path: str | Path, data_split: str | None = None) -> pd.DataFrame:
    """Read CSV, CSV.GZ, TSV, Parquet or JSONL by file extension, a folder written by Hugging Face
    `datasets`' save_to_disk, or a hub dataset `hf:OWNER/NAME` (through `datasets`, from its local
    cache when offline). `data_split` picks one split of a DatasetDict; without it every split's
    rows are read, and the data contract splits them again."""
    if str(path).startswith(HUB_PREFIX):
        return read_hub_dataset(str(path)[len(HUB_PREFIX):], data_split)
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data file not found: {path}. Pass the dataset with --data PATH.")
    if path.is_dir():
        return read_saved_dataset(path, data_split)
    if data_split is not None:
        raise DataError(f"--data-split applies to a `datasets` folder or hub dataset, not to the file {path.name}.")
    kind = table_format(path.name)
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif kind == "tsv":
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            raise DataError(
                f"Unknown data format: {path.name}. Use .csv, .csv.gz, .tsv, .parquet or .jsonl. A folder "
                "written by datasets' save_to_disk, or hf:OWNER/NAME, work too."
            )
    except DataError:
        raise
    except Exception as error:  # pandas raises many types for unreadable files
        raise DataError(f"Could not read {path}: {error}") from error
    if len(frame) == 0:
        raise DataError(f"{path} has no rows.")
    return frame


def read_saved_dataset(path: Path, data_split: str | None) -> pd.DataFrame:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise DataError(f"{path} is a folder but not one written by datasets' save_to_disk "
                        f"({str(error).splitlines()[0]}). Pass a data file or such a folder.") from error
    return dataset_frame(loaded, data_split, str(path))


def read_hub_dataset(name: str, data_split: str | None) -> pd.DataFrame:
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except Exception as error:  # no network and no cache: ConnectionError, FileNotFoundError, hub errors
        raise DataError(
            f"Could not load {HUB_PREFIX}{name}: it is not in the local datasets cache and the hub could not "
            f"be reached ({type(error).__name__}). Pre-download it where there is a network: "
            f"python -c \"import datasets; datasets.load_dataset('{name}').save_to_disk('{name.split('/')[-1]}')\" "
            "and pass that folder with --data (or copy the cache, ~/.cache/huggingface)."
        ) from error
    return dataset_frame(loaded, data_split, f"{HUB_PREFIX}{name}")


def is_unlabelled(part) -> bool:
    """A datasets split whose label column holds no label: all -1 (a ClassLabel's "no label") or null."""
    import datasets

    for column in LABEL_COLUMNS:
        if column in part.features:
            values = part[column]
            missing = [v is None or (isinstance(part.features[column], datasets.ClassLabel) and v < 0) for v in values]
            return len(values) > 0 and all(missing)
    return False


def dataset_frame(loaded, data_split: str | None, where: str) -> pd.DataFrame:
    """A Dataset, or a DatasetDict's chosen split (every split's rows without one), as a frame whose
    ClassLabel columns hold their names (so `fake`/`real`, not 0/1, decide what a label means). An
    unlabelled split (a hub dataset's test split, often) is refused, not mixed in."""
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if data_split is not None:
            if data_split not in loaded:
                raise DataError(f"{where} has no split '{data_split}'; its splits: {', '.join(loaded)}.")
            parts = {data_split: loaded[data_split]}
        else:
            parts = dict(loaded)
    else:
        if data_split is not None:
            raise DataError(f"{where} is a single Dataset without splits; leave out --data-split.")
        parts = {"": loaded}
    unlabelled = [name for name, part in parts.items() if is_unlabelled(part)]
    if unlabelled and len(parts) > 1:
        raise DataError(f"Split {', '.join(repr(n) for n in unlabelled)} of {where} has no labels (every label "
                        "missing or -1) and cannot be mixed into the search's data; pass --data-split with a "
                        f"labelled split ({', '.join(n for n in parts if n not in unlabelled)}).")
    frames = []
    for part in parts.values():
        frame = part.to_pandas()
        for column, feature in part.features.items():
            if isinstance(feature, datasets.ClassLabel):
                frame[column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[column]]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    if len(frame) == 0:
        raise DataError(f"{where} has no rows.")
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
    flag = {"text": "--text-col", "label": "--label-col"}.get(what, "--group-col")
    raise DataError(
        f"No {what} column found (looked for {', '.join(candidates)}). "
        f"Columns found: {', '.join(columns)}. Name it with {flag}."
    )


def label_text(values: pd.Series) -> pd.Series:
    as_text = values.astype(str).str.strip().str.lower()
    return as_text.str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)  # 1.0 read from floats


def map_labels(values: pd.Series, fake_label: str | None = None, one_class: bool = False) -> tuple[pd.Series, str]:
    """(0 = fake / 1 = real, the mapping used as text). CG/OR and fake/real (any case, mixed across
    files) are read by name; 0/1 as 0 = fake; any two values with `fake_label` naming the fake one.
    `one_class`: a file of one class is read too (an evaluation file of one generator's fakes)."""
    as_text = label_text(values)
    distinct = sorted(set(as_text))
    by_name = fake_label is None and all(value in LABEL_VALUES for value in distinct)
    classes = len({LABEL_VALUES[value] for value in distinct}) if by_name else len(distinct)
    if classes != 2 and not (one_class and classes == 1):
        shown = ", ".join(repr(v) for v in distinct[:20])
        raise DataError(
            f"The label column must hold exactly two classes; found {classes}: {shown}."
        )
    if fake_label is not None:
        fake = label_text(pd.Series([fake_label]))[0]
        if fake not in distinct and not one_class:
            raise DataError(f"--fake-label {fake_label!r} is not one of the label values "
                            f"({', '.join(repr(v) for v in distinct)}).")
        mapping = {value: int(value != fake) for value in distinct}
    elif by_name:
        mapping = {value: LABEL_VALUES[value] for value in distinct}
    else:
        raise DataError(
            f"Unknown label values {', '.join(repr(v) for v in distinct)}. Use CG/OR, fake/real "
            "or 0/1 (0 = fake), or name the value that means fake with --fake-label VALUE."
        )
    shown = ", ".join(f"{value} = {LABEL_NAMES[label]}" for value, label in sorted(mapping.items(), key=lambda kv: kv[1]))
    return as_text.map(mapping).astype("int64"), shown


def group_column(frame: pd.DataFrame, wanted: str | None) -> str | None:
    """The group column: `wanted` (which must exist), none for NO_GROUPS, else the first of
    GROUP_COLUMNS the data has, else none."""
    if wanted == NO_GROUPS:
        return None
    if wanted is not None:
        return find_column(frame, wanted, GROUP_COLUMNS, "group")
    return next((name for name in GROUP_COLUMNS if name in frame.columns), None)


def source_name(path: str | Path) -> str:
    """A file's name without its extensions (`lfm2.5-350m.csv.gz` -> `lfm2.5-350m`); a hub id's name."""
    name = str(path)[len(HUB_PREFIX):] if str(path).startswith(HUB_PREFIX) else Path(path).name
    name = name.rsplit("/", 1)[-1]
    for _ in range(2):  # .csv.gz: the compression, then the format
        stem, dot, extension = name.rpartition(".")
        if dot and extension.lower() in ("gz", "bz2", "xz", "zst", "csv", "tsv", "parquet", "jsonl", "ndjson"):
            name = stem
    return name


def read_source(path: str | Path, text_col: str | None, label_col: str | None, group_col: str | None,
                data_split: str | None, several: bool) -> tuple[pd.DataFrame, str | None]:
    """One file's text, label (as read) and group (with a group column) columns, and that column's name.
    A `source` column holds the file's name (a file alone may keep its own; one of several may not)."""
    raw = read_table(path, data_split)
    text_name = find_column(raw, text_col, TEXT_COLUMNS, "text")
    label_name = find_column(raw, label_col, LABEL_COLUMNS, "label")
    if SOURCE_COLUMN in raw.columns and several:
        raise DataError(f"{path} has its own '{SOURCE_COLUMN}' column, which several --data files fill with "
                        "each row's file name; rename that column in the file.")
    if SOURCE_COLUMN not in raw.columns:
        raw = raw.assign(**{SOURCE_COLUMN: source_name(path)})
    group_name = group_column(raw, group_col)
    texts = raw[text_name]
    frame = pd.DataFrame({"text": texts.where(texts.notna(), "").astype(str), "label": raw[label_name]})
    if group_name is not None:
        groups = raw[group_name].astype("string").str.strip()
        frame["group"] = groups.where(groups.notna() & (groups != ""), MISSING_GROUP).astype(str)
    return frame, group_name


def read_sources(paths: list, text_col: str | None, label_col: str | None, group_col: str | None,
                 data_split: str | None) -> tuple[pd.DataFrame, str | None]:
    """Every file's rows, combined. The group column is the one named, or the default's where every
    file has it (a file without the default's column gives its rows the missing group)."""
    parts = [read_source(path, text_col, label_col, group_col, data_split, len(paths) > 1) for path in paths]
    names = {name for _, name in parts if name is not None}
    if len(names) > 1:  # the default found different columns; cannot happen with one candidate
        raise DataError(f"The files group their rows by different columns ({', '.join(sorted(names))}); "
                        "name one with --group-col.")
    group_name = next(iter(names), None)
    frames = [frame if group_name is None or "group" in frame.columns else frame.assign(group=MISSING_GROUP)
              for frame, _ in parts]
    return pd.concat(frames, ignore_index=True), group_name


def load_reviews(
    path: str | Path | list, text_col: str | None = None, label_col: str | None = None, fake_label: str | None = None,
    group_col: str | None = None, data_split: str | None = None,
) -> tuple[pd.DataFrame, CleanReport]:
    """Read a dataset (a path, or a list of them combined) and return (frame with columns text,
    label and, with a group column, group) and what cleaning did. `group_col`: a column name,
    NO_GROUPS, or None for the default. A file of one class is fine when the data together has two."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    where = ", ".join(str(p) for p in paths)
    frame, group_name = read_sources(paths, text_col, label_col, group_col, data_split)
    rows_read = len(frame)
    frame = frame[frame["text"].str.strip() != ""]  # null (Parquet, JSONL) or blank
    empty_dropped = rows_read - len(frame)
    if len(frame) == 0:
        raise DataError(f"{where} has no rows with text.")
    labelled = frame["label"].notna() & (frame["label"].astype(str).str.strip() != "")
    unlabelled_dropped = int((~labelled).sum())
    frame = frame[labelled]
    if len(frame) == 0:
        raise DataError(f"{where} has no rows with both a text and a label.")
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
    return frame, CleanReport(rows_read, empty_dropped, duplicates_dropped, int(conflicting.sum()), mapping,
                              group_name, unlabelled_dropped)


PAIRED_NOTE = "; test paired with as many {name} reviews drawn from the other groups"


def held_out_pairing(frame: pd.DataFrame, test_groups: list[str] | None) -> int | None:
    """The class that test draws from the other groups when the held-out groups hold only the other
    one (a generator's fakes), else None."""
    if not test_groups or "group" not in frame.columns:
        return None
    classes = frame.loc[frame["group"].isin(test_groups), "label"].unique()
    return 1 - int(classes[0]) if len(classes) == 1 else None


def protocol_name(test_groups: list[str] | None, paired: int | None = None) -> str:
    """How test was chosen, as records and run.json say it; `paired`: held_out_pairing's class."""
    if not test_groups:
        return RANDOM_PROTOCOL
    name = f"held-out groups: {', '.join(sorted(test_groups))}"
    return name + (PAIRED_NOTE.format(name=LABEL_NAMES[paired]) if paired is not None else "")


def held_out_part(protocol: str) -> str:
    """The protocol without its pairing note: what --test-groups alone says."""
    return protocol.split("; test paired with")[0]


def check_test_groups(frame: pd.DataFrame, test_groups: list[str]) -> None:
    """Every held-out group exists, and both sides of the split keep enough of each class (held-out
    groups of one class: enough of it, and enough of the other class left to pair them with)."""
    if "group" not in frame.columns:
        raise DataError("--test-groups needs a group column: the data has none of "
                        f"{', '.join(GROUP_COLUMNS)}; name one with --group-col.")
    known = sorted(frame["group"].unique())
    unknown = [g for g in test_groups if g not in known]
    if unknown:
        raise DataError(f"Unknown test group {', '.join(repr(g) for g in unknown)}; the groups are: "
                        f"{', '.join(known)}.")
    held = frame["group"].isin(test_groups)
    paired = held_out_pairing(frame, test_groups)
    needed = {"held-out (test)": {0: MIN_ROWS_PER_CLASS, 1: MIN_ROWS_PER_CLASS},
              "remaining (train and validation)": {0: MIN_ROWS_PER_CLASS, 1: MIN_ROWS_PER_CLASS}}
    if paired is not None:  # test's other half comes from the rest, which must still train on both
        needed["held-out (test)"][paired] = 0
        needed["remaining (train and validation)"][paired] += int(held.sum())
    for side, rows in (("held-out (test)", frame[held]), ("remaining (train and validation)", frame[~held])):
        counts = rows["label"].value_counts()
        for label, name in LABEL_NAMES.items():
            if counts.get(label, 0) < needed[side][label]:
                extra = (f" ({int(held.sum())} to pair with the held-out {LABEL_NAMES[1 - paired]} reviews, "
                         f"{MIN_ROWS_PER_CLASS} to train on)" if paired == label and side.startswith("remaining")
                         else "")
                raise DataError(f"With --test-groups {','.join(test_groups)} the {side} reviews hold "
                                f"{counts.get(label, 0)} of class '{name}'; at least {needed[side][label]} "
                                f"are needed{extra}. Hold out other groups.")


def split_reviews(frame: pd.DataFrame, seed: int = 42, test_groups: list[str] | None = None) -> pd.DataFrame:
    """Stratified split: test 20 %, then validation 10 % of the rest. Adds a `split` column.
    With `test_groups`, test is every review of those groups, and the rest splits as above; held-out
    groups of one class get as many reviews of the other class in test, drawn from the other
    groups stratified by group (held_out_pairing).

    Rows are ordered by text first, so the same reviews split the same way in any file order.
    """
    frame = frame.sort_values("text", kind="stable", ignore_index=True)
    if test_groups:
        check_test_groups(frame, test_groups)
        held = frame["group"].isin(test_groups)
        rest, test = frame[~held], frame[held]
        paired = held_out_pairing(frame, test_groups)
        if paired is not None:
            rest, drawn = draw_pairs(rest, paired, len(test), seed)
            test = pd.concat([test, drawn])
    else:
        rest, test = train_test_split(frame, test_size=0.2, stratify=frame["label"], random_state=seed)
    train, val = train_test_split(rest, test_size=0.1, stratify=rest["label"], random_state=seed)
    return pd.concat(
        [train.assign(split="train"), val.assign(split="val"), test.assign(split="test")],
        ignore_index=True,
    )


def draw_pairs(rest: pd.DataFrame, label: int, count: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest without them, `count` reviews of class `label` drawn from rest, stratified by group where
    every group has two or more)."""
    candidates = rest[rest["label"] == label]
    try:
        _, drawn = train_test_split(candidates, test_size=count, stratify=candidates["group"], random_state=seed)
    except ValueError:  # a group too small to stratify by
        _, drawn = train_test_split(candidates, test_size=count, random_state=seed)
    return rest.drop(drawn.index), drawn


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


def split_hash(split: pd.DataFrame, protocol: str = RANDOM_PROTOCOL) -> str:
    """A short hash of the protocol and of which texts (and labels) are in which split,
    independent of row order."""
    digest = hashlib.sha256()
    if protocol != RANDOM_PROTOCOL:  # the random split's hash stays what it was before protocols
        digest.update(protocol.encode())
    for name in SPLITS:
        part = split[split["split"] == name]
        rows = sorted(
            hashlib.sha256(f"{label}\t{text}".encode()).hexdigest()
            for text, label in zip(part["text"], part["label"])
        )
        digest.update(name.encode())
        digest.update("".join(rows).encode())
    return digest.hexdigest()[:16]
