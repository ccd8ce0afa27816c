"""The one place that touches bitsandbytes, imported lazily so nothing else needs it installed."""

from __future__ import annotations

import torch

from core.errors import UserError


def nf4_config(skip_modules: list[str], device: torch.device):
    """4-bit NF4 with double quantization; the head stays in full precision.

    The 4-bit weights are dequantized to the compute dtype for each matmul: bf16 on a GPU (the
    study's setting), float32 on a CPU, where bf16 matmuls without AVX512-BF16 run about 40 times
    slower than float32 ones (a 1024x1536 by 1536x384 matmul: 0.59 s against 0.014 s on this
    project's 2-core EPYC) and would dominate a CPU trial."""
    try:
        import bitsandbytes  # noqa: F401  (transformers needs it at load time)
    except ImportError as error:
        raise UserError(
            "method 'qlora' needs bitsandbytes: pip install 'bitsandbytes>=0.45' "
            "(or choose method 'lora')."
        ) from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
        llm_int8_skip_modules=list(skip_modules),
    )


def keep_training_layout(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit's weight the first time it
    runs in eval mode without grad, and never packs it back: the next training step then fails in
    matmul_4bit ("a view of a leaf Variable that requires grad is being used in an in-place
    operation"). Trials evaluate after every epoch and train again, so the repacking is turned off.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
