"""The preset's search space: checked against the trial config before any trial starts, and
turned into Ray Tune distributions for the Tuner."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from search_spaces.distributions import Choice, LogUniform, Uniform
from trainables.config import QLoRAConfig
from trainables.errors import ConfigError


def boundary_values(domain: Any) -> list:
    """The values a domain can produce at its edges (every value, for a choice)."""
    if isinstance(domain, Choice):
        return list(domain.values)
    if isinstance(domain, (Uniform, LogUniform)):
        return [domain.low, domain.high]
    return [domain]


def to_tune(space: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    def convert(domain):
        if isinstance(domain, Choice):
            return tune.choice(list(domain.values))
        if isinstance(domain, Uniform):
            return tune.uniform(domain.low, domain.high)
        if isinstance(domain, LogUniform):
            return tune.loguniform(domain.low, domain.high)
        return domain

    return {key: convert(domain) for key, domain in space.items()}


def check_space(space: dict[str, Any], base: dict[str, Any]) -> None:
    """Every key must be a config field and every edge value must make a valid config."""
    known = {f.name for f in fields(QLoRAConfig)}
    unknown = sorted(set(space) - known)
    if unknown:
        raise ConfigError(f"Search space keys that are not trial settings: {', '.join(unknown)}.")
    problems = []
    for key, domain in space.items():
        for value in boundary_values(domain):
            try:
                QLoRAConfig.from_dict({**base, key: value})
            except ConfigError as error:
                problems.append(f"{key}: {error}")
    if problems:
        raise ConfigError("Search space out of range:\n  " + "\n  ".join(problems))
