"""Run profiles: how much data and how many trials a search spends.

smoke  seconds; for tests and CI. A few dozen reviews, 3 trials, short sequences.
cpu    the default without a GPU: a real search on a stratified subsample, sized from measurements
       on a 2-core CPU (README.md, Results): enough reviews and optimizer steps for a fine-tune to
       beat TF-IDF, few trials, and a time budget so the whole command ends within 15 minutes.
full   the study's protocol: every review, every split in full.

`epochs` is the most a trial trains: ASHA's maximum rung and the length of every trial's
learning-rate schedule, so ASHA compares trials at the same point of the same schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError


@dataclass(frozen=True)
class RunProfile:
    name: str
    num_samples: int
    rows: dict  # split name -> rows kept (stratified), None = all
    max_length_cap: int | None  # shorter sequences for quick profiles; None = chosen from data
    epochs: int  # ASHA's max_t and every trial's schedule length
    time_budget_minutes: float | None = None  # the search's default --time-budget
    cpus_per_trial: int = 1  # the default --cpus-per-trial (threads of a CPU trial's worker)

    def describe(self) -> str:
        budget = f", {self.time_budget_minutes:g}-minute budget" if self.time_budget_minutes else ""
        if all(v is None for v in self.rows.values()):
            return f"profile '{self.name}': all rows, {self.num_samples} trials of up to {self.epochs} epochs{budget}"
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        return (f"profile '{self.name}': stratified subsample ({rows} rows), {self.num_samples} trials "
                f"of up to {self.epochs} epochs{budget}; use --profile full for every review")


PROFILES = {
    "smoke": RunProfile("smoke", 3, {"train": 96, "val": 48, "test": 48}, 64, epochs=2),
    # val and test as before (the same 600 test reviews), 3,000 train reviews: the measured point
    # where a fine-tune clears TF-IDF by more than its noise (../shared/NOTES.md).
    # 2 threads a trial, one trial at a time on 2 cores: an epoch takes 3.3 minutes instead of 5
    # for each of two 1-thread trials side by side, so the first seeded trial finishes its whole
    # schedule inside the budget and ASHA sees each rung sooner (README, Results).
    "cpu": RunProfile("cpu", 6, {"train": 3000, "val": 300, "test": 600}, 256, epochs=2,
                      time_budget_minutes=11, cpus_per_trial=2),
    "full": RunProfile("full", 20, {"train": None, "val": None, "test": None}, None, epochs=3),
}


def get_profile(name: str) -> RunProfile:
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile '{name}'. Choose one of: {', '.join(PROFILES)}.")
    return PROFILES[name]
