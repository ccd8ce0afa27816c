"""A search's lifecycle in its run folder: start a new one (check, prepare the data, write
run.json), resume an unfinished one, or extend a finished one; run it; then settle the records
and write the leaderboard. The command line (tune/search.py) calls `run_search`.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

from core import storage
from core.data import HUB_PREFIX, held_out_part, protocol_name
from core.errors import UserError
from core.metrics import DEFAULT_METRIC
from core.record import is_fine_tune, load_records
from core.run_folder import RunFolder
from search_spaces import load_preset
from tune.interrupt import Interruption
from tune.profiles import get_profile
from tune.ray_setup import check_shared_storage, check_storage_reachable, ray_gpus, start_ray
from tune.run_state import RunState
from tune.space import check_space
from tune.tracking import Tracking, check_trackers
from tune.tracking import callbacks as tracking_callbacks
from tune.tracking import finish as finish_tracking
from tune.tuner import Console, new_searcher, new_tuner, trainable

DEFAULT_SEED = 42  # --seed's default: the searcher's and training's seed

class SearchInterrupted(Exception):
    """Tuner.fit() returned because of a signal, not because the search ended."""


def resume_hint(args: argparse.Namespace) -> str:
    if not args.name:
        return "The search had not started; nothing to resume."
    return ("The search is unfinished; resume it with: "
            f"python -m tune.search {args.preset} --storage {args.storage} --name {args.name}")


def run_search(args: argparse.Namespace, interruption: Interruption) -> str:
    """Start, resume or extend the search in STORAGE/NAME, then print and write the leaderboard."""
    # Imported here, not at the top: `--help` and a refused flag answer without loading Ray's
    # trainer or the model stack (several seconds on one core).
    from tune.baseline_tasks import baseline_configs, finish_baselines, launch_baselines
    from tune.settle import record_failures, settle_trial_records

    preset = load_preset(args.preset)  # flags out of range: refused before this (tune/search.check_flags)
    check_trackers(args.track, args.tracking_uri)  # before the run folder or the data is touched
    state, folder = open_search(args, preset)
    tracking = Tracking.of(state.track, state.tracking_uri, folder)
    start_ray(args.address, folder, args.verbose)
    interruption.install()  # again: ray.init replaced the SIGTERM handler
    pending = launch_baselines(baseline_configs(state, preset), folder, state, preset)

    budget = state.set_time_budget(args.time_budget)
    started = time.monotonic()
    console = Console(args.verbose, state.planned_trials, state.metric, folder, budget)
    tuner, restoring = tuner_for(state, preset, folder, args.retry_errored, budget, console,
                                 tracking_callbacks(tracking, state, folder))
    if restoring and args.time_budget is not None and budget:
        interruption.stop_after(budget)  # Ray's restored tuner keeps the budget it started with
    with interruption.fitting():
        results = tuner.fit()
    record_failures(results, folder)
    settle_trial_records(folder)
    if interruption.interrupted:  # Tune saved its state and returned: the search is not over
        raise SearchInterrupted(
            f"Interrupted by {interruption.name}: {results.num_terminated} of {state.planned_trials} trials "
            f"finished{f', {results.num_errors} errored' if results.num_errors else ''}; the state is saved. "
            + resume_hint(args))
    if budget and (interruption.deadline_reached or time.monotonic() - started >= budget):
        print(f"\nTime budget of {budget / 60:g} minutes reached: {len(results)} of {state.planned_trials} trials "
              "ran (those cut short keep their record at their last scored point). Add trials with: "
              f"python -m tune.search {args.preset} --storage {args.storage} --name {folder.name} --extend K")
    finish_baselines(pending, folder)
    state.finished = True
    state.write(folder)
    finish_search(folder, state.metric)
    finish_tracking(tracking, state, folder, load_records(folder.path))
    return folder.path


def open_search(args: argparse.Namespace, preset) -> tuple[RunState, RunFolder]:
    """Lock the run folder and read its state, or prepare a new search in it; on a resume or
    --extend, check that the flags agree with the search. Returns the state as written to run.json."""
    if (args.resume or args.extend) and not args.name:
        raise UserError("Name the search to resume or extend with --name.")
    if args.trials_per_gpu < 1:
        raise UserError("--trials-per-gpu takes the number of trials to pack on one GPU, 1 or more.")
    folder = RunFolder.inside(args.storage, args.name) if args.name else None
    storage_root = storage.absolute(args.storage)
    check_storage_reachable(storage_root)
    if folder:
        folder.lock()  # before anything reads or writes it; a second search on it exits 2 here
    if args.address:  # connect first: a new search reads the cluster's GPUs
        start_ray(args.address, folder, args.verbose)
    state = RunState.read(folder) if folder else None
    if state is None:
        if args.resume or args.extend:
            raise UserError(f"No search in {folder} to resume or extend. "
                            "Start one with --data, or check --storage and --name.")
        state, folder = prepare_new_search(args, preset, storage_root)
        args.name = folder.name  # a generated name, for the resume hint
    else:
        check_resume(args, state, folder)
        state.moved_to(folder)  # it may have been copied to another machine, or out of a bucket
        if args.address:
            check_shared_storage(folder)
    if args.extend:
        state.extend(args.extend)
    if args.track:  # a resume or --extend may start tracking, or track in more places
        state.track = list(dict.fromkeys([*state.track, *args.track]))
        state.tracking_uri = args.tracking_uri or state.tracking_uri
    state.write(folder)
    return state, folder


def check_resume(args: argparse.Namespace, state: RunState, folder: RunFolder) -> None:
    """Refuse a resume or --extend that the search in `folder` cannot take, in one line."""
    if state.preset != args.preset:
        raise UserError(f"{folder} holds a '{state.preset}' search, not '{args.preset}'.")
    if state.finished and not args.extend:
        raise UserError(f"{folder} holds a finished search. Add trials with --extend K, "
                        "or start a new one with another --name.")
    if not state.finished and args.extend:
        raise UserError(f"The search in {folder} is unfinished: resume it first (same command "
                        "without --extend), then extend it.")
    conflicts = resume_conflicts(args, state)
    if conflicts:
        raise UserError(f"{folder} holds a search started with other settings: {'; '.join(conflicts)}. "
                        "Resume or extend it with the same flags (or leave them out), or start a new "
                        "search with another --name.")


def finish_search(folder: RunFolder, metric: str) -> None:
    """Tell the Optuna study how every trial ended, then print and write the leaderboard."""
    from results.leaderboard import format_table, write_leaderboard
    from tune.searcher import settle_study

    records = load_records(folder.path)
    settle_study(folder, [r for r in records if is_fine_tune(r)], metric)
    print(f"\nTrials ranked by validation {metric} within each method (test is reported, never used to choose):")
    print(format_table(records, metric))
    print(f"Leaderboard with plots: {write_leaderboard(folder.path, records, metric)}/index.html")


def tuner_for(state: RunState, preset, folder: RunFolder, retry_errored: bool, budget: float | None,
              console: Console, callbacks: list):
    """The Tuner of the run's current experiment: restored from its folder when Ray saved one
    there, else new (the first search, or an extension that had not saved its first state); and
    whether it was restored."""
    from ray import tune

    experiment = folder.experiment(state.experiment)
    if tune.Tuner.can_restore(experiment):
        print(f"Resuming the unfinished search in {experiment}: finished trials "
              "stay, unfinished ones continue from their last epoch checkpoint.")
        # param_space: trials not yet created read the data where the run folder is now
        # Its console is the one it was started with (Ray restores the RunConfig it pickled).
        return tune.Tuner.restore(experiment, trainable=trainable(), param_space=state.param_space(),
                                  resume_unfinished=True, restart_errored=retry_errored), True
    where = storage.parent(experiment), storage.name(experiment)
    if not state.extensions:
        searcher = new_searcher(preset, state, preset.SEEDS, folder)
        return new_tuner(searcher, state, *where, budget, console, callbacks), False
    searcher = new_searcher(preset, state, [], folder)
    added = searcher.add_finished([r for r in load_records(folder.path) if is_fine_tune(r)], state.metric)
    print(f"Extending {folder} by {state.extend_samples} trials ({state.experiment}/), the searcher "
          f"warm-started from every finished trial ({added}).")
    return new_tuner(searcher, state, *where, budget, console, callbacks), False


def prepare_new_search(args: argparse.Namespace, preset, storage_root: str) -> tuple[RunState, RunFolder]:
    """Check everything a user can get wrong, then prepare the data. Returns the run's state and folder."""
    import torch

    from tune.baseline_tasks import baseline_configs

    if not args.data:
        raise UserError("Pass the dataset with --data PATH (CSV, CSV.GZ, TSV, Parquet or JSONL, a datasets "
                        "folder, or hf:OWNER/NAME).")
    has_gpu = ray_gpus() > 0 if args.address else torch.cuda.is_available()  # the cluster's, if any
    profile = get_profile(args.profile or ("full" if has_gpu else "cpu"))
    if args.name:
        folder = RunFolder.inside(storage_root, args.name)  # locked by open_search
    else:
        folder = RunFolder.inside(storage_root, default_name(args.preset, profile.name))
        folder.lock()
    seed = DEFAULT_SEED if args.seed is None else args.seed
    metric = args.metric or DEFAULT_METRIC
    model = args.model or preset.MODEL
    base = trial_base(args, preset, profile, has_gpu, folder, model=model, seed=seed, metric=metric)
    check_space(preset.SPACE, base, preset.SEEDS)
    if args.address:  # before anything is written
        check_shared_storage(folder)
    base, data, pad_id, loading = prepare_model_and_data(args, preset, profile, model, base, folder)
    state = RunState(
        run_dir=folder.path, preset=args.preset, profile=profile.name, data=data_location(args.data),
        labels=data.label_mapping, protocol=data.protocol, group_col=data.group_col,
        loading=loading,  # trials record what their own machine changed ("loading_overrides")
        base=base, pad_id=pad_id, baselines=args.baselines or profile.baselines,
        num_samples=args.num_samples or profile.num_samples, tpe_startup_trials=profile.tpe_startup_trials,
        max_concurrent=args.max_concurrent, seed=seed, metric=metric, track=list(dict.fromkeys(args.track or [])),
        tracking_uri=args.tracking_uri,
        time_budget_s=None if profile.time_budget_minutes is None else 60 * profile.time_budget_minutes,
        experiment=RunFolder.experiment_name(0))
    baseline_configs(state, preset)  # refuse bad grids before starting
    return state, folder


