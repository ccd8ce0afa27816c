"""Classify many reviews on Ray Data: `python -m results.predict BUNDLE INPUT --ray [--address ADDR]`.

Ray Data reads INPUT (a .csv/.csv.gz/.tsv, .parquet or .jsonl file, a folder of them, or a bucket
URI such as s3://bucket/reviews/), scores it with `map_batches` on a pool of actors that each load
the bundle once (one per GPU where the cluster has GPUs, else up to one per CPU), and the driver
streams the scored rows, in input order, into one Parquet or CSV file. Each output row carries
`row`, its 0-based position in the input (a folder's files in path order, each file's rows in
order), and `path`, the file it came from, beside the single-process columns (text, label,
prob_real); the probabilities are those `results.predict` computes without --ray.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import storage
from core.data import TEXT_COLUMNS, find_column, table_format
from core.errors import DataError, UserError
from core.operating_point import DEFAULT_THRESHOLD
from results.predict import labels, load_scorer, review_text

ROW_COLUMN = "row"
PATH_COLUMN = "path"
OUTPUT_FORMATS = (".parquet", ".csv")
PROGRESS_S = 10  # seconds between progress lines
# Reviews per map_batches call, and per block: a large file is spread over every actor and progress
# shows. Each call sorts its reviews by length into the bundle's batch size: calls of 256 cost one
# thread 6.3 % of its throughput in padding against sorting 3,072 at once, calls of 1,024 nothing
# (bench/predict_chunk_size.py, the cpu profile's MiniLM at 192 tokens).
BATCH_ROWS = 1024


def input_files(location: str) -> tuple[list[str], str]:
    """(the files to read, in path order; their one format). A folder or bucket prefix is read
    whole: every file of one supported format under it; other files are refused by name."""
    try:
        paths = storage.files(location)
    except OSError as error:  # no credentials, no such bucket
        raise DataError(f"Could not list {location}: {str(error).splitlines()[0]}") from error
    if not paths:
        raise DataError(f"Input not found: {location}. Pass a file, a folder of files or a bucket URI.")
    kinds = {path: table_format(path) for path in paths}
    unknown = [path for path, kind in kinds.items() if kind is None]
    if unknown:
        raise DataError(f"{location}: {unknown[0]}{f' and {len(unknown) - 1} more' if len(unknown) > 1 else ''} "
                        "is not .csv, .csv.gz, .tsv, .parquet or .jsonl. With --ray, INPUT holds files of those "
                        "formats only (a .txt is read without --ray).")
    if len(set(kinds.values())) > 1:
        raise DataError(f"{location} mixes formats ({', '.join(sorted(set(kinds.values())))}); "
                        "Ray Data reads one format at a time: put each in a folder of its own.")
    return paths, next(iter(kinds.values()))


def csv_options(kind: str, columns: list[str] | None = None) -> dict:
    """pyarrow's CSV options: quoted values may span lines, and `columns` are read as text, as the
    single-process path reads them ("NA" and "12345" stay reviews)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = {"parse_options": pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True)}
    if columns is not None:
        options["convert_options"] = pacsv.ConvertOptions(column_types={name: pa.string() for name in columns},
                                                          strings_can_be_null=False)
    return options


def input_columns(location: str, path: str, kind: str) -> list[str]:
    """The columns of the first file to read, from its header, schema or first line, before Ray
    starts (every file of a folder is read with them)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    fs, _ = storage.filesystem(location)
    try:
        if kind == "parquet":
            return pq.read_schema(path, filesystem=fs).names
        with fs.open_input_stream(path) as stream:  # decompresses by extension
            if kind in ("csv", "tsv"):
                return pacsv.open_csv(stream, **csv_options(kind)).schema.names
            return pajson.open_json(stream).schema.names
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"Could not read {path}: {str(error).splitlines()[0]}") from error


def read_dataset(location: str, paths: list[str], kind: str, columns: list[str]):
    """A Ray Dataset of `paths`, the files of `location` in `kind`'s format, with each row's file."""
    import ray.data

    fs, _ = storage.filesystem(location)
    read = {"filesystem": fs, "include_paths": True, "file_extensions": None}
    if kind in ("csv", "tsv"):
        return ray.data.read_csv(paths, **csv_options(kind, columns), **read)
    if kind == "parquet":
        return ray.data.read_parquet(paths, **read)
    return ray.data.read_json(paths, **read)  # pyarrow reads newline-delimited JSON


class BundleScorer:
    """One actor's copy of the bundle, loaded once; each batch of rows -> (path, text, prob_real)."""

    def __init__(self, folder: str, text_col: str, trust_pickle: bool, trust_remote_code: bool, bf16: bool):
        if not Path(folder).is_dir():
            raise UserError(f"The bundle {folder} is not on node {socket.gethostname()}: with --address, every "
                            "node must see the bundle at the same path (a shared folder).")
        self.text_col = text_col
        self.score = load_scorer(folder, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code,
                                 progress=False, bf16=bf16)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = [review_text(value) for value in batch[self.text_col].tolist()]
        return pd.DataFrame({PATH_COLUMN: batch[PATH_COLUMN].to_numpy(), "text": [text or "" for text in texts],
                             "prob_real": self.score(texts)})


def scoring_pool() -> dict:
    """map_batches' resources: one actor per GPU; without GPUs, from one actor up to one per CPU
    but one, so Ray Data's read tasks always find a CPU (a pool holding every CPU waits forever on
    reads that cannot start). Each CPU actor gets one CPU, and torch one thread in it."""
    import ray
    from ray.data import ActorPoolStrategy

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus:
        return {"compute": ActorPoolStrategy(size=gpus), "num_gpus": 1}
    return {"compute": ActorPoolStrategy(min_size=1, max_size=max(1, cpus - 1)), "num_cpus": 1}


