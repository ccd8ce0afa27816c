"""The memory plan: from the model's shape alone, fit a trial into its budget or refuse it."""

from dataclasses import replace

import pytest

from trainables.config import FineTuneConfig
from trainables.memory import MemoryBudgetError, estimate_memory, fit_budget, model_shape

# MiniLM (packaged, built on the meta device) at a long max length: activations dominate. A GPU
# trial: its budget is --gpu-memory-gb (a CPU trial's, --cpu-memory-gb: the last test).
TRIAL = FineTuneConfig(model="minilm", method="qlora", batch_size=32, max_length=512, use_gpu=True)


def budget_between(low, high) -> float:
    return (low.total_gb + high.total_gb) / 2


@pytest.fixture(scope="module")
def shape():
    return model_shape(TRIAL)


def test_a_trial_that_fits_keeps_its_settings():
    settings, estimate = fit_budget(replace(TRIAL, gpu_memory_gb=64))
    assert settings == replace(TRIAL, gpu_memory_gb=64)
    assert estimate.total_gb < 64


def test_over_budget_splits_the_batch_into_micro_batches_before_checkpointing(shape):
    whole, half = estimate_memory(TRIAL, shape), estimate_memory(replace(TRIAL, batch_size=16), shape)
    trial = replace(TRIAL, gpu_memory_gb=budget_between(half, whole))
    settings, estimate = fit_budget(trial)
    assert (settings.batch_size, settings.grad_accumulation) == (16, 2)  # the same optimizer step
    assert not settings.gradient_checkpointing
    assert estimate.total_gb <= trial.gpu_memory_gb


def test_checkpointing_only_when_one_review_does_not_fit_without_it(shape):
    one = estimate_memory(replace(TRIAL, batch_size=1), shape)
    checkpointed = estimate_memory(replace(TRIAL, batch_size=1, gradient_checkpointing=True), shape)
    assert checkpointed.total_gb < one.total_gb
    trial = replace(TRIAL, gpu_memory_gb=budget_between(checkpointed, one))
    settings, _ = fit_budget(trial)
    assert settings.gradient_checkpointing
    assert settings.batch_size * settings.grad_accumulation == 32


def test_a_config_that_cannot_fit_is_refused_with_what_to_change():
    with pytest.raises(MemoryBudgetError, match=r"over its 0.1 GiB budget even one review at a time"):
        fit_budget(replace(TRIAL, gpu_memory_gb=0.1))


def test_full_fine_tuning_needs_more_than_qlora(shape):
    full = estimate_memory(replace(TRIAL, method="full"), model_shape(replace(TRIAL, method="full")))
    qlora = estimate_memory(TRIAL, shape)
    assert full.weights_gb > qlora.weights_gb  # MiniLM: half its weights are embeddings, not 4-bit
    assert full.optimizer_gb > 100 * qlora.optimizer_gb


def test_a_cpu_trial_has_its_own_budget():
    cpu = replace(TRIAL, use_gpu=False, gpu_memory_gb=0.1, cpu_memory_gb=64)
    assert fit_budget(cpu)[0] == cpu  # the GPU cap does not bind a CPU trial
    with pytest.raises(MemoryBudgetError, match=r"over its 0.1 GiB budget .* raise --cpu-memory-gb"):
        fit_budget(replace(cpu, cpu_memory_gb=0.1))



def test_the_activation_term_follows_the_models_attention_and_mlp(shape, tmp_path):
    from transformers import Qwen2Config

    from trainables.memory import activation_factor

    assert not shape["gated"] and activation_factor(shape) == pytest.approx(34)  # BERT: Korthikanti's 34
    # Qwen2.5-0.5B's shape: 2 key/value heads of 14 keep less, its gated 4,864-wide MLP keeps more
    Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True).save_pretrained(tmp_path)
    qwen = model_shape(FineTuneConfig(preset="qwen", model=str(tmp_path), method="qlora",
                                      target_modules="attention_mlp", lora_r=64))
    assert qwen["gated"] and qwen["kv_heads"] == 2 and qwen["total"] == 494_034_560  # tied embeddings once
    assert activation_factor(qwen) == pytest.approx(7 + 4 * 2 / 14 + 3 + 8 * 4864 / 896 + 4)
    assert activation_factor({**qwen, "kv_heads": 14}) > activation_factor(qwen)
