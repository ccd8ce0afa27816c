"""The preset's search space checked against the trial config before any trial starts: every key
a trial setting, every edge of every branch a valid config, every seed inside the space. Its
Optuna translation is search_spaces/optuna_space.py.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from core.errors import ConfigError
from search_spaces.optuna_space import boundary_values, optuna_params, subspaces
from trainables.config import FineTuneConfig

# The budget ASHA allocates, never a searched setting (see search_spaces/__init__.py).
FIDELITY = "epochs"


def check_space(space: dict[str, Any], base: dict[str, Any], seeds: list[dict] = ()) -> None:
    """Every key must be a config field, every edge value on every branch must make a valid config,
    and every seed must be a valid config inside the space."""
    known = {f.name for f in fields(FineTuneConfig)}
    keys = {key for fixed, drawn in subspaces(space) for key in (*fixed, *drawn)}
    unknown = sorted(keys - known)
    if unknown:
        raise ConfigError(f"Search space keys that are not trial settings: {', '.join(unknown)}.")
    if FIDELITY in keys:
        raise ConfigError(f"'{FIDELITY}' is the budget ASHA allocates, not a searched setting: set the "
                          "maximum with the run profile, and every trial's schedule spans it.")
    problems = []
    for fixed, drawn in subspaces(space):
        for key, domain in drawn.items():
            for value in boundary_values(domain):
                try:
                    FineTuneConfig.from_dict({**base, **fixed, key: value})
                except ConfigError as error:
                    where = "".join(f"{k}={v} " for k, v in fixed.items())
                    problems.append(f"{where}{key}: {error}")
    for seed in seeds:
        try:
            FineTuneConfig.from_dict({**base, **seed})
            optuna_params(seed, space)
        except ConfigError as error:
            problems.append(f"seed {seed}: {error}")
    if problems:
        raise ConfigError("Search space out of range:\n  " + "\n  ".join(problems))
