"""The memory estimate (trainables/memory.py) of the qwen preset's published adapter on
Qwen2.5-0.5B's shape, without its weights: the shape is Qwen2.5-0.5B's config.json values (hidden
896, 24 layers, 14 query and 2 key/value heads, MLP 4864, vocabulary 151,936, tied embeddings),
built on the meta device. An estimate until measured on a card.

    python bench/qwen_memory_estimate.py

Writes bench/results/qwen-memory-estimate.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import Qwen2Config  # noqa: E402

from trainables.config import FineTuneConfig  # noqa: E402
from trainables.memory import estimate_memory, fit_budget, model_shape  # noqa: E402

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        Qwen2Config(**QWEN25_05B).save_pretrained(folder)
        for method in ("qlora", "lora"):
            for length in (256, 512):
                config = FineTuneConfig(preset="qwen", model=folder, method=method, target_modules="attention_mlp",
                                        lora_r=64, lora_alpha=128, use_rslora=True, max_length=length,
                                        batch_size=16, use_gpu=True, gpu_memory_gb=8.0)
                shape = model_shape(config)
                estimate = estimate_memory(config, shape)
                fitted, _ = fit_budget(config)
                rows.append(f"| {method} | {length} | {estimate.weights_gb:.2f} | {estimate.optimizer_gb:.2f} | "
                            f"{estimate.activations_gb:.2f} | {estimate.total_gb:.2f} | {fitted.batch_size} x "
                            f"{fitted.grad_accumulation} |")
    text = (f"# qwen preset: memory estimate on Qwen2.5-0.5B's shape\n\n`python bench/qwen_memory_estimate.py` "
            f"(an estimate, not a measurement): {shape['total']:,} parameters, of them {shape['linear']:,} in "
            f"linear layers; the rank-64 adapter on every linear layer: {shape['lora']:,}. 16 reviews a step, the "
            "8 GiB cap (GiB; total includes 0.5 overhead; the last column is what fit_budget trains with, "
            "micro-batch x accumulation).\n\n| method | tokens | weights | optimizer | activations | total | "
            "fits 8 GiB as |\n|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n")
    out = ROOT / "bench" / "results" / "qwen-memory-estimate.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
