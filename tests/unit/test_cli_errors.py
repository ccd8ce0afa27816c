"""The search CLI answers bad input with one line and exit code 2, before Ray starts and before
any data is read. Each test calls the command line's own entry point (tune.search.main)."""

import json

import pytest

from tune.search import main


def search(capsys, *args):
    """(exit code, stdout, stderr) of `python -m tune.search ARGS`, in this process."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def data(tmp_path):
    """A data file that exists; these searches stop before reading it."""
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\nnot read,CG\n")
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["bert", "--data", "x.csv"], "error: Unknown preset 'bert'. Choose one of: minilm, stella, flan-t5, qwen."),
    (["minilm", "--data", "nowhere.csv", "--profile", "smoke"],
     "error: Data file not found: nowhere.csv. Pass the dataset with --data PATH."),
])
def test_bad_input_exits_2_with_message_and_no_traceback(capsys, args, message, tmp_path):
    code, out, err = search(capsys, *args, "--storage", str(tmp_path))
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("args, message", [
    (["--storage", "nosuch://bucket/runs"], "--storage nosuch://bucket/runs cannot be used: Unrecognized filesystem"),
    (["--trials-per-gpu", "0"], "--trials-per-gpu takes the number of trials to pack on one GPU, 1 or more."),
])
def test_cluster_options_are_checked_before_anything_starts(capsys, args, message, data, tmp_path):
    code, out, err = search(capsys, "minilm", "--data", data, "--storage", str(tmp_path), *args)
    assert code == 2 and message in err
    assert "Traceback" not in err + out


def test_unreachable_object_store_is_refused_before_the_data_is_prepared(capsys, monkeypatch, data):
    # Port 9 (discard) has no S3 server: the search must stop at once, saying what to check.
    for key, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    code, out, err = search(capsys, "minilm", "--data", data, "--storage", "s3://bucket/runs")
    assert code == 2
    assert "--storage s3://bucket/runs cannot be used" in err
    assert "AWS_ENDPOINT_URL" in err and "Preset minilm" not in out


def test_help_explains_presets_profiles_and_storage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in ("minilm", "stella", "flan-t5", "trust_remote_code", "--profile", "--storage",
                 "--model", "--num-samples", "--max-concurrent", "--seed", "--data", "--name",
                 "--address", "--trials-per-gpu", "--gpu-memory-gb", "--cpu-memory-gb", "--fake-label"):
        assert word in out, word


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "a/b", "..", "."])
def test_a_name_that_would_leave_storage_is_refused_and_nothing_is_written(
        capsys, monkeypatch, name, data, tmp_path):
    store, outside = tmp_path / "store", tmp_path / "outside"
    store.mkdir()
    outside.mkdir()
    monkeypatch.chdir(outside)
    code, _, err = search(capsys, "minilm", "--data", data, "--storage", str(store), "--name", name)
    assert code == 2
    assert f"error: --name {name!r} is not a run folder name" in err
    assert not any(store.iterdir()) and not any(outside.iterdir())
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "error: --seed -1: allowed 0 to 4294967295."),
    (["--seed", str(2**32)], "error: --seed 4294967296: allowed 0 to 4294967295."),
    (["--max-concurrent", "0"], "error: --max-concurrent 0: allowed 1 or more."),
    (["--num-samples", "-1"], "error: --num-samples -1: allowed 1 or more."),
    (["--num-samples", "0"], "error: --num-samples 0: allowed 1 or more."),
    (["--cpus-per-trial", "0"], "error: --cpus-per-trial 0: allowed 1 or more."),
    (["--cpus-per-trial", "4096"], "error: --cpus-per-trial 4096: this machine has"),
    (["--gpu-memory-gb", "0"], "error: --gpu-memory-gb 0: allowed above 0 (GiB)."),
    (["--cpu-memory-gb", "nan"], "error: --cpu-memory-gb nan: allowed above 0 (GiB)."),
    (["--time-budget", "-5"], "error: --time-budget -5: allowed 0 (no budget) or more minutes."),
])
def test_a_flag_out_of_range_is_refused_in_one_line_before_a_run_folder_exists(capsys, args, message, data,
                                                                                tmp_path):
    storage = tmp_path / "runs"
    code, out, err = search(capsys, "minilm", "--data", data, "--storage", str(storage), "--name", "x", *args)
    assert code == 2
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert out == "" and not storage.exists()


@pytest.fixture
def started_run(tmp_path):
    """A run folder's run.json as a search leaves it (what a resume reads first)."""
    from core.data import RANDOM_PROTOCOL

    folder = tmp_path / "runs" / "kept"
    folder.mkdir(parents=True)
    state = {"preset": "minilm", "finished": False, "data": str(tmp_path / "reviews.csv"), "profile": "smoke",
             "base": {"model": "minilm", "run_dir": str(folder)}, "seed": 42, "metric": "macro_f1",
             "baselines": "fast", "protocol": RANDOM_PROTOCOL, "num_samples": 3}
    (folder / "run.json").write_text(json.dumps(state))
    return folder, state


@pytest.mark.parametrize("args, named", [
    (["--data", "other.csv"], "--data "),
    (["--test-groups", "Books"], "--test-groups held-out groups: Books (the run has random split"),
    (["--metric", "mcc"], "--metric mcc (the run has macro_f1)"),
    (["--num-samples", "9"], "--num-samples 9 (the run has 3)"),
    (["--seed", "7"], "--seed 7 (the run has 42)"),
    (["--profile", "cpu"], "--profile cpu (the run has smoke)"),
])
def test_a_resume_that_contradicts_its_run_folder_is_refused(capsys, started_run, tmp_path, args, named):
    folder, state = started_run
    code, out, err = search(capsys, "minilm", "--storage", str(folder.parent), "--name", "kept", "--resume", *args)
    assert code == 2 and named in err and "holds a search started with other settings" in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads((folder / "run.json").read_text()) == state  # untouched


def test_a_resume_with_the_same_flags_or_none_agrees(started_run, tmp_path):
    import argparse

    from tune.lifecycle import resume_conflicts
    from tune.run_state import RunState

    state = RunState.from_json(started_run[1])
    same = argparse.Namespace(data=[str(tmp_path / "reviews.csv")], profile="smoke", model=None, seed=42,
                              metric="macro_f1", baselines=None, test_groups=None, num_samples=3, extend=None)
    assert resume_conflicts(same, state) == []
    extend = argparse.Namespace(**{**vars(same), "num_samples": 50, "extend": 2})  # --extend adds its own
    assert resume_conflicts(extend, state) == []


def test_default_run_names_never_collide():
    import re

    from tune.lifecycle import default_name

    names = {default_name("minilm", "cpu") for _ in range(50)}  # the same second, 50 jobs
    assert len(names) == 50
    assert all(re.fullmatch(r"minilm-cpu-\d{8}-\d{6}-[0-9a-f]{4}", name) for name in names)


@pytest.mark.parametrize("args, message", [
    (["--gpu-memory-gb", "inf"], "error: --gpu-memory-gb inf: allowed above 0 (GiB)."),
    (["--time-budget", "nan"], "error: --time-budget nan: allowed 0 (no budget) or more minutes."),
])
def test_flags_that_are_not_finite_are_refused(capsys, args, message, data, tmp_path):
    code, out, err = search(capsys, "minilm", "--data", data, "--storage", str(tmp_path / "runs"), *args)
    assert code == 2 and err.startswith(message)


def test_a_storage_that_is_a_file_is_refused_in_one_line(capsys, data, tmp_path):
    code, out, err = search(capsys, "minilm", "--data", data, "--storage", data, "--name", "x")
    assert code == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