def trial_base(args: argparse.Namespace, preset, profile, has_gpu: bool, folder: RunFolder, *, model: str,
               seed: int, metric: str) -> dict:
    """The trials' fixed settings (FineTuneConfig fields) from the flags, the profile and the preset."""
    cpus = args.cpus_per_trial or profile.cpus_per_trial
    return {
        "preset": args.preset,
        "model": model,
        "trust_remote_code": preset.TRUST_REMOTE_CODE,
        "seed": seed,
        "selection_metric": metric,
        "epochs": profile.epochs,
        **profile.fidelity,
        "use_gpu": has_gpu,
        "gpu_memory_gb": args.gpu_memory_gb,
        "cpu_memory_gb": args.cpu_memory_gb or memory_share_gb(cpus),
        "gpu_fraction": 1 / args.trials_per_gpu,
        "cpus_per_worker": cpus,
        "run_dir": folder.path,
        **preset.DEFAULTS,
    }


def prepare_model_and_data(args: argparse.Namespace, preset, profile, model: str, base: dict, folder: RunFolder):
    """Pin the model's revision, load its tokenizer, prepare the data; print what was found.
    Returns (base with the revision and the prepared data's settings, the data, pad id, loading)."""
    from trainables.model import describe_overrides, load_tokenizer, model_revision
    from tune.prepare import prepare_data

    revision = model_revision(model, preset.TRUST_REMOTE_CODE)
    print(f"Preset {args.preset}: model {model}{f' at revision {revision}' if revision else ''}; "
          f"{profile.describe()}.")
    loading = describe_overrides(args.preset)
    if loading:
        print(f"Model loading: {loading}.")
    tokenizer = load_tokenizer(model, preset.TRUST_REMOTE_CODE, revision)
    test_groups = [g.strip() for g in args.test_groups.split(",") if g.strip()] if args.test_groups else None
    data = prepare_data(args.data, profile, tokenizer, model, folder.path, text_col=args.text_col,
                        label_col=args.label_col, fake_label=args.fake_label, group_col=args.group_col,
                        test_groups=test_groups, data_split=args.data_split)
    print(f"Data {', '.join(args.data)}: {data.cleaning}; {data.protocol}, split {data.rows} (hash {data.split_hash}); "
          f"max length {data.max_length} tokens truncates {data.truncated} reviews.")
    if data.group_col:
        print(f"Groups ('{data.group_col}'), test reviews each: "
              + ", ".join(f"{g} {n}" for g, n in data.groups.items()) + ".")
    base = {**base, "model_revision": revision, "tokens_file": data.tokens_file, "split_hash": data.split_hash,
            "max_length": data.max_length}
    return base, data, tokenizer.pad_token_id or 0, loading


