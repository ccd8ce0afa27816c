"""On a CUDA GPU: the memory cap a trial puts on its process, and the batch probe that measures
the largest micro-batch under it. Skipped where there is no GPU (bench/gpu_check.sh runs them)."""

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_the_memory_cap_refuses_an_allocation_past_it():
    from trainables.training import cap_cuda_memory

    device = torch.device("cuda", 0)
    cap_cuda_memory(device, 1.0)
    try:
        small = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)  # 0.25 GiB: fits
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(2 * 2**30, dtype=torch.uint8, device=device)  # 2 GiB: past the 1 GiB cap
        del small
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()


def test_the_probe_finds_a_micro_batch_that_fits_a_t5_classifier_under_the_cap(tiny_t5):
    from transformers import AutoModelForSequenceClassification

    from trainables.batch_probe import fits, probe_batch

    device = torch.device("cuda", 0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_t5, num_labels=2).to(device)
    batch = probe_batch(model.config, 4, 32, device)
    assert (batch["input_ids"][:, -1] == model.config.eos_token_id).all()
    assert fits(model, 4, 32, device, 2 * 2**30)  # a tiny model at 4 x 32 tokens fits in 2 GiB
    assert not fits(model, 4, 32, device, 1.0)  # and nothing fits in one byte
