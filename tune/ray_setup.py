"""Ray start-up and the checks a cluster needs: a local Ray instance or a connection to a
cluster, and proof that every node can reach the run folder's storage.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from core import storage
from core.errors import UserError
from core.run_folder import RUN_FOLDER_ENV, RunFolder

# Ray is imported inside the functions that start or query it: tune/search.py imports this module,
# and `--help` or a refused flag answers without loading Ray (seconds on one core).

# Custom Ray resource that trial drivers (the Tune functions) ask for. A local run declares it;
# on a cluster, cluster.yaml gives it to the head node, the "safe node" Ray's docs recommend.
TRIAL_DRIVER = "trial_driver"
TRIAL_DRIVER_SLOTS = 64
LOCALHOST = "127.0.0.1"
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"  # where ray.util.state finds the dashboard
# Ray Train's controller polls its worker every this many seconds (Ray's default: 2): each trial
# waits up to one interval to start training and one more to end. 0.5 s cut a trial's turnaround
# by about 1.7 s on 2 cores (README, "Start-up"); set the variable to choose another.
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_S = "0.5"


def start_ray(address: str | None = None, folder: RunFolder | None = None, verbose: bool = True) -> None:
    """Start a local Ray instance, or connect to the cluster at `address`. Every task and actor of
    this job learns where the run folder is now (RUN_FOLDER_ENV), so trials restored from a moved
    run folder write there, not where their saved config says. Without `verbose` the workers' logs
    stay in Ray's log files (/tmp/ray/session_latest/logs) instead of the console."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
    if folder:  # the driver too: a restored searcher reopens the Optuna journal here
        os.environ[RUN_FOLDER_ENV] = folder.path
    if ray.is_initialized():
        return
    env_vars = {HEALTH_CHECK_ENV: os.environ[HEALTH_CHECK_ENV], **({RUN_FOLDER_ENV: folder.path} if folder else {})}
    if address:
        try:
            ray.init(address=address, configure_logging=False, runtime_env={"env_vars": env_vars},
                     log_to_driver=verbose)
        except ConnectionError as error:
            raise UserError(f"Could not connect to a Ray cluster at {address}: {error}. Start one with "
                            "`ray up cluster.yaml` (or `ray start --head` on this machine).") from error
        if ray.cluster_resources().get(TRIAL_DRIVER, 0) < 1:
            raise UserError(
                f"The Ray cluster at {address} has no '{TRIAL_DRIVER}' resource for trial drivers. Start its "
                f"head with: ray start --head --resources='{{\"{TRIAL_DRIVER}\": {TRIAL_DRIVER_SLOTS}}}' "
                "(cluster.yaml does).")
        return
    # address="local": a Ray instance of this search's own, even where `ray start` left one running
    # on this machine or RAY_ADDRESS names one (ray.init() without an address would join it,
    # without the trial-driver resource declared here). A cluster is joined only with --address.
    # The dashboard serves Ray's state API; without it Ray Train cannot see that an ASHA-stopped
    # trial's controller died, never frees that trial's worker resources, and the next trial's
    # worker group times out waiting for them. Ray Train asks that API from a worker process
    # without an address, and Ray then guesses the instance from the GCS processes running on this
    # machine: with a second one (another search, a `ray start`) it asks the wrong one or none.
    # So the dashboard gets a port chosen here, and every worker is told where it is.
    dashboard_port = free_port()
    env_vars.update(dashboard_env(dashboard_port))
    ray.init(address="local", include_dashboard=True, dashboard_host=LOCALHOST, dashboard_port=dashboard_port,
             configure_logging=False, resources={TRIAL_DRIVER: TRIAL_DRIVER_SLOTS},
             runtime_env={"env_vars": env_vars}, log_to_driver=verbose)


def dashboard_env(port: int) -> dict[str, str]:
    """The environment that points Ray's state API (ray.util.state) at the dashboard on `port`."""
    return {API_SERVER_ENV: f"http://{LOCALHOST}:{port}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def ray_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def check_storage_reachable(location: str) -> None:
    """Fail before any work when the storage URI's bucket cannot be reached (no credentials, no
    such bucket, a typo in the scheme), or a local --storage is a file or cannot be written."""
    if not storage.is_uri(location):
        existing = next((p for p in [location, *map(str, Path(location).parents)] if os.path.exists(p)), None)
        if existing is not None and not os.path.isdir(existing):
            raise UserError(f"--storage {location} cannot be used: {existing} is a file, not a folder.")
        if existing is not None and not os.access(existing, os.W_OK):
            raise UserError(f"--storage {location} cannot be used: {existing} is not writable.")
        return
    try:
        problem = None if storage.exists(storage.bucket(location)) else "no such bucket"
    except Exception as error:  # pyarrow raises OSError, ValueError or ArrowInvalid, by scheme
        problem = str(error).splitlines()[0]
    if problem:
        raise UserError(f"--storage {location} cannot be used: {problem}. Check the bucket name (the "
                        "search does not create buckets) and the credentials in the environment "
                        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or GOOGLE_APPLICATION_CREDENTIALS; "
                        "AWS_ENDPOINT_URL for an S3-compatible server).")


def check_shared_storage(folder: RunFolder) -> None:
    """On a multi-node cluster every node must see the run folder: Ray no longer syncs trial files
    to the head node. A marker written here is looked for from every node, which also proves each
    node's credentials for a storage URI."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return
    marker = folder.shared_check_marker(str(os.getpid()))
    storage.write_text(marker, "written by the search driver")
    try:
        seen = ray.get([
            ray.remote(storage_visible).options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(marker)
            for node in nodes])
    finally:
        storage.remove(marker)
    blind = [f"{node['NodeManagerAddress']} (node {node['NodeID'][:8]})" for node, ok in zip(nodes, seen) if not ok]
    if blind:
        raise UserError(
            f"--storage {folder.storage_root} is not visible from node(s) {', '.join(blind)}: this cluster has "
            f"{len(nodes)} nodes, and every trial writes its records and checkpoints there. Mount one "
            "shared folder (NFS) at the same path on every node, or use an s3:// or gs:// URI that "
            "every node has credentials for, and pass it with --storage.")


def storage_visible(marker: str) -> bool:
    try:
        return storage.exists(marker)
    except OSError:  # no credentials on that node
        return False
