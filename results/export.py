"""Export a run's best fine-tune (by the run's validation selection metric), or any trial or
baseline with --trial, as a self-contained bundle.

    python -m results.export RUN_DIR --out DIR [--trial ID | --ensemble] [--merge] [--max-fpr RATE]

RUN_DIR is a run folder, or its s3:// or gs:// URI; the bundle is written to the local folder DIR.

Fine-tunes (qlora, lora): the LoRA adapter and trained head as peft's own safetensors files
(adapter/, loadable with plain peft on the base model), the tokenizer, bundle.json (label map,
base model, quantization, training config, metrics) and a model card. `--merge` also writes the
adapter merged into a bf16 copy of the base (merged/). Full fine-tunes save the whole model
(model/). Baselines save their fitted model with joblib (a pickle: load only bundles you trust).
`--ensemble`: the run's ensemble (results/ensemble.py), each member's bundle under members/ and
their weights in bundle.json. `--max-fpr 0.02`: the decision threshold chosen on validation so that
at most 2 % of real reviews are called fake (core/operating_point.py), written into bundle.json with
the validation rates it gives; predict and evaluate use it (0.5 without).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from core import storage
from core.errors import UserError
from core.metrics import DEFAULT_METRIC, selection_score
from core.operating_point import flagged_rates, threshold_for_max_fpr
from core.record import is_fine_tune, load_records
from core.run_folder import BASELINE_MODEL_FILE, CHECKPOINT_WEIGHTS, RunFolder
from results.ensemble import build_ensemble
from results.leaderboard import ci_text, leaderboard_rows, rank, run_metric, scored

# The model stack (transformers, peft, safetensors) is imported only by the bundle kind that needs it:
# a baseline exports, and `--help` answers, without it.

BUNDLE_FILE = "bundle.json"
ENSEMBLE_MEMBERS = "members"  # an ensemble bundle's folder of member bundles


def choose_record(records: list[dict], trial: str | None, metric: str = DEFAULT_METRIC) -> tuple[dict, str]:
    """(the record to export, why it was chosen). Default: the fine-tune with the best validation
    score (constant predictors last), whatever a baseline scored."""
    if trial is None:
        fine_tunes = [r for r in scored(records) if is_fine_tune(r)]
        if not fine_tunes:
            raise UserError("No fine-tuning trial reached its first report point, so there is no adapter to export. "
                            "Export a baseline with --trial ID: "
                            f"{', '.join(sorted(str(r.get('trial_id')) for r in scored(records)))}.")
        best = rank(fine_tunes, metric)[0]
        return best, (f"the best fine-tune by validation {metric} "
                      f"({100 * selection_score(best['val'], metric):.2f}); --trial ID exports any other, "
                      "baselines included")
    for record in records:
        if record.get("trial_id") == trial:
            if "val" not in record:
                raise UserError(f"Trial '{trial}' failed before its first report point ({record.get('error')}); "
                                "there is nothing to export.")
            return record, "chosen with --trial"
    raise UserError(f"No trial '{trial}' in this run. Trials: "
                    f"{', '.join(sorted(str(r.get('trial_id')) for r in records))}.")


def export(run_dir: str, out: str | Path, trial: str | None = None, merge: bool = False,
           trust_remote_code: bool = False, ensemble: bool = False, max_fpr: float | None = None) -> Path:
    """Write the bundle of one record (the best fine-tune, or --trial), or with `ensemble` the
    run's ensemble (results/ensemble.py) with a bundle per member, into the new folder `out`.
    `max_fpr`: bundle.json's operating point (operating_point)."""
    folder = RunFolder.at(run_dir)
    records = load_records(folder.path)
    metric = run_metric(folder.path)
    if ensemble:
        chosen = build_ensemble(records, metric)
        if chosen is None:
            raise UserError("This run has fewer than two models with validation predictions (records from "
                            "before ensembles keep none), so it has no ensemble. Export one model instead.")
        members = [(next(r for r in records if str(r["trial_id"]) == member), "a member of the ensemble")
                   for member in chosen.members]
    else:
        members = [choose_record(records, trial, metric)]
    weights = chosen.weights if ensemble else [1.0]
    point = None if max_fpr is None else operating_point([(r, w) for (r, _), w in zip(members, weights)], max_fpr)
    for record, _ in members:
        if needs_remote_code(record) and not trust_remote_code:
            raise UserError(f"Trial {record['trial_id']}'s model {record['model']} runs code from its model "
                            "repository. If you trust it, pass --trust-remote-code.")
    final = Path(out)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        what = "is not empty" if final.is_dir() else "is a file"
        raise UserError(f"--out {final} exists and {what}; choose a new --out folder.")
    if not final.parent.is_dir():
        raise UserError(f"--out {final}: the folder {final.parent} does not exist; create it or choose another.")
    partial = final.with_name(final.name + ".partial")  # renamed into place only when complete
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rows = leaderboard_rows(records, metric)  # the model cards' figures, once for every member
    try:
        if ensemble:
            write_ensemble_bundle(folder, chosen, members, rows, records[0]["split_hash"], partial, merge)
        else:
            write_bundle(folder, *members[0], rows, partial, merge)
        if point is not None:
            bundle = json.loads((partial / BUNDLE_FILE).read_text())
            (partial / BUNDLE_FILE).write_text(json.dumps({**bundle, **point}, indent=1))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        final.rmdir()  # empty: checked above
    partial.rename(final)
    return final


