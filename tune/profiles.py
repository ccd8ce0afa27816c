"""Run profiles: how much data and how many trials a search spends.

smoke  seconds; for tests and CI. A few dozen reviews, 3 trials, short sequences.
cpu    the default without a GPU: a real search on a stratified subsample, sized to finish in
       about 15 minutes on a 2-core CPU (measured in README.md).
full   the study's protocol: every review, every split in full.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.errors import ConfigError


@dataclass(frozen=True)
class RunProfile:
    name: str
    num_samples: int
    rows: dict  # split name -> rows kept (stratified), None = all
    max_length_cap: int | None  # shorter sequences for quick profiles; None = chosen from data

    def describe(self) -> str:
        if all(v is None for v in self.rows.values()):
            return f"profile '{self.name}': all rows, {self.num_samples} trials"
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        return (f"profile '{self.name}': stratified subsample ({rows} rows), "
                f"{self.num_samples} trials; use --profile full for every review")


PROFILES = {
    "smoke": RunProfile("smoke", 3, {"train": 96, "val": 48, "test": 48}, 64),
    "cpu": RunProfile("cpu", 8, {"train": 800, "val": 300, "test": 600}, 256),
    "full": RunProfile("full", 20, {"train": None, "val": None, "test": None}, None),
}


def get_profile(name: str) -> RunProfile:
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile '{name}'. Choose one of: {', '.join(PROFILES)}.")
    return PROFILES[name]
