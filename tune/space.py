"""Check a preset's search space against the trial config before any trial starts."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer

from trainables.config import QLoRAConfig
from trainables.errors import ConfigError


def boundary_values(domain: Any) -> list:
    """The values a domain can produce at its edges (every value, for a categorical)."""
    if isinstance(domain, Categorical):
        return list(domain.categories)
    if isinstance(domain, Integer):
        return [domain.lower, domain.upper - 1]  # Tune's integer upper bound is exclusive
    if isinstance(domain, Float):
        return [domain.lower, domain.upper]
    if isinstance(domain, Domain):
        raise ConfigError(f"Unsupported search domain {type(domain).__name__}.")
    return [domain]


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
