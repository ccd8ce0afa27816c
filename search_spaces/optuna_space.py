"""A preset's search space (search_spaces.distributions) in Optuna's terms: the define-by-run
function Ray's OptunaSearch calls for every trial, Optuna's parameter names and distributions for
a trial's settings (the searcher's warm start, the importances), and Tune's nested config folded
back into flat trial settings.

A `Branches` setting (the method) is drawn first; then only the drawn value's settings, under
Optuna names `<value>/<setting>` (`full/learning_rate`, `lora/lora_r`), so each method has its own
ranges and its own history in TPE. Ray unflattens those names into `config["full"]
["learning_rate"]`; `trial_settings` folds them back into the flat settings a trial runs with.
Optuna is imported only where a distribution is built: the trial's processes never need it.
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError
from search_spaces.distributions import Branches, Choice, LogUniform, Uniform


def boundary_values(domain: Any) -> list:
    """The values a domain can produce at its edges (every value, for a choice)."""
    if isinstance(domain, Choice):
        return list(domain.values)
    if isinstance(domain, (Uniform, LogUniform)):
        return [domain.low, domain.high]
    return [domain]


def contains(domain: Any, value: Any) -> bool:
    if isinstance(domain, Choice):
        return value in domain.values
    if isinstance(domain, (Uniform, LogUniform)):
        return domain.low <= value <= domain.high
    return value == domain


def subspaces(space: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every way through the branches: (fixed branch values, the settings drawn on that path)."""
    paths = [({}, {})]
    for key, domain in space.items():
        if isinstance(domain, Branches):
            paths = [({**fixed, key: value}, {**drawn, **sub}) for fixed, drawn in paths
                     for value, sub in domain.spaces.items()]
        else:
            paths = [(fixed, {**drawn, key: domain}) for fixed, drawn in paths]
    return paths


class DefineByRun:
    """Ray's OptunaSearch `space`: called with an Optuna trial, it only suggests values. A class,
    not a closure, so Ray can pickle the searcher with it (resume)."""

    def __init__(self, space: dict[str, Any]):
        self.space = space

    def __call__(self, trial) -> None:
        for key, domain in self.space.items():
            if isinstance(domain, Branches):
                value = trial.suggest_categorical(key, list(domain.spaces))
                for sub_key, sub_domain in domain.spaces[value].items():
                    suggest(trial, f"{value}/{sub_key}", sub_domain)
            else:
                suggest(trial, key, domain)


def suggest(trial, name: str, domain: Any):
    if isinstance(domain, Choice):
        return trial.suggest_categorical(name, list(domain.values))
    if isinstance(domain, (Uniform, LogUniform)):
        return trial.suggest_float(name, domain.low, domain.high, log=isinstance(domain, LogUniform))
    raise ConfigError(f"Search space entry '{name}' is a constant ({domain!r}); put it in the preset's DEFAULTS.")


def optuna_distribution(domain: Any):
    import optuna

    if isinstance(domain, Choice):
        return optuna.distributions.CategoricalDistribution(list(domain.values))
    return optuna.distributions.FloatDistribution(domain.low, domain.high, log=isinstance(domain, LogUniform))


def optuna_params(settings: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """Flat trial settings (a preset's seed, a finished record's params) -> Optuna's parameter names
    for the path those settings take through the branches. Refuses values outside the space."""
    params = {}
    for name, domain in optuna_domains(settings, space).items():
        value = settings[name.split("/")[-1]]
        if not contains(domain, value):
            raise ConfigError(f"{name.split('/')[-1]}={value!r} is outside the search space ({domain}).")
        params[name] = value
    return params


def optuna_domains(settings: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """Optuna name -> domain, for the branch that `settings` takes."""
    domains = {}
    for key, domain in space.items():
        if isinstance(domain, Branches):
            value = settings.get(key)
            if value not in domain.spaces:
                raise ConfigError(f"{key}={value!r} (allowed: {', '.join(domain.spaces)}).")
            domains[key] = Choice(tuple(domain.spaces))
            domains.update({f"{value}/{sub}": sub_domain for sub, sub_domain in domain.spaces[value].items()})
        else:
            domains[key] = domain
    missing = sorted(name for name in domains if name.split("/")[-1] not in settings)
    if missing:
        raise ConfigError(f"Settings miss {', '.join(missing)} of the search space.")
    return domains


def trial_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Tune's config for one trial -> the flat settings FineTuneConfig takes: the drawn branch's
    sub-dict (`config["full"]`) merged up. Only the drawn branch is ever present."""
    flat = {key: value for key, value in config.items() if not isinstance(value, dict)}
    for value in config.values():
        if isinstance(value, dict):
            flat.update(value)
    return flat
