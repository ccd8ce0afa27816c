"""The conditional space, the seeded starts and the multi-fidelity bookkeeping, on the real
searcher (Ray's OptunaSearch subclass) and a real in-memory Optuna study; no Ray cluster needed."""

import optuna
import pytest

from core.errors import ConfigError
from core.run_folder import RUN_FOLDER_ENV, RunFolder
from search_spaces import PRESETS, load_preset
from search_spaces.distributions import Branches, choice, loguniform
from search_spaces.optuna_space import trial_settings
from tests.conftest import run_study
from trainables.config import ADAPTER_SETTINGS, FineTuneConfig
from trainables.training import SCORE
from tune.searcher import RAY_TRIAL_ID, EpochAwareOptunaSearch, journal_storage, settle_study
from tune.space import check_space

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


def test_the_study_lives_in_the_run_folder_and_is_settled_from_the_records(tmp_path):
    folder = RunFolder(str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    searcher = EpochAwareOptunaSearch(load_preset("minilm").SPACE, seeds=[], seed=0, storage=journal_storage(folder))
    draw(searcher, 4)
    report(searcher, "t0", [0.7, 0.8], schedule_done=True)
    # t1 and t2 were running when the time budget ended the search (Ray does not tell the
    # searcher); t3 was created but never reached an epoch.
    for trial_id in ("t1", "t2"):
        searcher.on_trial_result(trial_id, {SCORE: 0.6, "epoch": 1, "training_iteration": 1})
    records = [{"trial_id": "t1", "params": {"epochs": 2}, "epochs_run": 1, "val": {"macro_f1": 0.6},
                "history": [{"epoch": 1}]},
               {"trial_id": "t2", "params": {"epochs": 2}, "epochs_run": 2,
                "val": {"macro_f1": 0.75, "confusion_matrix": [[5, 1], [1, 5]]}, "history": [{}, {}]}]
    settle_study(folder, records, "macro_f1")
    study = run_study(tmp_path / "run")  # what optuna-dashboard and optuna.load_study open
    states = {t.user_attrs[RAY_TRIAL_ID]: (t.state, t.value) for t in study.get_trials()}
    assert states == {"t0": (optuna.trial.TrialState.COMPLETE, 0.8), "t1": (optuna.trial.TrialState.PRUNED, 0.6),
                      "t2": (optuna.trial.TrialState.COMPLETE, 0.75), "t3": (optuna.trial.TrialState.FAIL, None)}
    # An extension's searcher opens the same study and does not add those trials twice.
    extension = EpochAwareOptunaSearch(load_preset("minilm").SPACE, seeds=[], seed=1, storage=journal_storage(folder))
    assert extension.add_finished([{**r, "method": "full"} for r in records], "macro_f1") == 2
    assert len(run_study(tmp_path / "run").trials) == 4


def test_a_restored_searcher_writes_to_the_journal_where_the_run_folder_is_now(tmp_path, monkeypatch):
    old, new = tmp_path / "old", tmp_path / "moved"
    old.mkdir()
    searcher = EpochAwareOptunaSearch(load_preset("minilm").SPACE, seeds=[], seed=0,
                                      storage=journal_storage(RunFolder(str(old))))
    draw(searcher, 1)
    searcher.save(str(tmp_path / "searcher.pkl"))
    old.rename(new)
    monkeypatch.setenv(RUN_FOLDER_ENV, str(new))
    restored = EpochAwareOptunaSearch(load_preset("minilm").SPACE, seeds=[], seed=0)
    restored.restore(str(tmp_path / "searcher.pkl"))
    report(restored, "t0", [0.7, 0.9], schedule_done=True)
    assert not old.exists()
    (trial,) = run_study(new).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.9
