"""What a decoder needs at every load: a pad token, the head's pad id, and pooling at each
review's last real token whatever the padding. On a tiny Qwen2 built from a config."""

import subprocess
import sys

import torch

from search_spaces import PRESETS
from tests.conftest import ROOT
from trainables.config import FineTuneConfig
from trainables.model import build_classifier, load_tokenizer


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_of_sequence(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"<unk>": 0, "good": 1, "bad": 2, "</s>": 3}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>").save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.pad_token == "</s>" and tokenizer.pad_token_id == 3 and tokenizer.padding_side == "right"


def test_a_decoder_head_reads_each_reviews_last_real_token_in_a_padded_batch(tiny_qwen):
    for method in ("qlora", "lora"):
        config = FineTuneConfig(preset="qwen", model=tiny_qwen, method=method, target_modules="attention_mlp",
                                lora_r=8, lora_alpha=16, max_length=32)
        model = build_classifier(config, torch.device("cpu")).eval()
        tokenizer = load_tokenizer(tiny_qwen)
        assert model.config.pad_token_id == tokenizer.pad_token_id  # the config had none
        batch = tokenizer(["a fine product that works", "bad"], padding=True, return_tensors="pt")
        alone = tokenizer(["bad"], return_tensors="pt")
        with torch.no_grad():
            padded = model(**batch).logits[1]
            single = model(**alone).logits[0]
        torch.testing.assert_close(padded, single, atol=1e-4, rtol=1e-4)
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        assert any(".score." in name for name in trained)  # the head trains beside the adapter


def test_help_lists_every_preset():
    shown = subprocess.run([sys.executable, "-m", "tune.search", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert all(name in shown.stdout for name in PRESETS) and "qwen" in shown.stdout
