"""The search CLI answers bad input with one line and exit code 2, before Ray starts."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def search(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tune.search", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["bert", "--data", "x.csv"], "error: Unknown preset 'bert'. Choose one of: minilm, stella, flan-t5."),
    (["minilm", "--data", "nowhere.csv", "--profile", "smoke"],
     "error: Data file not found: nowhere.csv. Pass the dataset with --data PATH."),
])
def test_bad_input_exits_2_with_message_and_no_traceback(args, message, tmp_path):
    result = search(*args, "--storage", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("args, message", [
    (["--storage", "nosuch://bucket/runs"], "--storage nosuch://bucket/runs cannot be used: Unrecognized filesystem"),
    (["--trials-per-gpu", "0"], "--trials-per-gpu takes the number of trials to pack on one GPU, 1 or more."),
])
def test_cluster_options_are_checked_before_anything_starts(args, message, reviews_path, tmp_path):
    result = search("minilm", "--data", str(reviews_path), "--storage", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unreachable_object_store_is_refused_before_the_data_is_prepared(reviews_path, tmp_path):
    # Port 9 (discard) has no S3 server: the search must stop at once, saying what to check.
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    result = search("minilm", "--data", str(reviews_path), "--storage", "s3://bucket/runs", env=env)
    assert result.returncode == 2
    assert "--storage s3://bucket/runs cannot be used" in result.stderr
    assert "AWS_ENDPOINT_URL" in result.stderr and "Preset minilm" not in result.stdout


def test_help_explains_presets_profiles_and_storage():
    result = search("--help")
    assert result.returncode == 0
    for word in ("minilm", "stella", "flan-t5", "trust_remote_code", "--profile", "--storage",
                 "--model", "--num-samples", "--max-concurrent", "--seed", "--data", "--name",
                 "--address", "--trials-per-gpu", "--gpu-memory-gb"):
        assert word in result.stdout, word


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "a/b", "..", "."])
def test_a_name_that_would_leave_storage_is_refused_and_nothing_is_written(name, reviews_path, tmp_path):
    store, outside = tmp_path / "store", tmp_path / "outside"
    store.mkdir()
    outside.mkdir()
    result = subprocess.run([sys.executable, "-m", "tune.search", "minilm", "--data", str(reviews_path),
                             "--storage", str(store), "--name", name], cwd=outside, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert f"error: --name {name!r} is not a run folder name" in result.stderr
    assert not any(store.iterdir()) and not any(outside.iterdir())
    assert not (tmp_path / "escaped").exists()
