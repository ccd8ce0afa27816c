"""Shared fixtures: the review dataset from ../shared, tiny models built from configs, prepared
run data. Nothing here reaches a network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tune.ray_setup import dashboard_env, free_port

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REVIEWS = Path(os.environ.get(
    "REVIEWS_DATA", ROOT.parent / "shared" / "data" / "fake_reviews" / "fake_reviews_dataset.csv.gz"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def local_cluster(**head_args):
    """A multi-node Ray cluster on this machine (ray.cluster_utils.Cluster). Its dashboard gets a
    free port (a search in the other pytest-xdist worker may hold Ray's default, and Cluster takes
    the port it is given), and its head's processes are told where it is: Ray Train's state-API
    calls from a worker would otherwise guess among the Ray instances on this machine, as they
    need not on a real cluster's head (tune/ray_setup.py does the same for a local search)."""
    from ray.cluster_utils import Cluster

    port = free_port()
    return Cluster(initialize_head=True, head_node_args={
        "dashboard_port": port, "env_vars": dashboard_env(port), **head_args})


def run_study(run_dir):
    """The Optuna study in a run folder, opened as a user would (optuna-dashboard, load_study): by
    the file and study names the README gives, not through tune.searcher's own constants."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="search",
                             storage=JournalStorage(JournalFileBackend(str(Path(run_dir) / "optuna.journal"))))


@pytest.fixture(scope="session")
def reviews_path() -> Path:
    assert REVIEWS.exists(), f"dataset not found at {REVIEWS}; set REVIEWS_DATA"
    return REVIEWS


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from trainables.model import load_tokenizer

    return load_tokenizer("minilm")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_tokenizer) -> str:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as a local model folder."""
    return save_bert(tmp_path_factory.mktemp("tiny_bert"), minilm_tokenizer, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="session")
def slow_bert(tmp_path_factory, minilm_tokenizer) -> str:
    """A 16-layer, 384-wide BERT (random weights): a smoke epoch takes about 20 s on one thread,
    longer than a graceful stop (about 12 s), so a signal lands while a trial is mid-way."""
    return save_bert(tmp_path_factory.mktemp("slow_bert"), minilm_tokenizer, hidden_size=384, num_hidden_layers=16,
                     num_attention_heads=12, intermediate_size=1536)


def save_bert(folder, tokenizer, **sizes) -> str:
    """A BERT of the given sizes with random weights and MiniLM's tokenizer, as a local model folder."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **sizes)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_stella(tmp_path_factory, minilm_tokenizer) -> str:
    """A tiny model whose code lives in the model folder (auto_map), loaded only with
    trust_remote_code: the stand-in for Stella's remote code, with its module names, its flags as
    published (xformers' attention and unpadding on) and its assertions (tests/fixtures/tiny_stella)."""
    sys.path.insert(0, str(FIXTURES))
    try:
        from tiny_stella.configuration_tiny_stella import TinyStellaConfig
        from tiny_stella.modeling_tiny_stella import TinyStellaForSequenceClassification, TinyStellaModel
    finally:
        sys.path.remove(str(FIXTURES))
    TinyStellaConfig.register_for_auto_class()
    TinyStellaModel.register_for_auto_class("AutoModel")
    TinyStellaForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    folder = tmp_path_factory.mktemp("tiny_stella")
    torch.manual_seed(0)
    # Built without xformers' flags (its assertions would stop it here), saved with them on.
    config = TinyStellaConfig(vocab_size=minilm_tokenizer.vocab_size, use_memory_efficient_attention=False,
                              unpad_inputs=False)
    model = TinyStellaForSequenceClassification(config)
    model.config.use_memory_efficient_attention = model.config.unpad_inputs = True
    model.save_pretrained(folder)
    # As Stella's config.json: AutoModel (the embedding baselines' backbone) maps to the base model.
    saved = json.loads((folder / "config.json").read_text())
    saved["auto_map"]["AutoModel"] = "modeling_tiny_stella.TinyStellaModel"
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    minilm_tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory, reviews_path, minilm_tokenizer):
    """The shared dataset prepared as a smoke-profile run folder would hold it."""
    from tune.prepare import prepare_data
    from tune.profiles import get_profile

    run_dir = tmp_path_factory.mktemp("run")
    return prepare_data(str(reviews_path), get_profile("smoke"), minilm_tokenizer, "minilm", run_dir)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, reviews_path, tiny_bert, worker_id):
    """The smoke search, run once per test session. Under pytest-xdist the first worker to ask
    runs it and the other waits for it and reads the same run folder (pytest-xdist's documented
    pattern for a session fixture: a file lock in the folder that all workers share)."""
    if worker_id == "master":  # one process: pytest's fixture cache runs it once
        return run_smoke_search(tmp_path_factory.mktemp("runs"), reviews_path, tiny_bert)
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # this session's folder, above each worker's own
    with FileLock(shared / "smoke_run.lock"):
        finished = shared / "smoke_run.json"
        if not finished.exists():
            run_dir, stdout, stderr = run_smoke_search(shared / "runs", reviews_path, tiny_bert)
            finished.write_text(json.dumps({"run_dir": str(run_dir), "stdout": stdout, "stderr": stderr}))
        saved = json.loads(finished.read_text())
    return Path(saved["run_dir"]), saved["stdout"], saved["stderr"]


def run_smoke_search(storage, reviews_path, model):
    # 3 trials, 2 at a time on 2 CPUs: trial drivers hold no CPU, so both workers start, and
    # ASHA-stopped trials free their worker before the next trial asks for one. --verbose: Ray's
    # and the workers' output too, which the tests search for resource waits.
    result = subprocess.run(
        [sys.executable, "-m", "tune.search", "minilm", "--data", str(reviews_path), "--profile", "smoke",
         "--model", model, "--storage", str(storage), "--name", "smoke", "--num-samples", "3",
         "--max-concurrent", "2", "--verbose"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return storage / "smoke", result.stdout, result.stderr


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, minilm_tokenizer) -> str:
    """A 2-layer, 32-wide T5 (encoder-decoder) with MiniLM's tokenizer: the flan-t5 preset's shape.
    Its end-of-sequence token is the tokenizer's [SEP], which ends every sequence as </s> does for
    T5's own tokenizer (T5ForSequenceClassification reads the head from that position)."""
    from transformers import T5Config, T5Model

    folder = tmp_path_factory.mktemp("tiny_t5")
    torch.manual_seed(0)
    config = T5Config(vocab_size=minilm_tokenizer.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                      num_heads=4, feed_forward_proj="gated-gelu", pad_token_id=0, decoder_start_token_id=0,
                      eos_token_id=minilm_tokenizer.sep_token_id)
    T5Model(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory, minilm_tokenizer) -> str:
    """A 2-layer, 32-wide Qwen2 decoder (grouped-query attention: 4 query heads, 2 key/value heads;
    tied embeddings) with MiniLM's BERT-style tokenizer, saved as a local model folder. Its config
    has no pad token id, as Qwen2.5's has none: every load must give the head the tokenizer's."""
    from transformers import Qwen2Config, Qwen2Model

    folder = tmp_path_factory.mktemp("tiny_qwen")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True)
    assert config.pad_token_id is None
    Qwen2Model(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return str(folder)