def default_name(preset: str, profile: str) -> str:
    """PRESET-PROFILE-TIME-XXXX: the time, and a random suffix so that jobs started in the same
    second never share a folder."""
    return f"{preset}-{profile}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def data_location(data: list[str]) -> str | list[str]:
    """--data as run.json keeps it: a hub id as given, a path made absolute; one source as a string
    (as before several were allowed), several as a list."""
    located = [path if path.startswith(HUB_PREFIX) else str(Path(path).resolve()) for path in data]
    return located[0] if len(located) == 1 else located


def resume_conflicts(args: argparse.Namespace, state: RunState) -> list[str]:
    """The flags of a resume or --extend that disagree with the search in the run folder, which
    continues as it was started: each as 'FLAG VALUE (the run has KEPT)'. A flag left out agrees."""
    given = {"--data": data_location(args.data) if args.data else None, "--profile": args.profile,
             "--model": args.model, "--seed": args.seed, "--metric": args.metric, "--baselines": args.baselines,
             "--test-groups": protocol_name([g.strip() for g in args.test_groups.split(",") if g.strip()])
             if args.test_groups else None,
             "--num-samples": None if args.extend else args.num_samples}
    kept = {"--data": state.data, "--profile": state.profile, "--model": state.fixed.model,
            "--seed": state.seed, "--metric": state.metric, "--baselines": state.baselines,
            "--test-groups": held_out_part(state.protocol), "--num-samples": state.num_samples}
    return [f"{flag} {value} (the run has {kept[flag]})" for flag, value in given.items()
            if value is not None and value != kept[flag]]


def memory_share_gb(cpus_per_trial: int) -> float:
    """A CPU trial's default memory budget: 80 % of this machine's memory, shared by the trials its
    cores run at once (a cluster's nodes: pass --cpu-memory-gb)."""
    total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return round(0.8 * total_gb / max(1, (os.cpu_count() or 1) // cpus_per_trial), 2)
