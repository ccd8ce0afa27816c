"""Experiment tracking in MLflow and W&B (--track mlflow, --track wandb; `pip install -e ".[tracking]"`).

Live, while the search runs: Ray's own logger callbacks (ray.air.integrations), one tracked run per
trial, named by its trial id, every report's metrics at its report point. MLflow's is subclassed
so that a resumed or extended search finds a trial's run again by its `trial_id` tag and appends to
it; W&B's runs use the trial id as their id with resume="allow", which W&B appends to by itself.

At the search's end, from the records (the source of truth): each fine-tune's run gets every
report point's validation metrics (those the live callback did not log, e.g. on a resume that
restored no callback), its test metrics and its tags (method, preset, split hash, run folder);
each baseline gets a run of its own; and a run for the search itself holds run.json's settings
and the leaderboard files as artifacts.

MLflow's tracking URI: --tracking-uri, else MLFLOW_TRACKING_URI, else a SQLite store in the run
folder (RUN/mlflow.db); its experiment is named after the run. W&B follows its own environment
(WANDB_PROJECT, WANDB_MODE=offline, WANDB_DIR; default dir: the run folder). A backend that
cannot be reached is refused before any work starts (check_trackers).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core import storage
from core.errors import UserError
from core.record import is_fine_tune
from core.reports import POINT, history_point
from core.run_folder import RunFolder

TRACKERS = ("mlflow", "wandb")
INSTALL = 'pip install -e ".[tracking]"'
SEARCH_RUN = "search"  # the trial_id tag of the search's own run
TEST_KEYS = ("f1", "f1_fake", "macro_f1", "mcc", "accuracy", "precision", "recall", "roc_auc", "average_precision")


@dataclass(frozen=True)
class Tracking:
    """Where the search is tracked: the trackers asked for, and MLflow's URI (None without MLflow)."""

    trackers: tuple[str, ...]
    mlflow_uri: str | None
    experiment: str  # MLflow's experiment, W&B's group: the run's name

    @classmethod
    def of(cls, trackers: list[str] | None, tracking_uri: str | None, folder: RunFolder) -> "Tracking | None":
        if not trackers:
            return None
        uri = None
        if "mlflow" in trackers:
            uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                if storage.is_uri(folder.path):
                    raise UserError("--track mlflow with a run folder in object storage needs a tracking server: "
                                    "pass --tracking-uri (or set MLFLOW_TRACKING_URI).")
                uri = f"sqlite:///{folder.mlflow_store}"
        return cls(tuple(dict.fromkeys(trackers)), uri, folder.name)


