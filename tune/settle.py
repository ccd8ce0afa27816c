"""What the search does with its trials' records once Tune returns, before anything ranks them:
each errored trial's reason written into its record, and every record brought forward to the
checkpoint its trial stored last."""

from __future__ import annotations

from core import storage
from core.record import read_record, write_record
from core.run_folder import CHECKPOINT_RECORD, RunFolder
from search_spaces.optuna_space import trial_settings
from trainables.config import FineTuneConfig
from tune.trial import first_line, mark_failed


def record_failures(results, folder: RunFolder) -> None:
    """Write each errored trial's reason into its record (Tune's view: a stopped trial is no error)."""
    for result in results:
        if result.error is not None:
            trial = FineTuneConfig.from_dict({**trial_settings(result.config), "run_dir": folder.path})
            trial_id = result.metrics["trial_id"]  # Tune sets it even before a trial's first report
            mark_failed(folder.trial_record(trial_id), trial, trial_id, first_line(result.error))


def settle_trial_records(folder: RunFolder) -> int:
    """Make each trial's record agree with its latest checkpoint: a trial stopped after storing a
    scored point's checkpoint but before rewriting its record takes the checkpoint's copy (its
    failure, if any, kept). Returns how many records were brought forward."""
    settled = 0
    for path in folder.record_paths("trials"):
        record = read_record(path)
        checkpoint = (folder.latest_checkpoint(storage.name(record["train_run_dir"]))
                      if "train_run_dir" in record else None)
        copy = storage.join(checkpoint, CHECKPOINT_RECORD) if checkpoint else None
        if not copy or not storage.exists(copy):
            continue
        saved = read_record(copy)
        if saved["epochs_run"] > (record.get("epochs_run") or 0):
            saved.update({key: record[key] for key in ("status", "error", "out_of_memory") if key in record})
            write_record(path, saved)
            settled += 1
    return settled
