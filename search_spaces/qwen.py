"""Qwen2.5-0.5B (Qwen/Qwen2.5-0.5B, 494M parameters): a decoder language model with a
sequence-classification head (transformers' Qwen2ForSequenceClassification, which scores the last
token that is not padding). The model family most QLoRA users fine-tune; on this task the public
cross-generator study PurplexyFlower/Fake-review trains a rank-64 rsLoRA QLoRA adapter on it (98.5 %
accuracy on the fake-review dataset, three seeds). Any Qwen2-family folder or hub id works with
--model. Decoders need a pad token and the head's pad id; trainables/model.py sets both on every load.
"""

from search_spaces.distributions import adapter_settings, branches, loguniform

MODEL = "Qwen/Qwen2.5-0.5B"
TRUST_REMOTE_CODE = False
HEAD = ["score"]  # kept out of 4-bit quantization, trained and saved with the adapter
POOLING = "mean"  # the embedding baselines: a masked mean of the last hidden states

TARGET_MODULES = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "attention_mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}

# Up to the published rank 64 (every linear layer, attention_mlp): a 0.5B decoder's binary head
# gains from more rank than an encoder's does, and rsLoRA keeps rank 64 learning at alpha / sqrt(r).
# The learning rate: QLoRA's range for models of this size (Dettmers et al., 2023), 1e-4 to 3e-4,
# widened both ways.
ADAPTER = adapter_settings(TARGET_MODULES, loguniform(5e-5, 5e-4), ranks=(16, 32, 64), alphas=(16, 32, 64, 128))

SPACE = {
    # 494M parameters: adapters only (a full fine-tune with AdamW does not fit the 8 GiB cap).
    "method": branches({"qlora": ADAPTER, "lora": ADAPTER}),
}

# The published setting first (rank 64, rsLoRA, every linear layer), as QLoRA and as LoRA; its
# learning rate is QLoRA's for this size.
SEEDS = [
    {"method": "qlora", "target_modules": "attention_mlp", "lora_r": 64, "lora_alpha": 128, "lora_dropout": 0.05,
     "use_rslora": True, "learning_rate": 2e-4},
    {"method": "lora", "target_modules": "attention_mlp", "lora_r": 64, "lora_alpha": 128, "lora_dropout": 0.05,
     "use_rslora": True, "learning_rate": 2e-4},
]

DEFAULTS = {"batch_size": 16}
