"""FLAN-T5-large (google/flan-t5-large, 780M parameters) with a sequence-classification head
(transformers' T5ForSequenceClassification: encoder-decoder, head on the final decoder state)."""

from search_spaces.distributions import adapter_settings, branches, loguniform

MODEL = "google/flan-t5-large"
TRUST_REMOTE_CODE = False
HEAD = ["classification_head"]
POOLING = "encoder-mean"

TARGET_MODULES = {
    "qv": ["q", "v"],  # the original LoRA paper's choice: cheapest
    "qkvo": ["q", "k", "v", "o"],  # the study's choice
    "qkvo_mlp": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
}

# T5 tolerates larger adapter steps than BERT-style encoders.
ADAPTER = adapter_settings(TARGET_MODULES, loguniform(1e-4, 2e-3))

SPACE = {
    # 780M parameters: adapters only, as in the study.
    "method": branches({"qlora": ADAPTER, "lora": ADAPTER}),
}

# The study's adapter (q, k, v, o; r16, alpha 32, dropout 0.05), evaluated first. Its learning
# rate is not in the public record; 3e-4 is inside T5's usual adapter range.
SEEDS = [
    {"method": "qlora", "target_modules": "qkvo", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
     "use_rslora": False, "learning_rate": 3e-4},
]

DEFAULTS = {"batch_size": 8}
