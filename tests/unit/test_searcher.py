"""The conditional space, the seeded starts and the multi-fidelity bookkeeping, on the real
searcher (Ray's OptunaSearch subclass) and a real in-memory Optuna study; no Ray cluster needed."""

import optuna
import pytest

from core.errors import ConfigError
from search_spaces import PRESETS, load_preset
from search_spaces.distributions import Branches, choice, loguniform
from trainables.config import ADAPTER_SETTINGS, FineTuneConfig
from trainables.training import SCORE
from tune.searcher import EpochAwareOptunaSearch
from tune.space import check_space, trial_settings

LORA_KEYS = set(ADAPTER_SETTINGS)


def draw(searcher, n):
    return {f"t{i}": trial_settings(searcher.suggest(f"t{i}")) for i in range(n)}


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_method_draws_only_its_own_settings_from_its_own_ranges(name):
    preset = load_preset(name)
    branches = preset.SPACE["method"]
    assert isinstance(branches, Branches)
    searcher = EpochAwareOptunaSearch(preset.SPACE, seeds=[], seed=0)
    drawn = draw(searcher, 40)
    assert {s["method"] for s in drawn.values()} == set(branches.spaces)
    for settings in drawn.values():
        space = branches.spaces[settings["method"]]
        assert set(settings) == {"method", *space}  # no LoRA keys for full, every adapter key otherwise
        assert (LORA_KEYS <= set(settings)) == (settings["method"] != "full")
        rate = space["learning_rate"]
        assert rate.low <= settings["learning_rate"] <= rate.high
        FineTuneConfig.from_dict({"preset": name, **settings})


def test_minilm_full_fine_tuning_has_its_own_learning_rate_range():
    spaces = load_preset("minilm").SPACE["method"].spaces
    full, lora = spaces["full"]["learning_rate"], spaces["lora"]["learning_rate"]
    assert full.high < lora.low  # full fine-tuning never draws an adapter's rate, nor the reverse


@pytest.mark.parametrize("name", list(PRESETS))
def test_seeded_configurations_run_first_then_the_searcher_draws(name):
    preset = load_preset(name)
    assert preset.SEEDS
    searcher = EpochAwareOptunaSearch(preset.SPACE, seeds=preset.SEEDS, seed=0)
    drawn = list(draw(searcher, len(preset.SEEDS) + 3).values())
    assert drawn[:len(preset.SEEDS)] == preset.SEEDS
    assert all(settings not in preset.SEEDS for settings in drawn[len(preset.SEEDS):])


def report(searcher, trial_id, scores, schedule_done):
    """As Ray does: every result but the last through on_trial_result; the one ASHA stops the
    trial at (at a rung, or at its last) only through on_trial_complete."""
    for epoch, score in enumerate(scores, 1):
        result = {SCORE: score, "epoch": epoch, "training_iteration": epoch + 5,
                  "schedule_done": schedule_done and epoch == len(scores)}
        if epoch < len(scores):
            searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result)


def test_a_trial_stopped_before_its_schedule_ends_reaches_optuna_as_pruned():
    searcher = EpochAwareOptunaSearch(load_preset("minilm").SPACE, seeds=[], seed=0)
    draw(searcher, 2)
    report(searcher, "t0", [0.61], schedule_done=False)  # ASHA stopped it at rung 1 of 2
    report(searcher, "t1", [0.70, 0.85], schedule_done=True)
    stopped, finished = searcher._ot_study.get_trials(deepcopy=False)
    assert stopped.state == optuna.trial.TrialState.PRUNED  # Optuna keeps its last value (0.61) as such
    assert stopped.intermediate_values == {1: 0.61}  # at the trial's epoch, not Ray's iteration
    assert finished.state == optuna.trial.TrialState.COMPLETE and finished.value == 0.85
    assert finished.intermediate_values == {1: 0.70, 2: 0.85}


def test_finished_trials_warm_start_an_extension_with_their_real_state():
    space = load_preset("minilm").SPACE
    records = [
        {"method": "full", "params": {"method": "full", "learning_rate": 5e-5, "epochs": 2}, "epochs_run": 2,
         "val": {"macro_f1": 0.9, "confusion_matrix": [[5, 1], [1, 5]]},
         "history": [{"epoch": 1, "val": {"macro_f1": 0.8}}, {"epoch": 2, "val": {"macro_f1": 0.9}}]},
        {"method": "lora", "params": {**load_preset("minilm").SEEDS[1], "epochs": 2}, "epochs_run": 1,
         "val": {"macro_f1": 0.5}, "history": [{"epoch": 1, "val": {"macro_f1": 0.5}}]},
        {"method": "full", "params": {"method": "full", "learning_rate": 5e-5, "epochs": 2},
         "status": "failed", "error": "out of memory"},  # failed before an epoch: nothing to learn from
    ]
    searcher = EpochAwareOptunaSearch(space, seeds=[], seed=0)
    assert searcher.add_finished(records, "macro_f1") == 2
    done, stopped = searcher._ot_study.get_trials(deepcopy=False)
    assert done.state == optuna.trial.TrialState.COMPLETE and done.value == 0.9
    assert done.params == {"method": "full", "full/learning_rate": 5e-5}
    assert stopped.state == optuna.trial.TrialState.PRUNED and stopped.intermediate_values == {1: 0.5}


def test_epochs_is_the_fidelity_never_a_searched_setting():
    space = {"method": Branches({"full": {"learning_rate": loguniform(1e-5, 1e-4), "epochs": choice([1, 3])}})}
    with pytest.raises(ConfigError, match="'epochs' is the budget ASHA allocates, not a searched setting"):
        check_space(space, {"preset": "minilm"})


def test_a_seed_outside_the_space_is_refused_before_trials():
    space = load_preset("minilm").SPACE
    with pytest.raises(ConfigError, match=r"seed .*learning_rate=0.01 is outside the search space"):
        check_space(space, {"preset": "minilm"}, [{"method": "full", "learning_rate": 1e-2}])