def operating_point(weighted: list[tuple[dict, float]], max_fpr: float) -> dict:
    """bundle.json's `threshold` and `operating_point` (the validation rates at it) for the model
    that averages these records' validation probabilities with these weights (one record: weight 1)."""
    if any(not record.get("val_prob_real") for record, _ in weighted):
        raise UserError("--max-fpr chooses the threshold on validation probabilities, which records written "
                        "before ensembles do not keep; export without --max-fpr, or rerun the search.")
    labels = weighted[0][0]["val_labels"]
    prob_real = sum(weight * np.asarray(record["val_prob_real"], dtype=float) for record, weight in weighted)
    try:
        threshold = threshold_for_max_fpr(labels, prob_real, max_fpr)
    except ValueError as error:
        raise UserError(f"--max-fpr {max_fpr}: {error}.") from error
    rates = flagged_rates(labels, prob_real, threshold)
    return {"threshold": threshold,
            "operating_point": {"max_fpr": max_fpr, "chosen_on": "validation", **rates}}


def write_bundle(folder: RunFolder, record: dict, reason: str, rows: list[dict], out: Path, merge: bool) -> dict:
    """One record's bundle in `out`: its model files, bundle.json and a model card (from its
    leaderboard row among `rows`)."""
    if is_fine_tune(record):
        bundle = export_fine_tune(folder, record, out, merge)
    else:
        bundle = export_baseline(record, out)
    bundle.update({
        "method": record["method"],
        "preset": record["preset"],
        "trial_id": record.get("trial_id"),
        "label_map": {"0": "fake", "1": "real"},
        "metrics": {"val": record["val"], "test": record["test"]},
        "split_hash": record["split_hash"],
        "exported_from": folder.path,
        "chosen": reason,
    })
    (out / BUNDLE_FILE).write_text(json.dumps(bundle, indent=1))
    row = next(r for r in rows if r["record_path"] == record["record_path"])
    (out / "README.md").write_text(model_card(bundle, row))
    return bundle


def write_ensemble_bundle(folder: RunFolder, ensemble, members: list[tuple[dict, str]], rows: list[dict],
                          split_hash: str, out: Path, merge: bool) -> None:
    """members/<trial id>/ holds each member's bundle as a single export writes it; bundle.json
    names them with their weights. Predict averages their probabilities of real with those weights."""
    for record, reason in members:
        member = out / ENSEMBLE_MEMBERS / str(record["trial_id"])
        member.mkdir(parents=True)
        write_bundle(folder, record, reason, rows, member, merge)
    bundle = {
        "kind": "ensemble", "method": "ensemble",
        "members": [{"folder": member, "weight": weight} for member, weight in zip(ensemble.members, ensemble.weights)],
        "label_map": {"0": "fake", "1": "real"},
        "metrics": {"val": ensemble.val, "test": ensemble.test},
        "split_hash": split_hash, "exported_from": folder.path,
        "chosen": (f"greedy selection over validation probabilities ({ensemble.rounds} rounds) by "
                   f"validation {ensemble.metric}: {100 * ensemble.val_score:.2f} against "
                   f"{100 * ensemble.best_member_val_score:.2f} for its best member {ensemble.best_member}"),
    }
    (out / BUNDLE_FILE).write_text(json.dumps(bundle, indent=1))
    lines = "\n".join(f"| {m['folder']} | {m['weight']:.2f} |" for m in bundle["members"])
    (out / "README.md").write_text(
        f"# Review classifier: an ensemble of {len(members)} models\n\nLabels: 0 = fake, 1 = real. Exported "
        f"from {folder.path} (split hash {bundle['split_hash']}); {bundle['chosen']}. Test: "
        f"F1 {100 * ensemble.test['f1']:.2f}, macro-F1 {100 * ensemble.test['macro_f1']:.2f}.\n\n"
        f"| member (members/) | weight |\n|---|---:|\n{lines}\n\nEvery member runs at predict time:\n\n"
        "    python -m results.predict {this folder} reviews.csv --out predictions.csv\n")


