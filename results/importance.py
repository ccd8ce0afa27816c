"""What mattered: Optuna's hyperparameter importances over the fine-tuning trials of a search, from
their records (so a run folder in a bucket, or one from before the Optuna journal, gets them too).

Like is compared with like. ASHA stops most trials at an early rung, so a trial's last score says
as much about how far it got as about its settings. Each trial is valued instead at one rung,
the deepest that at least MIN_TRIALS trials reached (a completed schedule counts as the last
rung): its selection metric on validation at that report point, from the record's history. Each
method with enough trials there gets its own study (every setting of its branch); all fine-tunes
together get one more over the settings every method has (the method itself and its learning
rate, over the union of the methods' ranges). Optuna's fANOVA evaluator (seeded) then splits the
variance of that value among the settings. Below MIN_TRIALS trials the section says so instead of
printing noise.
"""

from __future__ import annotations

import warnings

from core.errors import ConfigError
from core.metrics import selection_score
from core.record import FINE_TUNES
from core.reports import EPOCH, history_point, rung_points
from search_spaces import load_preset
from search_spaces.distributions import Branches, LogUniform, Uniform
from search_spaces.optuna_space import optuna_distribution, optuna_domains, optuna_params

# Optuna is imported where a study is built: the leaderboard's tables import this module without it.

MIN_TRIALS = 6
ALL_METHODS = "all fine-tunes"
IMPORTANCE_SEED = 0


def rungs_of(record: dict) -> list[int]:
    """The trial's rungs and its last report point, from its config (old configs: one an epoch)."""
    config = record.get("config", {})
    per_epoch, epochs = config.get("evals_per_epoch", 1), config.get("epochs", record["params"].get("epochs", 1))
    last = per_epoch * epochs
    return [*rung_points(config.get("rung_grace", 1), config.get("rung_factor", 2), last), last]


def deepest_common_rung(records: list[dict]) -> tuple[int, float, list[tuple[dict, dict]]] | None:
    """(point, epochs, [(record, its history entry there)]) at the deepest rung that MIN_TRIALS of
    the records reached, or None."""
    rungs = {id(record): rungs_of(record) for record in records}
    for point in sorted({point for mine in rungs.values() for point in mine}, reverse=True):
        reached = [(r, h) for r in records if point in rungs[id(r)]
                   for h in r["history"] if history_point(h) == point]
        if len(reached) >= MIN_TRIALS:
            return point, reached[0][1].get(EPOCH, point), reached
    return None


def method_study(reached: list[tuple[dict, dict]], metric: str, pooled: bool):
    """An in-memory study of the trials at one rung; None when a record is outside its preset's
    current space (a search from an older space). `pooled`: only the settings every method has."""
    import optuna


    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    spaces = {name: load_preset(name).SPACE for name in {r["preset"] for r, _ in reached}}
    for record, entry in reached:
        space = spaces[record["preset"]]
        try:
            params = optuna_params(record["params"], space)
            domains = optuna_domains(record["params"], space)
        except ConfigError:
            return None
        distributions = {name: optuna_distribution(d) for name, d in domains.items()}
        if pooled:
            params, distributions = shared_settings(params, distributions, space)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=selection_score(entry["val"], metric)))
    return study


def shared_settings(params: dict, distributions: dict, space: dict) -> tuple[dict, dict]:
    """Keep the branch choice and the settings that every branch draws, each over the union of the
    branches' ranges (Optuna's fANOVA needs one distribution per name across trials)."""
    import optuna


    kept_params, kept = {}, {}
    for key, domain in space.items():
        if not isinstance(domain, Branches):
            continue
        kept_params[key], kept[key] = params[key], distributions[key]
        common = set.intersection(*(set(sub) for sub in domain.spaces.values()))
        for setting in sorted(common):
            ranges = [sub[setting] for sub in domain.spaces.values()]
            if not all(isinstance(r, (Uniform, LogUniform)) for r in ranges):
                continue
            name = f"{params[key]}/{setting}"
            kept_params[setting] = params[name]
            kept[setting] = optuna.distributions.FloatDistribution(
                min(r.low for r in ranges), max(r.high for r in ranges), log=all(isinstance(r, LogUniform) for r in ranges))
    return kept_params, kept


def importances(records: list[dict], metric: str) -> dict[str, dict]:
    """group (a method, or ALL_METHODS) -> {"trials": n, "point": p, "epochs": e, "importances":
    {setting: share}} (most important first), or {"trials": n, "note": why there are none}."""
    import optuna

    tuned = sorted((r for r in records if r["method"] in FINE_TUNES and "val" in r and r.get("history")),
                   key=lambda r: str(r.get("trial_id")))  # the same trials in the same order, the same answer
    groups = {method: [r for r in tuned if r["method"] == method] for method in FINE_TUNES}
    groups = {name: mine for name, mine in groups.items() if mine}
    if len(groups) > 1:
        groups[ALL_METHODS] = tuned
    out = {}
    for name, mine in groups.items():
        found = deepest_common_rung(mine)
        if found is None:
            out[name] = {"trials": len(mine), "note": f"{len(mine)} trial(s); importances need at least {MIN_TRIALS} "
                                                      "at one rung (--extend K adds trials)"}
            continue
        point, epochs, reached = found
        where = {"trials": len(reached), "point": point, "epochs": epochs}
        study = method_study(reached, metric, pooled=name == ALL_METHODS)
        if study is None:
            out[name] = {**where, "note": "trials from a search space this preset no longer has"}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            shares = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED))
        if not shares:
            out[name] = {**where, "note": "no setting varied between its trials"}
            continue
        out[name] = {**where, "importances": {key.split("/")[-1]: float(share) for key, share in shares.items()}}
    return out


def importance_markdown(found: dict[str, dict], metric: str) -> str:
    lines = [f"Share of the variance of validation {metric} that each setting explains (Optuna's fANOVA "
             "importance evaluator). Each trial is valued at one rung, the deepest that at least "
             f"{MIN_TRIALS} trials reached, so trials are compared at the same point of the same schedule."]
    for name, result in found.items():
        if "note" in result:
            lines.append(f"\n- **{name}**: {result['note']}.")
            continue
        lines.append(f"\n**{name}**: {result['trials']} trials at report point {result['point']} "
                     f"({result['epochs']:g} epochs)\n\n| setting | importance |\n|---|---:|")
        lines += [f"| {key} | {share:.3f} |" for key, share in result["importances"].items()]
    return "\n".join(lines)
