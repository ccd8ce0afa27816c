"""Estimate a trial's accelerator memory before it starts, from the model's shape alone.

The model is built on PyTorch's meta device (no weights are read), so the estimate costs about a
second; its parameters count tied embeddings once, as the model holds them. The activation term
follows Korthikanti et al. (2022), per layer s*b*h*(34 + 5*a*s/h) bytes for 16-bit activations,
taken at the run's max length, the worst batch. Their 34 is a BERT/GPT layer's: attention 11
(its K and V 4 of them), two norms 4, a 4h MLP 19. `activation_factor` takes the model's own
shape instead: grouped-query attention keeps K and V for its key/value heads only (Qwen2.5-0.5B:
2 of 14), and a gated MLP (gate and up projections, Llama/Qwen2, gated T5, Stella) of width i keeps
8i/h where a plain one keeps 4i/h; a BERT-shaped model still gets 34.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from core.errors import ConfigError
from trainables.config import FineTuneConfig

# transformers is imported only when a model's shape is read: the trial's driver and Ray Train's
# controller import this module too (tune/trial.py).

OVERHEAD_GB = 0.5  # CUDA context, cuBLAS workspace, allocator fragmentation
GATE_PROJECTIONS = ("gate_proj", "up_gate_proj", "wi_0")  # a gated MLP's (Llama/Qwen2, Stella, gated T5)


class MemoryBudgetError(ConfigError):
    """The trial's estimated memory exceeds --gpu-memory-gb."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gb: float
    optimizer_gb: float
    activations_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.optimizer_gb + self.activations_gb + OVERHEAD_GB


def model_shape(config: FineTuneConfig) -> dict:
    """Parameter counts (linear weights apart) and layer sizes, without loading any weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from trainables.model import loading_overrides, resolve_model_path

    model_config = AutoConfig.from_pretrained(resolve_model_path(config.model), num_labels=2,
                                              trust_remote_code=config.trust_remote_code,
                                              **loading_overrides(config.preset))
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config,
                                                               trust_remote_code=config.trust_remote_code)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    targets = config.target_module_names
    adapted = [m for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and any(n == t or n.endswith("." + t) for t in targets)]
    lora = sum(config.lora_r * (m.in_features + m.out_features) for m in adapted)
    hidden = getattr(model_config, "hidden_size", None) or getattr(model_config, "d_model")
    layers = getattr(model_config, "num_hidden_layers", None) or getattr(model_config, "num_layers")
    heads = getattr(model_config, "num_attention_heads", None) or getattr(model_config, "num_heads")
    if getattr(model_config, "is_encoder_decoder", False):
        layers += getattr(model_config, "num_decoder_layers", layers)
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    intermediate = (getattr(model_config, "intermediate_size", None) or getattr(model_config, "d_ff", None)
                    or 4 * hidden)
    gated = getattr(model_config, "is_gated_act", False) or any(
        name.endswith(GATE_PROJECTIONS) for name, _ in model.named_modules())
    return {"total": total, "linear": linear, "lora": lora, "hidden": hidden, "layers": layers, "heads": heads,
            "kv_heads": kv_heads, "intermediate": intermediate, "gated": gated}


def activation_factor(shape: dict) -> float:
    """Bytes a layer keeps per token and hidden unit, besides its attention scores (Korthikanti et
    al.'s 34, from this model's attention and MLP shape)."""
    h = shape["hidden"]
    attention = 7 + 4 * shape.get("kv_heads", shape["heads"]) / shape["heads"]  # Q, K, V, inputs, mask
    width = shape.get("intermediate", 4 * h) / h
    mlp = 3 + (8 if shape.get("gated") else 4) * width  # its input, mask, and each i-wide tensor kept
    return attention + mlp + 4  # two norms' inputs


def estimate_memory(config: FineTuneConfig, shape: dict | None = None) -> MemoryEstimate:
    shape = shape or model_shape(config)
    gb = 2**30
    if config.quantize == "nf4":  # 4-bit linear weights (+ ~3 % for double-quantized scales)
        weights = shape["linear"] * 0.5 * 1.03 + (shape["total"] - shape["linear"]) * 4
    else:
        weights = shape["total"] * 4
    trainable = shape["total"] if config.method == "full" else shape["lora"]
    optimizer = trainable * 12  # fp32 gradient + two AdamW moments
    s, b, h, a = config.max_length, config.batch_size, shape["hidden"], shape["heads"]
    per_layer = s * b * h * (activation_factor(shape) + 5 * a * s / h)
    if config.gradient_checkpointing:  # keep each layer's input, recompute one layer at a time
        activations = shape["layers"] * s * b * h * 2 + per_layer
    else:
        activations = shape["layers"] * per_layer
    return MemoryEstimate(weights / gb, optimizer / gb, activations / gb)


def fit_budget(config: FineTuneConfig) -> tuple[FineTuneConfig, MemoryEstimate]:
    """The trial's settings that fit --gpu-memory-gb by the estimate, or MemoryBudgetError.

    The optimizer step keeps its batch (batch_size x grad_accumulation); what changes is how it is
    computed. In order of cost: the whole batch at once; micro-batches (half the batch, twice the
    accumulation, down to 1); gradient checkpointing, only when even one review does not fit without
    it. On a GPU the trial then probes the real largest micro-batch (trainables/batch_probe.py).
    """
    shape = model_shape(config)
    first = estimate_memory(config, shape)
    budget, flag = (config.gpu_memory_gb, "--gpu-memory-gb") if config.use_gpu else (config.cpu_memory_gb, "--cpu-memory-gb")
    for checkpointing in sorted({config.gradient_checkpointing, True}):  # False first, unless forced on
        settings = replace(config, gradient_checkpointing=checkpointing)
        while True:
            estimate = estimate_memory(settings, shape)
            if estimate.total_gb <= budget:
                return settings, estimate
            if settings.batch_size == 1:
                break
            settings = settings.with_micro_batch(settings.batch_size // 2)
    raise MemoryBudgetError(
        f"Trial needs about {first.total_gb:.2f} GiB (weights {first.weights_gb:.2f}, optimizer "
        f"{first.optimizer_gb:.2f}, activations {first.activations_gb:.2f} at batch "
        f"{config.batch_size} x {config.max_length} tokens), over its {budget:g} GiB budget "
        "even one review at a time with gradient checkpointing. "
        f"Use method qlora, a smaller model or max length, or raise {flag}.")
