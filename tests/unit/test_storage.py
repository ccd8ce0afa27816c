"""The run folder's storage layer on local files (object stores: tests/integration/test_object_storage.py)."""

import os

from core import storage


def test_uri_paths_keep_scheme_and_query():
    uri = "s3://bucket/runs?region=eu-west-1"
    assert storage.join(uri, "a", "record.json") == "s3://bucket/runs/a/record.json?region=eu-west-1"
    assert storage.parent(storage.join(uri, "a")) == uri
    assert storage.name(storage.join(uri, "a")) == "a"
    assert storage.bucket(storage.join(uri, "a")) == "s3://bucket?region=eu-west-1"
    assert storage.is_uri(uri) and not storage.is_uri("runs/a")


def test_local_writes_are_whole_and_found_recursively(tmp_path):
    run = str(tmp_path / "run")
    storage.write_text(storage.join(run, "trials", "b", "record.json"), "{}")
    storage.write_bytes(storage.join(run, "trials", "a", "record.json"), b"[]")
    storage.write_text(storage.join(run, "train", "a", "checkpoint_2", "w"), "")
    storage.write_text(storage.join(run, "train", "a", "checkpoint_1", "w"), "")
    assert storage.find(run, "record.json") == [os.path.join(run, "trials", x, "record.json") for x in "ab"]
    assert storage.read_text(storage.find(run, "record.json")[1]) == "{}"
    assert storage.folders(storage.join(run, "train", "a"), "checkpoint_")[-1].endswith("checkpoint_2")
    assert not [name for _, _, files in os.walk(run) for name in files if "partial" in name]
    assert storage.find(storage.join(run, "missing"), "record.json") == []
    assert not storage.exists(storage.join(run, "missing"))


def test_upload_copies_a_whole_tree_and_replaces_files(tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "x.txt").write_text("new")
    storage.write_text(str(tmp_path / "dest" / "sub" / "x.txt"), "old")
    storage.upload(tmp_path / "src", str(tmp_path / "dest"))
    assert storage.read_text(str(tmp_path / "dest" / "sub" / "x.txt")) == "new"