def check_trackers(trackers: list[str] | None, tracking_uri: str | None) -> None:
    """Refuse, in one line and before any work, a tracker whose library is missing or whose
    server cannot be reached."""
    for tracker in trackers or []:
        try:
            __import__(tracker)
        except ImportError as error:
            raise UserError(f"--track {tracker} needs the {tracker} package: {INSTALL}") from error
    if "mlflow" in (trackers or []):
        check_mlflow(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    if "wandb" in (trackers or []) and os.environ.get("WANDB_MODE", "online") not in ("offline", "disabled", "dryrun"):
        base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        if not reachable(base):
            raise UserError(f"W&B at {base} cannot be reached; set WANDB_MODE=offline to log locally "
                            "(and `wandb sync` later), or check the network.")


def reachable(url: str, timeout: float = 5.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_mlflow(uri: str | None) -> None:
    """A server URI must answer; a database URI must open. None: the run folder's store, made later."""
    if not uri:
        return
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https") and not reachable(uri):
        raise UserError(f"The MLflow tracking server {uri} cannot be reached. Start it, fix --tracking-uri, "
                        "or leave it out to track into the run folder.")
    if scheme in ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks"):
        import mlflow

        try:
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
        except Exception as error:  # MLflow raises its own, SQLAlchemy's and requests' errors
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"MLflow at {uri} cannot be used ({type(error).__name__}: {reason[:200]}).") from error


def wandb_settings(folder: RunFolder) -> dict:
    """wandb.init's project and dir: WANDB_PROJECT (else ours), the run folder unless WANDB_DIR says."""
    local = {} if os.environ.get("WANDB_DIR") or storage.is_uri(folder.path) else {"dir": folder.path}
    return {"project": os.environ.get("WANDB_PROJECT", "review-qlora-search"), **local}


def tags(state, folder: RunFolder) -> dict[str, str]:
    return {"preset": state.preset, "split_hash": state.fixed.split_hash, "run_folder": folder.path,
            "protocol": state.protocol}


def callbacks(tracking: "Tracking | None", state, folder: RunFolder) -> list:
    """Ray Tune callbacks that log every trial live (none without --track)."""
    if tracking is None:
        return []
    found = []
    if "mlflow" in tracking.trackers:
        mlflow_experiment(tracking)  # before Ray's callback would make it with artifacts in the working folder
        found.append(trial_runs_callback()(tracking_uri=tracking.mlflow_uri, experiment_name=tracking.experiment,
                                           tags=tags(state, folder)))
    if "wandb" in tracking.trackers:
        from ray.air.integrations.wandb import WandbLoggerCallback

        found.append(WandbLoggerCallback(group=tracking.experiment, resume="allow", tags=[state.preset],
                                         **wandb_settings(folder)))
    return found


def trial_runs_callback():
    """MLflowLoggerCallback that finds a trial's run again by its trial_id tag (a resumed or extended
    search appends to it) and logs each report at its report point."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class TrialRuns(MLflowLoggerCallback):
        def log_trial_start(self, trial):
            if trial not in self._trial_runs:
                run_id = find_run(self.tracking_uri, self.experiment_name, trial.trial_id)
                if run_id is not None:  # params were logged when it started
                    self._trial_runs[trial] = run_id
                    return
            super().log_trial_start(trial)
            run_id = self._trial_runs[trial]
            import mlflow

            client = mlflow.MlflowClient(self.tracking_uri)
            client.set_tag(run_id, "trial_id", trial.trial_id)
            client.set_tag(run_id, "method", str(trial.config.get("method", "")))
            client.set_tag(run_id, "kind", "trial")

        def log_trial_result(self, iteration, trial, result):
            if trial not in self._trial_runs:
                self.log_trial_start(trial)
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=result,
                                         step=int(result.get(POINT, iteration)))

    return TrialRuns


def mlflow_experiment(tracking: Tracking) -> str:
    """The experiment's id, made if new. With a SQLite or file store its artifacts (the leaderboard)
    go beside the store, not into the working folder's mlruns/ (MLflow's default there)."""
    import mlflow

    client = mlflow.MlflowClient(tracking.mlflow_uri)
    found = client.get_experiment_by_name(tracking.experiment)
    if found is not None:
        return found.experiment_id
    parsed = urlparse(tracking.mlflow_uri)
    location = None
    if parsed.scheme == "sqlite":
        location = (Path(tracking.mlflow_uri[len("sqlite:///"):]).parent / "mlflow-artifacts").as_uri()
    elif parsed.scheme in ("", "file"):
        location = (Path(parsed.path) / "artifacts").resolve().as_uri()
    return client.create_experiment(tracking.experiment, artifact_location=location)


def find_run(uri: str, experiment: str, trial_id: str) -> str | None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.trial_id = '{trial_id}'", max_results=1)
    return runs[0].info.run_id if runs else None


def finish(tracking: "Tracking | None", state, folder: RunFolder, records: list[dict]) -> None:
    """At the search's end: every record into its tracked run, and the search's own run."""
    if tracking is None:
        return
    if "mlflow" in tracking.trackers:
        mlflow_finish(tracking, state, folder, records)
    if "wandb" in tracking.trackers:
        wandb_finish(tracking, state, folder, records)
    print(f"Tracked in {', '.join(tracking.trackers)}"
          + (f" (MLflow {tracking.mlflow_uri}, experiment {tracking.experiment})" if tracking.mlflow_uri else "") + ".")


def record_params(record: dict) -> dict[str, str]:
    params = {key: str(value) for key, value in record.get("params", {}).items()}
    params.update({f"config/{key}": str(value) for key, value in (record.get("config") or {}).items()})
    return params


def mlflow_finish(tracking: Tracking, state, folder: RunFolder, records: list[dict]) -> None:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(tracking.mlflow_uri)
    experiment_id = mlflow_experiment(tracking)
    common = tags(state, folder)
    for record in records:
        trial_id = str(record.get("trial_id"))
        run_id = find_run(tracking.mlflow_uri, tracking.experiment, trial_id)
        if run_id is None:  # a baseline, or a trial no live callback saw
            run_id = client.create_run(experiment_id, run_name=trial_id).info.run_id
        # the record's own names (Tune's config spells a searched setting method/name); a param
        # already logged keeps its value (MLflow refuses to change one)
        known = client.get_run(run_id).data.params
        client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in record_params(record).items() if k not in known])
        points = [(history_point(p), p["val"]) for p in record.get("history") or []]
        if not points and "val" in record:  # a baseline: one point
            points = [(0, record["val"])]
        logged: dict[str, set[int]] = {}
        metrics = []
        for step, val in points:
            for key in TEST_KEYS:
                name = f"val_{key}"
                if key not in val:
                    continue
                if name not in logged:  # what the live callback (or an earlier end) logged already
                    logged[name] = {m.step for m in client.get_metric_history(run_id, name)}
                if step not in logged[name]:
                    metrics.append(Metric(name, float(val[key]), 0, step))
        if "test" in record:
            metrics += [Metric(f"test_{k}", float(record["test"][k]), 0, 0) for k in TEST_KEYS if k in record["test"]]
        run_tags = {**common, "trial_id": trial_id, "method": record["method"],
                    "kind": "trial" if is_fine_tune(record) else "baseline", "status": record.get("status", "ok")}
        for start in range(0, len(metrics), 900):  # MLflow's batch limit is 1,000 metrics
            client.log_batch(run_id, metrics=metrics[start:start + 900])
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in run_tags.items()])
        client.set_terminated(run_id, "FAILED" if record.get("status") == "failed" else "FINISHED")
    search_id = find_run(tracking.mlflow_uri, tracking.experiment, SEARCH_RUN)
    if search_id is None:
        search_id = client.create_run(experiment_id, run_name=f"{tracking.experiment} (search)").info.run_id
        client.log_batch(search_id, params=[Param(k, str(v)[:6000]) for k, v in state.to_json().items()
                                            if k not in ("base", "finished", "extensions", "extend_samples")])
    client.log_batch(search_id, tags=[RunTag(k, str(v)) for k, v in {**common, "trial_id": SEARCH_RUN,
                                                                      "kind": "search"}.items()])
    if storage.is_uri(folder.leaderboard):  # artifacts are uploaded from local files: name where they are
        client.set_tag(search_id, "leaderboard", folder.leaderboard)
    else:
        client.log_artifacts(search_id, folder.leaderboard, artifact_path="leaderboard")
    client.set_terminated(search_id, "FINISHED")


def wandb_finish(tracking: Tracking, state, folder: RunFolder, records: list[dict]) -> None:
    """Baselines (a run each, id = baseline id) and the search's run with the leaderboard as an
    artifact; fine-tunes' test metrics into their own runs' summaries (id = trial id)."""
    import wandb

    options = wandb_settings(folder)
    for record in records:
        trial_id = str(record.get("trial_id"))
        run = wandb.init(id=trial_id, name=trial_id, group=tracking.experiment, resume="allow",
                         config=record_params(record), tags=[state.preset, record["method"]], reinit="create_new",
                         **options)
        if not is_fine_tune(record) and "val" in record:
            run.log({f"val_{k}": record["val"][k] for k in TEST_KEYS if k in record["val"]})
        for key in TEST_KEYS:
            if key in record.get("test", {}):
                run.summary[f"test_{key}"] = record["test"][key]
        run.summary.update({"method": record["method"], "split_hash": record.get("split_hash"),
                            "run_folder": folder.path})
        run.finish(exit_code=1 if record.get("status") == "failed" else 0)
    run = wandb.init(id=f"{tracking.experiment}-search"[-64:], name=f"{tracking.experiment} (search)",
                     group=tracking.experiment, resume="allow", config=state.to_json(), tags=[state.preset, "search"],
                     reinit="create_new", **options)
    if storage.is_uri(folder.leaderboard):
        run.summary["leaderboard"] = folder.leaderboard
    else:
        artifact = wandb.Artifact(f"leaderboard-{tracking.experiment}"[:128].replace("/", "-"), type="leaderboard")
        artifact.add_dir(folder.leaderboard)
        run.log_artifact(artifact)
    run.finish()
