"""A fine-tuning trial's configuration (qlora, lora or full): Tune's dict becomes this dataclass
on a trial's first line.

`__post_init__` collects every problem and raises one ConfigError naming field, value and allowed
range, so a bad search space fails before any trial starts (tune.search checks its bounds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.errors import ConfigError
from core.metrics import SELECTION_METRICS
from core.record import ADAPTER_METHODS, FINE_TUNES, Record, identity
from core.reports import scored_points
from core.run_folder import RunFolder
from search_spaces import PRESETS, load_preset

METHODS = FINE_TUNES
# What a trial's record lists as its settings: the adapter's only for adapter methods.
TRAINING_SETTINGS = ("method", "learning_rate", "epochs", "batch_size", "max_length")
ADAPTER_SETTINGS = ("target_modules", "lora_r", "lora_alpha", "lora_dropout", "use_rslora")

# field -> (low, high), both inclusive
RANGES: dict[str, tuple[float, float]] = {
    "lora_r": (1, 256),
    "lora_alpha": (1, 1024),
    "lora_dropout": (0.0, 0.5),
    "learning_rate": (1e-7, 1e-1),
    "epochs": (1, 50),
    "batch_size": (1, 1024),
    "max_length": (8, 8192),
    "warmup_ratio": (0.0, 0.5),
    "weight_decay": (0.0, 1.0),
    "gpu_memory_gb": (0.01, 1024.0),
    "cpu_memory_gb": (0.01, 16384.0),
    "gpu_fraction": (0.01, 1.0),
    "grad_accumulation": (1, 256),
    "cpus_per_worker": (1, 512),
    "evals_per_epoch": (1, 1000),
    "rung_grace": (1, 100_000),
    "rung_factor": (2, 100),
}


@dataclass
class FineTuneConfig:
    # What to train
    preset: str = "minilm"
    model: str = ""  # a hub id, a local folder, or "minilm" (the packaged model); "" = the preset's MODEL
    method: str = "qlora"
    target_modules: str = ""  # a name in the preset's TARGET_MODULES; empty = its first
    trust_remote_code: bool = False
    # The hub commit of `model` that the search resolved when it started: every trial, export and
    # predict load exactly it (None for a local folder or the packaged model)
    model_revision: str | None = None
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r) instead of alpha/r (Kalajdzievski, 2023)
    # Optimisation
    learning_rate: float = 2e-4
    epochs: int = 3
    batch_size: int = 32
    grad_accumulation: int = 1  # micro-batches per optimizer step (the OOM retry doubles it)
    max_length: int = 512
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    gradient_checkpointing: bool = False
    seed: int = 42
    selection_metric: str = "macro_f1"  # the validation metric reported to ASHA and Optuna
    # Fidelity (core/reports.py): validation is scored this many times an epoch; ASHA's rungs sit at
    # report points rung_grace, rung_grace * rung_factor, ... (the run profile sets all three)
    evals_per_epoch: int = 1
    rung_grace: int = 1
    rung_factor: int = 2
    # Resources
    use_gpu: bool = False
    gpu_memory_gb: float = 8.0  # CUDA memory cap of the trial's process (GPU trials)
    cpu_memory_gb: float = 8.0  # the memory budget of a CPU trial (tune.search: its share of the machine's)
    gpu_fraction: float = 1.0  # of one GPU, as Ray schedules it: 1/K packs K trials on a card
    cpus_per_worker: int = 1
    # The run folder (core/run_folder.py) whose prepared data the trial reads and where its
    # record and checkpoints go; set by tune.search
    run_dir: str = ""
    tokens_file: str = ""
    split_hash: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method={self.method!r} (allowed: {', '.join(METHODS)})")
        if self.preset not in PRESETS:
            problems.append(f"preset={self.preset!r} (allowed: {', '.join(PRESETS)})")
        else:
            self.model = self.model or load_preset(self.preset).MODEL
            targets = load_preset(self.preset).TARGET_MODULES
            self.target_modules = self.target_modules or next(iter(targets))
            if self.target_modules not in targets:
                problems.append(
                    f"target_modules={self.target_modules!r} "
                    f"(allowed for {self.preset}: {', '.join(targets)})"
                )
        if self.selection_metric not in SELECTION_METRICS:
            problems.append(f"selection_metric={self.selection_metric!r} (allowed: {', '.join(SELECTION_METRICS)})")
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                problems.append(f"{name}={value!r} (allowed: {low} to {high})")
        if problems:
            raise ConfigError("Invalid trial configuration: " + "; ".join(problems) + ".")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FineTuneConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"Unknown trial settings: {', '.join(unknown)}.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_micro_batch(self, micro: int) -> "FineTuneConfig":
        """The same optimizer step (batch_size x grad_accumulation) computed in micro-batches of
        `micro` reviews, with as many more accumulation steps."""
        return replace(self, batch_size=micro, grad_accumulation=self.grad_accumulation * (self.batch_size // micro))

    def searched_params(self) -> dict[str, Any]:
        """The settings that define this trial in a record and the leaderboard."""
        keys = TRAINING_SETTINGS + (ADAPTER_SETTINGS if self.method in ADAPTER_METHODS else ())
        return {key: getattr(self, key) for key in keys}

    @property
    def last_point(self) -> int:
        """The report point at the end of the schedule (core/reports.py)."""
        return self.evals_per_epoch * self.epochs

    @property
    def scored_points(self) -> set[int]:
        """The report points where the trial also scores test and stores a checkpoint."""
        return scored_points(self.evals_per_epoch, self.epochs, self.rung_grace, self.rung_factor)

    @property
    def data_dir(self) -> str:
        return RunFolder(self.run_dir).data

    @property
    def quantize(self) -> str | None:
        """Quantization is a switch on LoRA: 'nf4' for QLoRA, None otherwise."""
        return "nf4" if self.method == "qlora" else None

    @property
    def target_module_names(self) -> list[str]:
        return list(load_preset(self.preset).TARGET_MODULES[self.target_modules])


def trial_identity(config: FineTuneConfig, trial_id: str, searched: FineTuneConfig | None = None) -> Record:
    """What a trial's record says it is: its settings as the searcher drew them (`searched`), its
    config as trained (a GPU's measured micro-batch, accumulation, checkpointing)."""
    return identity(method=config.method, preset=config.preset, model=config.model, trial_id=trial_id,
                    params=(searched or config).searched_params(), config=config.to_dict(),
                    split_hash=config.split_hash, seed=config.seed)
