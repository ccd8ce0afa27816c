"""The search CLI answers bad input with one line and exit code 2, before Ray starts."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def search(*args):
    return subprocess.run([sys.executable, "-m", "tune.search", *args], cwd=ROOT,
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
    (["--storage", "s3://bucket/runs"], "object storage is not supported for the run folder"),
    (["--trials-per-gpu", "0"], "--trials-per-gpu takes the number of trials to pack on one GPU, 1 or more."),
])
def test_cluster_options_are_checked_before_anything_starts(args, message, reviews_path, tmp_path):
    result = search("minilm", "--data", str(reviews_path), "--storage", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_help_explains_presets_profiles_and_storage():
    result = search("--help")
    assert result.returncode == 0
    for word in ("minilm", "stella", "flan-t5", "trust_remote_code", "--profile", "--storage",
                 "--model", "--num-samples", "--max-concurrent", "--seed", "--data", "--name",
                 "--address", "--trials-per-gpu", "--gpu-memory-gb"):
        assert word in result.stdout, word