def export_fine_tune(folder: RunFolder, record: dict, out: Path, merge: bool) -> dict:
    from safetensors.torch import load

    from trainables.config import FineTuneConfig
    from trainables.model import (
        build_classifier,
        load_tokenizer,
        load_trainable_state_dict,
        resolve_model_path,
    )

    config = FineTuneConfig.from_dict(record["config"])  # trust_remote_code: checked by export()
    # The trial's Train run in the run folder where it is now, not where the search wrote it: a
    # run folder copied out of a bucket or off a cluster's shared disk exports from the copy.
    train_run = storage.name(record["train_run_dir"])
    checkpoint = folder.latest_checkpoint(train_run)
    if checkpoint is None:
        raise UserError(f"No checkpoint under {folder.train_run(train_run)}; the trial never reached its first report point.")
    model = build_classifier(config, torch.device("cpu"))
    load_trainable_state_dict(model, load(storage.read_bytes(storage.join(checkpoint, CHECKPOINT_WEIGHTS))))
    load_tokenizer(config.model, config.trust_remote_code, config.model_revision).save_pretrained(out / "tokenizer")
    if config.method == "full":
        model.save_pretrained(out / "model")
        kind = "full"
    else:
        model.save_pretrained(out / "adapter")
        kind = "adapter"
        if merge:
            write_merged(config, out)
    return {
        "kind": kind,
        "base_model": config.model,
        "base_model_path": resolve_model_path(config.model),
        "base_model_revision": config.model_revision,  # what training loaded; predict loads it too
        "trust_remote_code": config.trust_remote_code,
        "quantization": {"method": "bitsandbytes", "quant_type": "nf4", "double_quant": True,
                         # as trained: trainables/quantize.nf4_config computes in float32 on a CPU
                         "compute_dtype": "float32" if record.get("device") == "cpu" else "bfloat16",
                         } if config.quantize else None,
        "max_length": config.max_length,
        "config": config.to_dict(),
    }


def write_merged(config, out: Path) -> None:
    """The adapter folded into a bf16 copy of the (unquantized) base."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainables.model import loading_overrides, resolve_model_path

    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(config.model), num_labels=2, trust_remote_code=config.trust_remote_code,
        revision=config.model_revision, dtype=torch.bfloat16, **loading_overrides(config.preset))
    # A decoder's head pools at the last non-pad token: it needs the pad id training used
    base.config.pad_token_id = AutoTokenizer.from_pretrained(out / "tokenizer").pad_token_id
    merged = PeftModel.from_pretrained(base, out / "adapter").merge_and_unload()
    merged.save_pretrained(out / "merged")
    shutil.copytree(out / "tokenizer", out / "merged", dirs_exist_ok=True)


def needs_remote_code(record: dict) -> bool:
    """Rebuilding this record's model runs code from its model repository (a fine-tune of a remote-
    code model, or an embedding baseline whose backbone is one)."""
    if record["method"].startswith("embed-"):
        from search_spaces import load_preset

        return load_preset(record["preset"]).TRUST_REMOTE_CODE
    return bool(record.get("config", {}).get("trust_remote_code"))


def export_baseline(record: dict, out: Path) -> dict:
    source = storage.join(storage.parent(record["record_path"]), BASELINE_MODEL_FILE)  # beside its record
    if not storage.exists(source):
        raise UserError(f"{source} is missing; rerun the baseline to export it.")
    (out / BASELINE_MODEL_FILE).write_bytes(storage.read_bytes(source))  # the same name in the bundle
    print("warning: baseline bundles hold a joblib pickle; loading one runs code, so results.predict "
          "asks for --trust-pickle. Load only bundles you made or trust.", file=sys.stderr)
    config = record["config"]
    bundle = {"kind": "baseline", "model_file": BASELINE_MODEL_FILE, "config": config}
    if record["method"].startswith("embed-"):
        from search_spaces import load_preset
        from trainables.model import load_tokenizer

        preset = load_preset(record["preset"])
        revision = config.get("model_revision")  # a record from before revisions were kept: None
        load_tokenizer(config["model"], preset.TRUST_REMOTE_CODE, revision).save_pretrained(out / "tokenizer")
        bundle.update(base_model=config["model"], base_model_revision=revision, pooling=preset.POOLING,
                      trust_remote_code=preset.TRUST_REMOTE_CODE,
                      max_length=config["max_length"])
    return bundle


def model_card(bundle: dict, row: dict) -> str:
    return f"""# Review classifier: {bundle['method']} ({bundle.get('base_model', 'tf-idf')})

