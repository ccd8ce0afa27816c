from dataclasses import fields

import pytest

from core.errors import ConfigError
from search_spaces import PRESETS, load_preset
from search_spaces.distributions import choice, uniform
from trainables.config import FineTuneConfig
from tune.space import check_space


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_space_key_is_a_config_field_and_every_edge_is_valid(name):
    preset = load_preset(name)
    assert set(preset.SPACE) <= {f.name for f in fields(FineTuneConfig)}
    for space in preset.SPACE["method"].spaces.values():
        assert set(space) <= {f.name for f in fields(FineTuneConfig)}
    check_space(preset.SPACE, {"preset": name, **preset.DEFAULTS}, preset.SEEDS)


def test_only_stella_runs_remote_code():
    assert {name: load_preset(name).TRUST_REMOTE_CODE for name in PRESETS} == {
        "minilm": False, "stella": True, "flan-t5": False, "qwen": False}


def test_config_names_every_bad_field_with_its_range():
    with pytest.raises(ConfigError) as error:
        FineTuneConfig(lora_r=0, learning_rate=1.0, method="adapter", target_modules="everything")
    assert str(error.value) == (
        "Invalid trial configuration: method='adapter' (allowed: qlora, lora, full); "
        "target_modules='everything' (allowed for minilm: attention, attention_output, attention_mlp); "
        "lora_r=0 (allowed: 1 to 256); learning_rate=1.0 (allowed: 1e-07 to 0.1).")


def test_unknown_settings_are_refused():
    with pytest.raises(ConfigError, match="Unknown trial settings: lora_rank."):
        FineTuneConfig.from_dict({"lora_rank": 8})


def test_quantization_is_a_switch_on_the_method():
    assert FineTuneConfig(method="qlora").quantize == "nf4"
    assert FineTuneConfig(method="lora").quantize is None


def test_space_out_of_range_is_refused_before_trials():
    space = {"lora_r": choice([8, 512]), "lora_dropout": uniform(0.0, 0.9)}
    with pytest.raises(ConfigError) as error:
        check_space(space, {"preset": "minilm"})
    assert str(error.value) == (
        "Search space out of range:\n"
        "  lora_r: Invalid trial configuration: lora_r=512 (allowed: 1 to 256).\n"
        "  lora_dropout: Invalid trial configuration: lora_dropout=0.9 (allowed: 0.0 to 0.5).")


def test_space_key_that_is_not_a_setting_is_refused():
    with pytest.raises(ConfigError, match="Search space keys that are not trial settings: rank."):
        check_space({"rank": choice([8])}, {"preset": "minilm"})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown preset 'bert'. Choose one of: minilm, stella, flan-t5, qwen."):
        load_preset("bert")
