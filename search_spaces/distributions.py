"""The search space as plain data: presets describe distributions here, tune.space turns them into
an Optuna define-by-run function. Presets (and the trial config that reads them) import no Ray, so a trial's training
loop runs anywhere torch does: in a Ray Train worker, a benchmark, or a GPU check."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    values: tuple


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float


def choice(values) -> Choice:
    return Choice(tuple(values))


def uniform(low: float, high: float) -> Uniform:
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    return LogUniform(low, high)


@dataclass(frozen=True)
class Branches:
    """A categorical setting whose every value opens a sub-space of its own (a conditional space):
    the searcher draws the value, then only that value's settings, so a `full` trial never draws
    a LoRA rank and each method keeps its own learning-rate range."""
    spaces: dict  # value -> {setting: distribution}


def branches(spaces: dict) -> Branches:
    return Branches(dict(spaces))