Labels: 0 = fake (computer-generated), 1 = real (original). Exported from trial {bundle['trial_id']}
of {bundle['exported_from']} (split hash {bundle['split_hash']}).

| validation F1 | test F1 (95% CI) | test accuracy | test ROC AUC |
|---:|---|---:|---:|
| {100 * row['val_f1']:.2f} | {ci_text(row)} | {100 * row['test_accuracy']:.2f} | {row['test_roc_auc']:.4f} |

Settings: {row['settings'] or '-'}. Quantization: {json.dumps(bundle.get('quantization'))}.

Use it:

    python -m results.predict {{this folder}} reviews.csv --out predictions.csv

{"With plain peft: load the base with AutoModelForSequenceClassification (num_labels=2), then PeftModel.from_pretrained(base, 'adapter'). A qlora adapter was trained on a 4-bit base: load the base with the same BitsAndBytesConfig (bundle.json) to reproduce its scores exactly." if bundle['kind'] == 'adapter' else ""}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by python -m tune.search")
    parser.add_argument("--out", required=True, help="new folder for the bundle")
    parser.add_argument("--trial", help="trial or baseline id to export (default: the fine-tune with the best "
                                        "validation score by the run's selection metric)")
    parser.add_argument("--ensemble", action="store_true",
                        help="export the run's ensemble instead (the leaderboard's ensemble row: greedy selection "
                             "on validation over every model of the run), a bundle per member; every member runs "
                             "at predict time")
    parser.add_argument("--merge", action="store_true", help="also write the adapter merged into a bf16 base")
    parser.add_argument("--max-fpr", type=float, metavar="RATE",
                        help="choose the decision threshold on validation so that at most RATE of the real reviews "
                             "are called fake (0.02 = 2 %%), written into bundle.json with the validation rates at "
                             "it; predict and evaluate use it (default: threshold 0.5)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own code to rebuild it (Stella needs it: only models you trust)")
    args = parser.parse_args(argv)
    try:
        if args.ensemble and args.trial:
            raise UserError("--ensemble exports the run's ensemble; --trial exports one model. Pass one of them.")
        if args.max_fpr is not None and not 0 <= args.max_fpr < 1:
            raise UserError(f"--max-fpr {args.max_fpr}: give the share of real reviews that may be flagged, "
                            "from 0 up to (not including) 1, e.g. 0.02.")
        out = export(args.run_dir, args.out, args.trial, args.merge, args.trust_remote_code, args.ensemble,
                     args.max_fpr)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bundle = json.loads((out / BUNDLE_FILE).read_text())
    if bundle["kind"] == "ensemble":
        members = ", ".join(f"{m['folder']} x{m['weight']:.2f}" for m in bundle["members"])
        print(f"Exported the ensemble ({members}; {bundle['chosen']}) to {out}")
    else:
        print(f"Exported trial {bundle['trial_id']} ({bundle['method']}; {bundle['chosen']}) to {out}")
    if "operating_point" in bundle:
        print(operating_point_text(bundle))
    return 0


def operating_point_text(bundle: dict) -> str:
    """The bundle's threshold and what it gave on validation, in one line."""
    point = bundle["operating_point"]
    return (f"Threshold {bundle['threshold']:.4f} (probability of real below it: fake), chosen on validation for at "
            f"most {100 * point['max_fpr']:g} % of real reviews flagged: there it caught "
            f"{100 * point['fake_recall']:.1f} % of {point['n_fake']} fakes and flagged "
            f"{100 * point['real_flagged']:.1f} % of {point['n_real']} real reviews.")


if __name__ == "__main__":
    sys.exit(main())
