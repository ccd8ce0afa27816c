"""Stella-400M (NovaSearch/stella_en_400M_v5): the study's main model. Its architecture lives in
the model repository's own code, so this preset alone sets TRUST_REMOTE_CODE: loading it runs
Python from that repository. Pass --model with a reviewed local snapshot to pin what runs."""

from search_spaces.distributions import adapter_settings, branches, loguniform

MODEL = "NovaSearch/stella_en_400M_v5"
TRUST_REMOTE_CODE = True
HEAD = ["classifier"]
POOLING = "mean"

# Configuration values set when the model is loaded, for each package that is missing
# (trainables/model.py: loading_overrides). Stella's published config.json turns on xformers'
# memory-efficient attention and unpadded batches, and its code asserts xformers is importable
# when they are on ("please install xformers", "unpad only with xformers"): without xformers, plain
# attention over padded batches. Install xformers (on a GPU) and the faster path stays on.
OVERRIDES_WITHOUT = {"xformers": {"use_memory_efficient_attention": False, "unpad_inputs": False}}

TARGET_MODULES = {
    "attention": ["qkv_proj"],  # fused query/key/value projection
    "attention_output": ["qkv_proj", "o_proj"],  # the study's choice
    "attention_mlp": ["qkv_proj", "o_proj", "up_gate_proj", "down_proj"],
}

# Adapters on a 24-layer encoder: below 5e-5 barely moves in 3 epochs, above 1e-3 diverges.
ADAPTER = adapter_settings(TARGET_MODULES, loguniform(5e-5, 1e-3))

SPACE = {
    # 400M parameters: full fine-tuning does not fit an 8 GiB card with AdamW, so adapters only.
    "method": branches({"qlora": ADAPTER, "lora": ADAPTER}),
}

# The study's hand-set configuration, evaluated first: NF4 + LoRA r16, alpha 32, dropout 0.05 on
# qkv_proj + o_proj. Its learning rate is not in the public record; 2e-4 is the QLoRA paper's rate
# for models of this size (Dettmers et al., 2023).
SEEDS = [
    {"method": "qlora", "target_modules": "attention_output", "lora_r": 16, "lora_alpha": 32,
     "lora_dropout": 0.05, "use_rslora": False, "learning_rate": 2e-4},
]

DEFAULTS = {"batch_size": 16}
