"""FLAN-T5-large (google/flan-t5-large, 780M parameters) with a sequence-classification head
(transformers' T5ForSequenceClassification: encoder-decoder, head on the final decoder state)."""

from search_spaces.distributions import choice, loguniform, uniform

MODEL = "google/flan-t5-large"
ARCH = "encoder-decoder"
TRUST_REMOTE_CODE = False
HEAD = ["classification_head"]
POOLING = "encoder-mean"

TARGET_MODULES = {
    "qv": ["q", "v"],  # the original LoRA paper's choice: cheapest
    "qkvo": ["q", "k", "v", "o"],  # the study's choice
    "qkvo_mlp": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
}

SPACE = {
    "method": choice(["qlora", "lora"]),
    "lora_r": choice([8, 16, 32]),
    "lora_alpha": choice([16, 32, 64]),
    "lora_dropout": uniform(0.0, 0.1),
    "target_modules": choice(list(TARGET_MODULES)),
    # T5 tolerates larger adapter steps than BERT-style encoders.
    "learning_rate": loguniform(1e-4, 2e-3),
    "epochs": choice([1, 2, 3]),
}

DEFAULTS = {"batch_size": 8}
