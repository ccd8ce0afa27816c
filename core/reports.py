"""What a fine-tuning trial reports to Tune, and where: report points inside an epoch, and the
rungs among them where ASHA may stop a trial.

A trial scores validation `evals_per_epoch` times an epoch, at evenly spaced optimizer steps.
Report points are counted from 1 over the whole schedule: point p is p / evals_per_epoch epochs
of training, so the same point means the same place in the same learning-rate schedule for every
trial, whatever its micro-batch. ASHA's `time_attr` is the point (an integer, so a rung is never
missed by a rounding), and Optuna's intermediate step is the same point.

ASHA's rungs are grace, grace * factor, grace * factor^2, ... report points, as
`ray/tune/schedulers/async_hyperband.py` (_Bracket) lays them out for one bracket; a trial that
passes the last rung runs to the schedule's end. A trial scores test and stores a checkpoint only
at its scored points (its first point, the rungs, each epoch's end and the last point), so its record's test
metrics and its checkpoint always describe the same model; between them it scores validation only.
"""

from __future__ import annotations

# The run's selection metric on validation (core.metrics.selection_score): what ASHA and Optuna rank.
SCORE = "score"
# Report points passed so far: ASHA's time attribute and Optuna's step.
POINT = "eval_point"
# Fractional epochs trained at the point, for people and plots (point / evals_per_epoch).
EPOCH = "epoch"
# True only at the schedule's last point: a trial that ends without it was stopped early.
SCHEDULE_DONE = "schedule_done"


def history_point(entry: dict) -> int:
    """The report point of a record's history entry or of a report (those from before points
    inside an epoch have only their epoch: one point an epoch)."""
    return int(entry.get(POINT, entry[EPOCH]))


def rung_points(grace: int, factor: int, last_point: int) -> list[int]:
    """The report points where ASHA compares a trial with the others (those before the last point:
    at the last one every trial stops anyway)."""
    rungs, point = [], grace
    while point < last_point:
        rungs.append(point)
        point *= factor
    return rungs


def scored_points(evals_per_epoch: int, epochs: int, grace: int, factor: int) -> set[int]:
    """Where a trial scores test and checkpoints: its first point (so a trial the time budget stops
    early still has a record), every rung, every epoch's end, and so the last point."""
    ends = {evals_per_epoch * epoch for epoch in range(1, epochs + 1)}
    return {1} | set(rung_points(grace, factor, evals_per_epoch * epochs)) | ends
