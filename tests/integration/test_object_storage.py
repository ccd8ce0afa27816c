"""A search whose run folder is an s3:// URI, against a real S3 server on this machine (moto's),
on a real multi-node Ray cluster: the trials, their Ray Train checkpoints, the baselines and the
leaderboard all land in the bucket, a killed search resumes from it, the analyzer and export read
from it, and a node that cannot reach it is refused."""

import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from core import storage
from core.record import find_records, read_record
from tests.conftest import ROOT, local_cluster
from tests.integration.test_resume import (
    checkpointed_mid_way,
    fine_tune_records,
    wait_for,
)
from tune.ray_setup import TRIAL_DRIVER, free_port

pytestmark = pytest.mark.integration

BUCKET = "runs"


@pytest.fixture(scope="module")
def s3_env():
    """Start an S3 server on a free local port with one bucket; the environment that points
    pyarrow (ours and Ray's) at it, as AWS_ENDPOINT_URL points any S3 client at a compatible store."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # this process reads the bucket too
    try:
        fs, _ = storage.filesystem(f"s3://{BUCKET}?allow_bucket_creation=true")
        fs.create_dir(BUCKET)
        yield {**os.environ, **env}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def command(reviews_path, storage_uri=f"s3://{BUCKET}/searches"):
    return [sys.executable, "-m", "tune.search", "minilm", "--data", str(reviews_path), "--profile", "smoke",
            "--storage", storage_uri, "--name", "on-s3", "--baselines", "fast",
            "--max-concurrent", "1", "--num-samples", "2"]


def test_missing_bucket_is_refused_before_any_work(s3_env, reviews_path):
    result = subprocess.run(command(reviews_path, "s3://no-such-bucket/runs"), cwd=ROOT, env=s3_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--storage s3://no-such-bucket/runs cannot be used: no such bucket" in result.stderr
    assert "Preset minilm" not in result.stdout


def test_a_cluster_search_in_a_bucket_resumes_after_a_kill_exports_and_refuses_a_blind_node(
        s3_env, reviews_path, tmp_path):
    """Multi-node runs need storage every node reaches. The nodes inherit this process's S3
    endpoint. A search on the cluster is killed mid-trial (its driver, as a lost laptop or ssh
    session would) and the same command resumes it from the trial's checkpoint in the bucket; the
    analyzer and export read from it. A node added last gets a dead endpoint, as a node without
    credentials would, and the next search is refused before any work."""
    run_dir = f"s3://{BUCKET}/searches/on-s3"
    cluster = local_cluster(num_cpus=1, resources={TRIAL_DRIVER: 8}, include_dashboard=True)
    try:
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        one_trial = [*command(reviews_path), "--num-samples", "1", "--address", cluster.address]  # the seeded full fine-tune
        log = open(tmp_path / "first-run.log", "w")
        process = subprocess.Popen(one_trial, cwd=ROOT, env=s3_env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            interrupted = wait_for(lambda: checkpointed_mid_way(run_dir), timeout=300,
                                   what="a first epoch checkpoint in the bucket")
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert storage.exists(storage.join(run_dir, "run.json"))

        result = subprocess.run(one_trial, cwd=ROOT, env=s3_env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "Resuming the unfinished search" in result.stdout
        assert f"Run folder: {run_dir}" in result.stdout

        blind = cluster.add_node(num_cpus=1, env_vars={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        cluster.wait_for_nodes()
        refused = subprocess.run([*command(reviews_path), "--name", "blind", "--address", cluster.address],
                                 cwd=ROOT, env=s3_env, capture_output=True, text=True, timeout=300)
    finally:
        cluster.shutdown()

    trials = fine_tune_records(run_dir)
    assert len(trials) == 1
    resumed = next(r for r in trials if r["trial_id"] == interrupted["trial_id"])
    assert resumed["started_at_epochs"][-1] >= interrupted["epochs_run"] > 0  # from its checkpoint in S3
    assert resumed["train_run_dir"].startswith(f"{run_dir}/train/")
    assert storage.folders(resumed["train_run_dir"], "checkpoint_")
    assert {epoch["placement"]["node_id"] for epoch in resumed["history"]} == {gpu_node.node_id}
    baselines = {read_record(path)["method"] for path in find_records(storage.join(run_dir, "baselines"))}
    assert baselines == {"tfidf-logreg", "embed-logreg"}
    assert storage.exists(storage.join(run_dir, "leaderboard", "index.html"))
    assert storage.exists(storage.join(run_dir, "leaderboard", "f1_vs_cost.png"))

    best = max(trials, key=lambda r: r["val"]["f1"])
    bundle = tmp_path / "bundle"
    export = subprocess.run([sys.executable, "-m", "results.export", run_dir, "--out", str(bundle),
                             "--trial", best["trial_id"]], cwd=ROOT, env=s3_env, capture_output=True,
                            text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-3000:]
    exported = json.loads((bundle / "bundle.json").read_text())
    weights = {"adapter": "adapter/adapter_model.safetensors", "full": "model/model.safetensors"}[exported["kind"]]
    assert (bundle / weights).stat().st_size > 0  # the seeded full fine-tune may be the best
    assert exported["exported_from"] == run_dir
    assert exported["metrics"]["val"] == best["val"]

    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    message = refused.stderr.split("error: ")[-1]
    assert message.startswith(f"--storage s3://{BUCKET}/searches is not visible from node(s) "
                              f"{blind.node_ip_address} (node {blind.node_id[:8]}): this cluster has 3 nodes"), message
    assert not storage.exists(storage.join(f"s3://{BUCKET}/searches", "blind"))


def test_a_local_run_folder_moved_into_a_bucket_resumes_there(s3_env, reviews_path, tmp_path):
    from tests.integration.test_resume import search_command

    # Killed on this machine once a trial has checkpointed with epochs to go...
    command = search_command(reviews_path, "minilm", tmp_path, "moved", "--num-samples", "1")
    log = open(tmp_path / "first-run.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=s3_env)
    try:
        wait_for(lambda: checkpointed_mid_way(tmp_path / "moved"), timeout=300, what="a first epoch checkpoint")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert (tmp_path / "moved" / "optuna.journal").exists()
    # ...then copied into a bucket and resumed from there: the study goes on from the journal's trials.
    uri = f"s3://{BUCKET}/moved-in"
    storage.upload(tmp_path / "moved", f"{uri}/moved")
    command[command.index("--storage") + 1] = uri
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=s3_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Resuming the unfinished search" in result.stdout
    records = fine_tune_records(f"{uri}/moved")
    assert len(records) == 1 and records[0]["epochs_run"] == records[0]["params"]["epochs"]
    assert json.loads(storage.read_text(f"{uri}/moved/run.json"))["finished"] is True
