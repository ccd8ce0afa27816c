"""A real multi-node Ray cluster on one machine (ray.cluster_utils.Cluster): a CPU head node that
holds the trial drivers, and worker nodes that advertise one GPU each (Ray does not check the
hardware; the trials fall back to the CPU). The search connects with --address."""

import subprocess
import sys
import time

import pytest

from core.record import find_records, read_record
from tests.conftest import ROOT, local_cluster
from tests.integration.test_resume import checkpointed_mid_way
from tune.ray_setup import TRIAL_DRIVER

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster():
    cluster = local_cluster(num_cpus=1, resources={TRIAL_DRIVER: 8}, include_dashboard=True)
    yield cluster
    cluster.shutdown()


def add_gpu_nodes(cluster, count, cpus=1):
    nodes = [cluster.add_node(num_cpus=cpus, num_gpus=1) for _ in range(count)]
    cluster.wait_for_nodes()
    return nodes


def search(reviews_path, model, storage, address, *extra, name="cluster"):
    """The search's command line; address=None: without --address."""
    return [sys.executable, "-m", "tune.search", "minilm", "--data", str(reviews_path), "--profile", "smoke",
            "--model", model, "--storage", str(storage), "--name", name, "--baselines", "none",
            *(["--address", address] if address else []), *extra]


def fine_tune_records(run_dir):
    return [r for r in (read_record(p) for p in find_records(run_dir)) if "history" in r]


def epochs_by_node(records):
    """node id -> [(start, end) of every epoch trained there]"""
    spans = {}
    for record in records:
        for epoch in record["history"]:
            spans.setdefault(epoch["placement"]["node_id"], []).append(
                (epoch["started_at"], epoch["started_at"] + epoch["train_seconds"]))
    return spans


def most_at_once(spans):
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_a_cluster_without_trial_driver_slots_is_refused_with_the_fix_and_is_joined_only_when_named(
        reviews_path, tiny_bert, tmp_path):
    """A search joins a cluster only with --address: without it, it starts its own Ray instance,
    even while one that `ray start` (here ray.cluster_utils) left running on this machine is
    where ray.init() would connect by default. Its trials then free their resources for the next
    one (each takes both CPUs), which takes Ray Train's state-API calls reaching its own instance."""
    cluster = local_cluster(num_cpus=1)
    try:
        result = subprocess.run(search(reviews_path, "minilm", tmp_path, cluster.address), cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        local = subprocess.run(search(reviews_path, tiny_bert, tmp_path, None, "--num-samples", "2",
                                      "--cpus-per-trial", "2", "--max-concurrent", "1", name="local"),
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        cluster.shutdown()
    assert result.returncode == 2
    assert f"""has no '{TRIAL_DRIVER}' resource for trial drivers. Start its head with: ray start --head \
--resources='{{"{TRIAL_DRIVER}": 64}}'""" in result.stderr
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    records = fine_tune_records(tmp_path / "local")
    assert len(records) == 2 and not [r for r in records if r.get("status") == "failed"], records


# The packaged MiniLM: its smoke epochs take seconds, long enough for concurrent trials to overlap.

def test_trials_run_one_per_gpu_and_a_killed_node_s_trial_is_retried_elsewhere(cluster, reviews_path, tmp_path):
    """2 trials on 3 GPU nodes: at once, one on each of two, never on the head. Once a trial has
    stored an epoch checkpoint with epochs to go, its whole node is killed (a lost worker): Ray
    Train retries it from that checkpoint on a node that is left, and it finishes."""
    nodes = add_gpu_nodes(cluster, 3)
    gpu_nodes = {node.node_id for node in nodes}
    command = search(reviews_path, "minilm", tmp_path, cluster.address, "--num-samples", "2")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        # A trial whose first epoch checkpoint Ray Train has registered, with epochs to go.
        while not (running := checkpointed_mid_way(tmp_path / "cluster")):
            assert process.poll() is None and time.time() < deadline, "no trial stopped mid-way to be killed"
            time.sleep(0.2)
        trial, victim = running["trial_id"], running["history"][-1]["placement"]["node_id"]
        cluster.remove_node(next(n for n in nodes if n.node_id == victim), allow_graceful=False)
        killed_at = time.time()
        output, _ = process.communicate(timeout=900)
    finally:
        process.kill()
    assert process.returncode == 0, output[-4000:]
    records = fine_tune_records(tmp_path / "cluster")
    assert len(records) == 2 and all(r.get("status") != "failed" for r in records)
    spans = epochs_by_node(records)
    assert set(spans) <= gpu_nodes  # never on the head, which has no GPU
    assert all(most_at_once(node_spans) == 1 for node_spans in spans.values())
    assert all(r["config"]["gpu_fraction"] == 1.0 for r in records)

    killed = next(r for r in records if r["trial_id"] == trial)
    assert killed["epochs_run"] == killed["params"]["epochs"]  # it finished, on a node left
    assert len(killed["started_at_epochs"]) == 2 and killed["started_at_epochs"][1] > 0  # from its checkpoint
    after = [e for e in killed["history"] if e["started_at"] > killed_at]
    assert after and all(e["placement"]["node_id"] != victim for e in after)


def test_trials_per_gpu_packs_k_trials_on_one_card(cluster, reviews_path, tmp_path):
    [node] = add_gpu_nodes(cluster, 1, cpus=2)  # a CPU for each packed trial's worker
    result = subprocess.run(search(reviews_path, "minilm", tmp_path, cluster.address, "--num-samples", "2",
                                   "--trials-per-gpu", "2"),
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = fine_tune_records(tmp_path / "cluster")
    spans = epochs_by_node(records)
    assert set(spans) == {node.node_id}
    assert most_at_once(spans[node.node_id]) == 2  # two trials training at once on its one GPU
    assert all(r["config"]["gpu_fraction"] == 0.5 for r in records)
    assert {e["placement"]["gpu_ids"] == ["0"] for r in records for e in r["history"]} == {True}
