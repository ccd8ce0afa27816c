"""Run profiles: how much data and how many trials a search spends.

smoke  seconds; for tests and CI. A few dozen reviews, 3 trials, short sequences.
cpu    the default without a GPU: a real search on a stratified subsample, sized from measurements
       on a 2-core CPU (README.md, Results): enough reviews and optimizer steps for a fine-tune to
       beat TF-IDF, few trials, and a time budget so the whole command ends within 15 minutes.
full   the study's protocol: every review, every split in full.

`epochs` is the most a trial trains and the length of every trial's learning-rate schedule, so
ASHA compares trials at the same point of the same schedule. A trial scores validation
`evals_per_epoch` times an epoch (its report points, core/reports.py); ASHA's rungs are report
points `rung_grace`, `rung_grace * rung_factor`, ... A rung early in the schedule stops a bad
configuration after a fraction of an epoch, at the risk of stopping one that starts slowly (a
low learning rate still warming up); a larger factor stops more trials at each rung.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.reports import rung_points


@dataclass(frozen=True)
class RunProfile:
    name: str
    num_samples: int
    rows: dict  # split name -> rows kept (stratified), None = all
    max_length_cap: int | None  # shorter sequences for quick profiles; None = chosen from data
    epochs: int  # every trial's schedule length; ASHA's max_t is its last report point
    evals_per_epoch: int = 1  # report points an epoch
    rung_grace: int = 1  # ASHA's first rung, in report points
    rung_factor: int = 2  # ASHA's reduction factor: rungs at grace * factor^k; keeps 1/factor at each
    time_budget_minutes: float | None = None  # the search's default --time-budget
    cpus_per_trial: int = 1  # the default --cpus-per-trial (threads of a CPU trial's worker)
    # Trials drawn at random before TPE models the rest (the seeds count): Optuna's default is 10,
    # more than a budget of a few trials ever runs, so TPE would never propose one.
    tpe_startup_trials: int = 10
    baselines: str = "all"  # the default --baselines (search_spaces/baselines.py: CHOICES)

    @property
    def fidelity(self) -> dict:
        """The trial settings that place its report points and ASHA's rungs (trainables/config.py)."""
        return {"evals_per_epoch": self.evals_per_epoch, "rung_grace": self.rung_grace,
                "rung_factor": self.rung_factor}

    def rungs_text(self) -> str:
        rungs = rung_points(self.rung_grace, self.rung_factor, self.evals_per_epoch * self.epochs)
        return "ASHA's rungs at " + ", ".join(f"{p / self.evals_per_epoch:g}" for p in rungs) + " epochs"

    def describe(self) -> str:
        budget = f", {self.time_budget_minutes:g}-minute budget" if self.time_budget_minutes else ""
        trials = (f"{self.num_samples} trials of up to {self.epochs} epochs scored {self.evals_per_epoch} "
                  f"times an epoch ({self.rungs_text()}){budget}")
        if all(v is None for v in self.rows.values()):
            return f"profile '{self.name}': all rows, {trials}"
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        return f"profile '{self.name}': stratified subsample ({rows} rows), {trials}; use --profile full for every review"


PROFILES = {
    # Two report points an epoch: the machinery of rungs inside an epoch runs in every test search.
    "smoke": RunProfile("smoke", 3, {"train": 96, "val": 48, "test": 48}, 64, epochs=2, evals_per_epoch=2,
                        tpe_startup_trials=2),
    # val and test as before (the same 600 test reviews), 1,500 train reviews of at most 192
    # tokens (11 % truncated), 2 epochs, two 1-thread trials side by side (bf16 mixed precision
    # where the CPU has AVX512-BF16: trainables/training.bf16_autocast). Validation 4 times an
    # epoch, rungs at 1/4 and 3/4 epoch: a configuration costs 375 reviews of training before
    # ASHA may stop it. Two slots, not one 2-thread trial: together they train faster, each
    # trial's start-up (Ray Train's worker, imports: 13-20 s on one core) overlaps the other's
    # training, and a good configuration that runs its whole schedule holds one slot, not the
    # machine, while the other goes on trying configurations (README, "Search economics"). Rungs at
    # 1/8 epoch told nothing (every trial still predicted one class); factor 3 keeps a third at a
    # rung. TPE models from the 6th trial on. The TF-IDF baseline only: the frozen embedding pass
    # took about 50 s of both cores for baselines 10 points below TF-IDF (README).
    "cpu": RunProfile("cpu", 16, {"train": 1500, "val": 300, "test": 600}, 192, epochs=2,
                      evals_per_epoch=4, rung_grace=1, rung_factor=3, time_budget_minutes=10.25, cpus_per_trial=1,
                      tpe_startup_trials=5, baselines="tfidf"),
    # Every review, 3 epochs. Validation 4 times an epoch (about a minute of an H200 per quarter
    # epoch of the Stella-size model, README "GPU"), rungs at 1/4, 3/4 and 2 1/4 epochs: factor 3
    # keeps a third at each rung, so most of 20 trials cost a quarter epoch instead of a whole one.
    "full": RunProfile("full", 20, {"train": None, "val": None, "test": None}, None, epochs=3,
                       evals_per_epoch=4, rung_grace=1, rung_factor=3),
}


def get_profile(name: str) -> RunProfile:
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile '{name}'. Choose one of: {', '.join(PROFILES)}.")
    return PROFILES[name]