def start_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=address or "local", include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
    except ConnectionError as error:
        raise UserError(f"Could not connect to a Ray cluster at {address}: {error}. Start one with "
                        "`ray up cluster.yaml` (or `ray start --head` on this machine).") from error


class PredictionWriter:
    """One Parquet or CSV file written batch by batch as the rows arrive; complete or absent: it
    is written beside and renamed at the end (locally; an object store shows an object only once
    its upload completes), and a failure leaves nothing."""

    COLUMNS = [ROW_COLUMN, "text", "label", "prob_real", PATH_COLUMN]

    def __init__(self, out: str):
        self.out, self.fs, self.path = out, *storage.filesystem(out)
        self.partial = self.path if storage.is_uri(out) else f"{self.path}.{os.getpid()}.partial"
        self.stream, self.parquet, self.written = self.fs.open_output_stream(self.partial), None, False

    def write(self, frame: pd.DataFrame) -> None:
        if self.out.lower().endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame[self.COLUMNS], preserve_index=False)
            self.parquet = self.parquet or pq.ParquetWriter(self.stream, table.schema)
            self.parquet.write_table(table)
        else:
            self.stream.write(frame[self.COLUMNS].to_csv(index=False, header=not self.written).encode())
        self.written = True

    def close(self, completed: bool) -> None:
        if completed and not self.written:  # an input of no rows: the columns, no rows
            self.write(pd.DataFrame({column: pd.Series(dtype=float if column == "prob_real" else object)
                                     for column in self.COLUMNS}))
        if self.parquet is not None:
            self.parquet.close()
        self.stream.close()
        if not storage.is_uri(self.out):
            if completed:
                os.replace(self.partial, self.path)
            else:
                Path(self.partial).unlink(missing_ok=True)


def predict_with_ray(bundle_folder: str, bundle: dict, location: str, out: str, text_col: str | None = None,
                     address: str | None = None, trust_pickle: bool = False,
                     trust_remote_code: bool = False, bf16: bool = False) -> dict:
    """Score every row of `location` into `out`; returns counts and the wall time."""
    if not out.lower().endswith(OUTPUT_FORMATS):
        raise UserError(f"--out {out}: with --ray, name a .parquet or .csv file.")
    if not storage.is_uri(out) and not Path(out).parent.is_dir():
        raise UserError(f"--out {out}: its folder does not exist; give a file path in an existing folder.")
    location = storage.absolute(location)
    paths, kind = input_files(location)  # refused before Ray starts, as a missing text column is
    columns = input_columns(location, paths[0], kind)
    column = find_column(pd.DataFrame(columns=columns), text_col, TEXT_COLUMNS, "text")
    start_ray(address)
    import ray
    import ray.data

    started = time.monotonic()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # blocks leave the pool in the order they were read
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its progress snapshots: the loop below says it in a line
    dataset = read_dataset(location, paths, kind, columns)
    scored = dataset.repartition(target_num_rows_per_block=BATCH_ROWS).map_batches(
        BundleScorer, batch_size=BATCH_ROWS, batch_format="pandas", **scoring_pool(),
        fn_constructor_kwargs={"folder": str(Path(bundle_folder).resolve()), "text_col": column,
                               "trust_pickle": trust_pickle, "trust_remote_code": trust_remote_code, "bf16": bf16})
    threshold = bundle.get("threshold", DEFAULT_THRESHOLD)
    writer, counts, completed = PredictionWriter(out), {"rows": 0, "real": 0, "fake": 0, "blank": 0}, False
    said = started
    try:
        for batch in scored.iter_batches(batch_size=None, batch_format="pandas"):
            prob = batch["prob_real"].to_numpy(dtype=float)
            frame = pd.DataFrame({ROW_COLUMN: np.arange(counts["rows"], counts["rows"] + len(batch)),
                                  "text": batch["text"], "label": labels(prob, threshold), "prob_real": prob,
                                  PATH_COLUMN: batch[PATH_COLUMN]})
            writer.write(frame)
            counts["rows"] += len(batch)
            counts["real"] += int((prob >= threshold).sum())
            counts["fake"] += int((prob < threshold).sum())
            counts["blank"] += int(np.isnan(prob).sum())
            if time.monotonic() - said >= PROGRESS_S:
                said = time.monotonic()
                print(f"  {counts['rows']} rows scored ({counts['rows'] / (said - started):.0f} rows/s)", flush=True)
        completed = True
    except ray.exceptions.RayError as error:
        raise UserError(scoring_failure(error)) from error
    finally:
        writer.close(completed)
    return {**counts, "seconds": time.monotonic() - started}


def scoring_failure(error: Exception) -> str:
    """One line for what went wrong on Ray: a bundle that does not load (the UserError an actor
    raised, which Ray passes on as text when it happens in the constructor) as the single-process
    path says it; anything else with its type and last line."""
    if isinstance(getattr(error, "cause", None), UserError):
        return str(error.cause)
    ours = re.findall(rf"{re.escape(UserError.__module__)}\.\w+Error: (.+)", str(error))
    if ours:
        return ours[-1].strip()
    lines = str(error).strip().splitlines()
    return f"Scoring on Ray failed ({type(error).__name__}: {lines[-1] if lines else ''})."
