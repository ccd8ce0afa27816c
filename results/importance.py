"""What mattered: Optuna's hyperparameter importances over the finished fine-tuning trials of each
method, from their records (so a run folder in a bucket, or one from before the Optuna journal,
gets them too).

Each method's trials go into an in-memory Optuna study with the preset's own distributions
(tune/space.py), valued by the run's selection metric on validation at the last epoch each trial
ran. A trial that ASHA or the time budget stopped early is valued where it stopped, so the
importance of a setting includes how far its trials got. Optuna's fANOVA evaluator (seeded) then
splits the variance of that value among the settings. Below MIN_TRIALS trials of a method the
section says so instead of printing noise.
"""

from __future__ import annotations

import warnings

from core.errors import ConfigError
from core.metrics import selection_score

MIN_TRIALS = 8
FINE_TUNES = ("qlora", "lora", "full")
IMPORTANCE_SEED = 0


def method_study(records: list[dict], metric: str):
    """An in-memory study of one method's scored trials; None when a record is outside its
    preset's current space (a search from an older space)."""
    import optuna

    from search_spaces import load_preset
    from tune.space import optuna_distribution, optuna_domains, optuna_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    spaces = {name: load_preset(name).SPACE for name in {r["preset"] for r in records}}
    for record in records:
        space = spaces[record["preset"]]
        try:
            params = optuna_params(record["params"], space)
            domains = optuna_domains(record["params"], space)
        except ConfigError:
            return None
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={name: optuna_distribution(d) for name, d in domains.items()},
            value=selection_score(record["val"], metric)))
    return study


def importances(records: list[dict], metric: str) -> dict[str, dict]:
    """method -> {"trials": n, "importances": {setting: share}} (sorted, most important first), or
    {"trials": n, "note": why there are none}."""
    import optuna

    out = {}
    for method in FINE_TUNES:
        mine = sorted((r for r in records if r["method"] == method and "val" in r and r.get("history")),
                      key=lambda r: str(r.get("trial_id")))  # the same trials in the same order, the same answer
        if not mine:
            continue
        if len(mine) < MIN_TRIALS:
            out[method] = {"trials": len(mine), "note": f"{len(mine)} finished trial(s); importances need at "
                                                        f"least {MIN_TRIALS} (--extend K adds trials)"}
            continue
        study = method_study(mine, metric)
        if study is None:
            out[method] = {"trials": len(mine), "note": "trials from a search space this preset no longer has"}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED))
        if not found:
            out[method] = {"trials": len(mine), "note": "no setting varied between its trials"}
            continue
        out[method] = {"trials": len(mine),
                       "importances": {name.split("/")[-1]: float(share) for name, share in found.items()}}
    return out


def importance_markdown(found: dict[str, dict], metric: str) -> str:
    lines = [f"Share of the variance of validation {metric} (at the last epoch each trial ran) that each "
             "setting explains, per method (Optuna's fANOVA importance evaluator over the finished trials)."]
    for method, result in found.items():
        if "note" in result:
            lines.append(f"\n- **{method}**: {result['note']}.")
            continue
        lines.append(f"\n**{method}** ({result['trials']} trials)\n\n| setting | importance |\n|---|---:|")
        lines += [f"| {name} | {share:.3f} |" for name, share in result["importances"].items()]
    return "\n".join(lines)
