"""The search space as plain data: presets describe distributions here, search_spaces/optuna_space.py turns them into
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


def adapter_settings(target_modules: dict[str, list[str]], learning_rate: LogUniform,
                     ranks: tuple[int, ...] = (8, 16, 32), alphas: tuple[int, ...] = (16, 32, 64)) -> dict:
    """The LoRA settings every preset searches for its adapter methods (qlora, lora), with the
    preset's target-module presets, learning-rate range and, where it needs others, its ranks
    and alphas; in this order, which is the order Optuna draws them in."""
    return {
        # More modules: more capacity and memory; MLP adapters helped MiniLM by 0.4 F1 points.
        "target_modules": choice(list(target_modules)),
        # Rank: 8 is usually enough for a binary head; 32 costs 4x the adapter for small gains. The
        # study's r16/alpha32 is in the middle of both ranges.
        "lora_r": choice(ranks),
        # alpha/r sets the adapter's effective step size.
        "lora_alpha": choice(alphas),
        # Dropout on the adapter input; above 0.1 mostly slows convergence on 20k+ reviews.
        "lora_dropout": uniform(0.0, 0.1),
        # rsLoRA scales by alpha/sqrt(r): higher ranks keep learning instead of being damped.
        "use_rslora": choice([False, True]),
        "learning_rate": learning_rate,
    }
