"""The trial loop itself, called directly (as benchmarks and GPU checks call it): real peft and
bitsandbytes layers on a tiny model, real tokenized reviews, real files."""

import json

import numpy as np
import pytest
import torch

from core.metrics import classification_metrics
from trainables.config import FineTuneConfig
from trainables.training import fine_tune

pytestmark = pytest.mark.integration


def config_for(data, model, **overrides):
    values = dict(model=model, run_dir=data.run_dir, tokens_file=data.tokens_file,
                  split_hash=data.split_hash, max_length=data.max_length, batch_size=16)
    return FineTuneConfig(**{**values, **overrides})


def test_nf4_lora_training_lowers_the_loss_and_writes_a_complete_record(smoke_data, tmp_path):
    """The packaged MiniLM, 4-bit, LoRA on attention + MLP: small enough for a CPU test."""
    config = config_for(smoke_data, "minilm", method="qlora", target_modules="attention_mlp",
                        learning_rate=2e-3, epochs=4)
    checkpoints = []
    record = fine_tune(config, str(tmp_path / "record.json"), "t1", torch.device("cpu"),
                       report=lambda metrics, folder: checkpoints.append(metrics))
    losses = [h["train_loss"] for h in record["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    assert [c["epoch"] for c in checkpoints] == [1, 2, 3, 4]
    on_disk = json.loads((tmp_path / "record.json").read_text())
    for key in ("method", "preset", "params", "val", "test", "history", "test_prob_real", "train_seconds",
                "samples_per_second", "gpu_peak_mb", "cpu_peak_rss_mb", "trainable_params", "total_params", "adapter_bytes",
                "versions", "split_hash", "seed"):
        assert key in on_disk, key
    assert on_disk["method"] == "qlora" and on_disk["split_hash"] == smoke_data.split_hash
    assert len(on_disk["test_prob_real"]) == smoke_data.rows["test"]
    assert 0 < on_disk["trainable_params"] < on_disk["total_params"]
    assert 0.5 < on_disk["history"][-1]["padding_efficiency"] <= 1.0


def test_resume_from_a_checkpoint_continues_at_the_next_epoch(smoke_data, tiny_bert, tmp_path):
    import shutil

    config = config_for(smoke_data, tiny_bert, method="lora", epochs=2, learning_rate=1e-3)
    saved = tmp_path / "epoch1"

    def keep_first(metrics, folder):
        if metrics["epoch"] == 1:
            shutil.copytree(folder, saved)
        if metrics["epoch"] == 2:
            shutil.copytree(folder, tmp_path / "epoch2")

    full = fine_tune(config, str(tmp_path / "a.json"), "a", torch.device("cpu"), report=keep_first)
    resumed = fine_tune(config, str(tmp_path / "b.json"), "b", torch.device("cpu"), resume_from=str(saved))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["started_at_epochs"] == [0, 1]  # epoch 1 came from the checkpoint, epoch 2 ran here
    # The checkpoint restores weights, optimizer, schedule and every RNG: on a CPU the resumed run
    # replays the uninterrupted one exactly.
    assert resumed["history"][1]["train_loss"] == full["history"][1]["train_loss"]
    assert resumed["test_prob_real"] == full["test_prob_real"]
    # Stopped after its last checkpoint, before the trial ended: nothing to train, and Tune hears
    # the last epoch again (else the resumed trial ends with no score at all).
    reports = []
    done = fine_tune(config, str(tmp_path / "c.json"), "c", torch.device("cpu"), resume_from=str(tmp_path / "epoch2"),
                     report=lambda metrics, folder: reports.append(metrics))
    assert [(r["epoch"], r["schedule_done"]) for r in reports] == [(2, True)]
    assert reports[0]["score"] == full["selection"]["val_score"] and done["test"] == full["test"]


def test_report_points_inside_an_epoch_checkpoint_where_scored_and_resume_mid_epoch_exactly(
        smoke_data, tiny_bert, tmp_path):
    import shutil

    # 4 report points an epoch over 2 epochs; rungs at points 1 and 3 (grace 1, factor 3).
    config = config_for(smoke_data, tiny_bert, method="lora", epochs=2, learning_rate=1e-3,
                        evals_per_epoch=4, rung_grace=1, rung_factor=3, batch_size=8)
    assert config.scored_points == {1, 3, 4, 8}
    reports = []

    def keep(metrics, folder):
        reports.append((metrics["eval_point"], folder is not None))
        if metrics["eval_point"] == 3:  # a checkpoint in the middle of the first epoch
            shutil.copytree(folder, tmp_path / "point3")

    full = fine_tune(config, str(tmp_path / "a.json"), "a", torch.device("cpu"), report=keep)
    # Every point reported in order; a checkpoint (and a test score) only at the scored points.
    assert reports == [(p, p in config.scored_points) for p in range(1, 9)]
    assert [h["eval_point"] for h in full["history"]] == list(range(1, 9))
    assert [h["epoch"] for h in full["history"]] == [p / 4 for p in range(1, 9)]
    assert [h["scored"] for h in full["history"]] == [p in config.scored_points for p in range(1, 9)]
    samples = [h["samples_seen"] for h in full["history"]]
    assert samples[3] == smoke_data.rows["train"] and samples[-1] == 2 * smoke_data.rows["train"]
    assert full["startup_seconds"] > 0 and "model_built" in full["startup_parts"]

    # Resumed from point 3, as after a kill there: it goes on at point 4, in the same batches, with
    # the same optimizer, schedule and RNG, and is judged at the same points with the same scores.
    resumed = fine_tune(config, str(tmp_path / "b.json"), "b", torch.device("cpu"), resume_from=str(tmp_path / "point3"))
    assert [h["eval_point"] for h in resumed["history"]] == list(range(1, 9))
    assert resumed["started_at_epochs"] == [0, 0.75]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    assert [h["val"] for h in resumed["history"]] == [h["val"] for h in full["history"]]
    assert resumed["test_prob_real"] == full["test_prob_real"]

    # A record from the first point on: a trial stopped at point 2 (between scored points) keeps
    # point 1's test scores and checkpoint, with point 2's validation in its history.
    stopped = tmp_path / "c.json"

    class Stop(Exception):
        pass

    def stop_after_two(metrics, folder):
        if metrics["eval_point"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fine_tune(config, str(stopped), "c", torch.device("cpu"), report=stop_after_two)
    record = json.loads(stopped.read_text())
    assert record["eval_point"] == 1 and record["epochs_run"] == 0.25
    assert [h["eval_point"] for h in record["history"]] == [1, 2]
    assert record["test_prob_real"] and record["val"] == full["history"][0]["val"]


def test_stella_stand_in_trains_lora_through_remote_code(smoke_data, tiny_stella, tmp_path):
    """The search's test (test_stella_path.py) runs the study's qlora seed; this, plain LoRA."""
    config = config_for(smoke_data, tiny_stella, preset="stella", trust_remote_code=True,
                        method="lora", target_modules="attention_output", epochs=1)
    record = fine_tune(config, str(tmp_path / "record.json"), "s", torch.device("cpu"))
    assert record["preset"] == "stella" and record["method"] == "lora" and record["epochs_run"] == 1
    assert len(record["test_prob_real"]) == smoke_data.rows["test"]
    # The recorded metrics are those of the recorded predictions.
    recomputed = classification_metrics(np.asarray(record["test_labels"]), np.asarray(record["test_prob_real"]))
    assert record["test"]["f1"] == pytest.approx(recomputed["f1"], abs=1e-4)


def test_flan_t5_preset_trains_an_encoder_decoder_head(smoke_data, tiny_t5, tmp_path):
    from peft.tuners.lora import LoraLayer

    from trainables.model import build_classifier

    config = config_for(smoke_data, tiny_t5, preset="flan-t5", method="qlora", target_modules="qkvo_mlp", epochs=1)
    model = build_classifier(config, torch.device("cpu"))
    adapted = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == {"q", "k", "v", "o", "wi_0", "wi_1", "wo"}
    assert type(model.base_model.model).__name__ == "T5ForSequenceClassification"
    record = fine_tune(config, str(tmp_path / "record.json"), "t5", torch.device("cpu"))
    assert record["preset"] == "flan-t5" and len(record["test_prob_real"]) == smoke_data.rows["test"]


def test_encoder_mean_embeddings_of_an_encoder_decoder(smoke_data, tiny_t5):
    from trainables.embeddings import cached_embeddings, read_embeddings

    path, computed = cached_embeddings(smoke_data.data_dir, smoke_data.tokens_file, tiny_t5, smoke_data.split_hash,
                                       smoke_data.max_length, "encoder-mean", pad_id=0)
    arrays = read_embeddings(path)
    assert computed and arrays["train"][0].shape == (smoke_data.rows["train"], 32)
