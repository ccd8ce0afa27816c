"""The search space as plain data: presets describe distributions here, tune.space turns them into
Ray Tune's. Presets (and the trial config that reads them) import no Ray, so a trial's training
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
