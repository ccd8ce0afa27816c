import importlib.util

import bitsandbytes as bnb
import pytest
import torch
from peft.tuners.lora import LoraLayer

from core.errors import ConfigError
from trainables.config import FineTuneConfig
from trainables.model import build_classifier, check_target_modules

CPU = torch.device("cpu")


def test_missing_target_modules_are_named_with_what_exists(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    with pytest.raises(ConfigError) as error:
        check_target_modules(model, ["query", "qkv_proj", "o_proj"])
    message = str(error.value)
    assert message.startswith("Target modules not in the model: qkv_proj, o_proj. Linear layers it has: ")
    for name in ("attention.self.query", "attention.output.dense", "intermediate.dense", "classifier"):
        assert name in message


def test_nf4_builds_4bit_layers_with_lora_on_top_and_a_full_precision_head(tiny_bert):
    model = build_classifier(FineTuneConfig(model=tiny_bert, method="qlora", target_modules="attention"), CPU)
    lora_layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert len(lora_layers) == 2 * 3  # query, key, value in 2 layers
    assert all(isinstance(layer.base_layer, bnb.nn.Linear4bit) for layer in lora_layers)
    assert model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer.weight.quant_state.quant_type == "nf4"
    head = model.base_model.model.classifier.modules_to_save["default"]
    assert isinstance(head, torch.nn.Linear) and not isinstance(head, bnb.nn.Linear4bit)
    assert all(p.requires_grad for p in head.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)


def test_lora_without_quantization_has_no_4bit_layers(tiny_bert):
    model = build_classifier(FineTuneConfig(model=tiny_bert, method="lora"), CPU)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert any(isinstance(m, LoraLayer) for m in model.modules())


def test_full_fine_tune_trains_every_weight(tiny_bert):
    model = build_classifier(FineTuneConfig(model=tiny_bert, method="full"), CPU)
    assert all(p.requires_grad for p in model.parameters())


def test_remote_code_model_with_stella_names_takes_the_stella_presets(tiny_stella):
    config = FineTuneConfig(preset="stella", model=tiny_stella, trust_remote_code=True,
                            method="qlora", target_modules="attention_mlp")
    model = build_classifier(config, CPU)
    adapted = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == {"qkv_proj", "o_proj", "up_gate_proj", "down_proj"}
    assert type(model.base_model.model).__name__ == "TinyStellaForSequenceClassification"


def test_remote_code_is_refused_without_trust(tiny_stella):
    with pytest.raises(Exception, match="trust_remote_code"):
        build_classifier(FineTuneConfig(preset="stella", model=tiny_stella, trust_remote_code=False), CPU)


def test_the_gpu_probe_batch_runs_through_a_t5_classifier(tiny_t5):
    """The batch probe's rows end in the end-of-sequence token: T5's classification head reads that
    position and refuses rows without it, so a probe of plain repeated tokens crashed flan-t5 trials."""
    from transformers import AutoModelForSequenceClassification

    from trainables.batch_probe import probe_batch

    model = AutoModelForSequenceClassification.from_pretrained(tiny_t5, num_labels=2)
    batch = probe_batch(model.config, 3, 16, torch.device("cpu"))
    assert (batch["input_ids"][:, -1] == model.config.eos_token_id).all()
    assert (batch["input_ids"][:, :-1] != model.config.eos_token_id).all()
    assert model(**batch).logits.shape == (3, 2)
    without_eos = batch["input_ids"].clone()
    without_eos[:, -1] = without_eos[0, 0]
    with pytest.raises(ValueError, match="eos"):
        model(input_ids=without_eos, attention_mask=batch["attention_mask"])


@pytest.mark.skipif(importlib.util.find_spec("xformers") is not None, reason="xformers installed: no override")
def test_the_stella_stand_in_loads_only_with_the_presets_overrides(tiny_stella):
    """The stand-in keeps Stella's published flags and its assertions: loaded as published, without
    xformers, it fails as the real model does; through the preset's overrides it loads."""
    from transformers import AutoModelForSequenceClassification

    from trainables.memory import fit_budget
    from trainables.model import describe_overrides, loading_overrides

    with pytest.raises(AssertionError, match="please install xformers"):
        AutoModelForSequenceClassification.from_pretrained(tiny_stella, num_labels=2, trust_remote_code=True)
    assert loading_overrides("stella") == {"use_memory_efficient_attention": False, "unpad_inputs": False}
    assert loading_overrides("minilm") == {}
    assert describe_overrides("stella").startswith("xformers not installed: the model loads with "
                                                   "use_memory_efficient_attention=False, unpad_inputs=False")
    config = FineTuneConfig(preset="stella", model=tiny_stella, trust_remote_code=True, method="qlora",
                            target_modules="attention_mlp")
    fit_budget(config)  # the memory estimate builds the model from its config too
    model = build_classifier(config, CPU)
    adapted = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == {"qkv_proj", "o_proj", "up_gate_proj", "down_proj"}
    assert model.base_model.model.config.use_memory_efficient_attention is False


@pytest.mark.parametrize("warmup, total", [(0, 10), (3, 10), (6, 7), (5, 5)])
def test_the_learning_rate_schedule_is_transformers_linear_warmup_step_for_step(warmup, total):
    from transformers import get_linear_schedule_with_warmup

    from trainables.training import linear_schedule_with_warmup

    def rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = make(optimizer, warmup, total)
        seen = []
        for _ in range(total + 2):
            seen.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return seen

    assert rates(linear_schedule_with_warmup) == rates(get_linear_schedule_with_warmup)
