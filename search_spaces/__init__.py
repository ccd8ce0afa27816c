"""Search-space presets: one module per preset, the space written as data.

Each preset module defines:
    MODEL              hub id or local folder of the backbone ("minilm" resolves to the packaged copy)
    TRUST_REMOTE_CODE  True only where the model needs code from its repository (Stella)
    HEAD               the classification head's module names (kept out of quantization, trained)
    POOLING            how the frozen backbone is pooled into one embedding (baselines)
    TARGET_MODULES     named target-module presets: name -> module-name suffixes for LoRA
    SPACE              distributions (search_spaces.distributions); every key is a FineTuneConfig field;
                       `method` is a Branches: each method draws only its own settings (the adapter
                       methods' LoRA settings: distributions.adapter_settings)
    SEEDS              known-good trial settings, evaluated before the searcher draws
    DEFAULTS           fixed trial settings for this preset (batch size, ...)

`epochs` is not searched: it is the budget ASHA allocates (the run profile sets the maximum, and
every trial's learning-rate schedule spans it), so rungs compare trials at the same point.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from core.errors import ConfigError

PRESETS = {"minilm": "minilm", "stella": "stella", "flan-t5": "flan_t5", "qwen": "qwen"}


def load_preset(name: str) -> ModuleType:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset '{name}'. Choose one of: {', '.join(PRESETS)}.")
    return importlib.import_module(f"search_spaces.{PRESETS[name]}")
