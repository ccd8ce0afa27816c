"""Classify reviews with an exported bundle.

    python -m results.predict BUNDLE INPUT [--out FILE] [--text-col NAME] [--trust-pickle] [--trust-remote-code]
    python -m results.predict BUNDLE INPUT --ray [--address ADDR] --out FILE.parquet   # on Ray Data

INPUT: .csv/.csv.gz/.tsv/.parquet/.jsonl with a text column (text_, text, review or --text-col),
or a UTF-8 .txt with one review per line. Writes a CSV with one row per input row or line, in input
order: the text, the predicted label (fake/real) and the probability of real; a row without text
(empty, blank or null) keeps its place with no label and no probability. A review is fake when its
probability of real is below the bundle's threshold (0.5, or the one `results.export --max-fpr` chose).

--ray: Ray Data reads INPUT (also a folder of such files, or a bucket URI), actors that each load the
bundle once score it (one per GPU, else up to one per CPU but one), and the rows come back in input
order into one .parquet or .csv, with `row` (the 0-based position in INPUT; a folder's files in path
order) and `path` (the file) added. The probabilities are the same as without --ray.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError

from core.data import TEXT_COLUMNS, find_column, read_table
from core.errors import DataError, UserError
from core.operating_point import DEFAULT_THRESHOLD
from core.record import ADAPTER_METHODS
from results.export import BUNDLE_FILE, ENSEMBLE_MEMBERS, operating_point_text

# Each bundle kind imports only what it loads (joblib and scikit-learn, or transformers and peft):
# a TF-IDF bundle predicts without the model stack, and `--help` answers at once.


def read_texts(path: str | Path, text_col: str | None = None) -> list[str | None]:
    """The reviews in input order, one per row or line; a row without text is None (its output row
    gets no label). A .txt is UTF-8, one review per line (only \\n and \\r\\n end a line)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"Input file not found: {path}.")
        try:
            content = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8, "
                            "or pass a .csv, .parquet or .jsonl file.") from error
        lines = content.split("\n")
        if lines and lines[-1] == "":  # the newline that ends the last line
            lines.pop()
        texts = [line.removesuffix("\r") for line in lines]
    else:
        frame = read_table(path)
        texts = frame[find_column(frame, text_col, TEXT_COLUMNS, "text")].tolist()
    texts = [review_text(value) for value in texts]
    if not any(texts):
        raise DataError(f"{path} holds no reviews.")
    return texts


def review_text(value) -> str | None:
    """A cell or line as the review it holds; None where there is none (null, NaN, NA, blank)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def labels(prob: np.ndarray, threshold: float) -> np.ndarray:
    """fake below the threshold, real at or above it, "" where there was no text (NaN)."""
    return np.where(np.isnan(prob), "", np.where(prob >= threshold, "real", "fake"))


FINE_TUNE_FILES = {"adapter": ["adapter/adapter_config.json", "tokenizer"], "full": ["model", "tokenizer"]}


def read_bundle(folder: str | Path) -> dict:
    """bundle.json, checked against what results.export writes; anything else is refused before
    a file of the bundle is loaded."""
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not a bundle ({BUNDLE_FILE} missing). "
                        "Make one with: python -m results.export RUN_DIR --out DIR")
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error}). Export it again.") from error
    problems = bundle_problems(bundle)
    if problems:
        raise UserError(f"{path} is not a bundle results.export writes: {'; '.join(problems)}. Export it again.")
    if bundle["kind"] == "ensemble":
        for member in bundle["members"]:
            member["bundle"] = read_member(folder / ENSEMBLE_MEMBERS / member["folder"])
        return bundle
    needed = list(FINE_TUNE_FILES.get(bundle["kind"], [bundle.get("model_file")]))
    if bundle["method"].startswith("embed-"):
        needed.append("tokenizer")
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise UserError(f"Bundle {folder} is incomplete: missing {', '.join(missing)}. Export it again.")
    return bundle


def read_member(folder: Path) -> dict:
    """An ensemble member's bundle, under the same checks as a bundle alone; never an ensemble."""
    if not folder.is_dir():
        raise UserError(f"Ensemble member {folder} is missing. Export the ensemble again.")
    member = read_bundle(folder)
    if member["kind"] == "ensemble":
        raise UserError(f"{folder} is an ensemble inside an ensemble, which results.export never writes.")
    return member


def ensemble_problems(bundle: dict) -> list[str]:
    members = bundle.get("members")
    if not isinstance(members, list) or not members:
        return ["an ensemble without members"]
    problems = []
    for member in members:
        if not isinstance(member, dict) or not is_plain_file_name(member.get("folder")):
            problems.append(f"member {member!r} names no folder inside the bundle")
        elif not isinstance(member.get("weight"), (int, float)) or not 0 < member["weight"] <= 1:
            problems.append(f"member {member['folder']}'s weight is not in (0, 1]")
    return problems


def bundle_problems(bundle) -> list[str]:
    """What makes `bundle` something other than a bundle export writes: a kind and a method that
    agree (the loader follows the kind, and trust is decided from it), and file names that stay in
    the bundle's folder."""
    from trainables.baselines import METHODS as BASELINES

    if not isinstance(bundle, dict):
        return ["it holds no JSON object"]
    kind, method = bundle.get("kind"), bundle.get("method")
    threshold = bundle.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        return [f"threshold {threshold!r} is not a probability in (0, 1]"]
    if kind == "ensemble":
        return ensemble_problems(bundle)
    if kind not in (*FINE_TUNE_FILES, "baseline"):
        return [f"kind {kind!r} is not one of adapter, full, baseline, ensemble"]
    problems = []
    allowed = BASELINES if kind == "baseline" else (("full",) if kind == "full" else ADAPTER_METHODS)
    if method not in allowed:
        problems.append(f"method {method!r} is not a {kind} method ({', '.join(allowed)})")
    if kind == "baseline" and not is_plain_file_name(bundle.get("model_file")):
        problems.append(f"model_file {bundle.get('model_file')!r} is not a file name inside the bundle")
    needs_model = kind != "baseline" or str(method).startswith("embed-")
    if needs_model:
        name, _ = base_model(bundle)
        if not isinstance(name, str) or not name:
            problems.append("it names no base model")
        if not isinstance(bundle.get("max_length"), int) or bundle["max_length"] < 1:
            problems.append("max_length is not a positive integer")
    if kind != "baseline" and not isinstance(bundle.get("config"), dict):
        problems.append("config is missing")
    return problems


def is_plain_file_name(name) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and Path(name).name == name)


def base_model(bundle: dict) -> tuple[str | None, str | None]:
    """The base model the loader loads for this bundle, and the revision it pins: the one place
    that decides it, so the consent message names exactly what runs."""
    if bundle.get("kind") == "baseline":
        return bundle.get("base_model"), bundle.get("base_model_revision")
    config = bundle.get("config") if isinstance(bundle.get("config"), dict) else {}
    return config.get("model"), config.get("model_revision")


def check_trust(bundle: dict, trust_pickle: bool, trust_remote_code: bool) -> None:
    """Code from outside runs only when the command line says so, whatever bundle.json says: a
    baseline bundle is loaded with joblib (a pickle runs code), and a model that needs its
    repository's code gets it only with --trust-remote-code (without it, transformers refuses). An
    ensemble asks for what any of its members needs."""
    if bundle["kind"] == "ensemble":
        for member in bundle["members"]:
            check_trust(member["bundle"], trust_pickle, trust_remote_code)
        return
    if bundle["kind"] == "baseline" and not trust_pickle:
        raise UserError(f"This {bundle['method']} bundle's model is a joblib pickle, and loading a pickle runs "
                        "whatever code it holds. If you trust where this bundle came from, pass --trust-pickle.")
    name, revision = base_model(bundle)
    if bundle.get("trust_remote_code") and not trust_remote_code:
        at = f" at revision {revision}" if revision else ""
        raise UserError(f"The base model {name}{at} runs code from its model repository. If you "
                        "trust it, pass --trust-remote-code.")


def predict_texts(folder: str | Path, texts: list[str | None], progress: bool = True, trust_pickle: bool = False,
                  trust_remote_code: bool = False, bf16: bool = False) -> np.ndarray:
    """Probability of `real` for each text (NaN where a text is None)."""
    score = load_scorer(folder, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code, progress=progress,
                        bf16=bf16)
    return score(texts)


def load_scorer(folder: str | Path, *, trust_pickle: bool = False, trust_remote_code: bool = False,
                progress: bool = True, bf16: bool = False):
    """The bundle in `folder`, checked and loaded once: a function from texts (None for a row without
    text) to the probability of `real` of each (NaN for None). A fine-tune scores in float32, so a
    text's probability does not depend on the texts scored with it (the --ray path's batches are
    not the single-process path's); `bf16`: in bf16 where the trials were (see --bf16)."""
    folder = Path(folder)
    bundle = read_bundle(folder)
    check_trust(bundle, trust_pickle, trust_remote_code)
    with bundle_errors(folder):
        classify = load_classifier(folder, bundle, progress, trust_remote_code, bf16)

    def score(texts: list[str | None]) -> np.ndarray:
        present = [i for i, text in enumerate(texts) if text is not None]
        prob = np.full(len(texts), np.nan)
        if present:
            with bundle_errors(folder):
                prob[present] = classify([texts[i] for i in present])
        return prob

    return score


@contextmanager
def bundle_errors(folder: Path):
    """A bundle whose files were edited or cut short (the tokenizer, weights, adapter config,
    pickle) reported as one line that says to export it again."""
    try:
        yield
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, pickle.UnpicklingError, SafetensorError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"Bundle {folder} could not be loaded ({type(error).__name__}: {reason}). "
                        "Export it again.") from error


def load_classifier(folder: Path, bundle: dict, progress: bool, trust_remote_code: bool, bf16: bool = False):
    """Load what bundle.json's kind says (read_bundle checked it, check_trust allowed it): a function
    from texts to probabilities of real."""
    if bundle["kind"] == "ensemble":  # each member loaded once; every member runs on every text
        members = [(member["weight"], load_classifier(folder / ENSEMBLE_MEMBERS / member["folder"], member["bundle"],
                                                      progress, trust_remote_code, bf16))
                   for member in bundle["members"]]
        return lambda texts: sum(weight * classify(texts) for weight, classify in members)
    if bundle["kind"] == "baseline" and bundle["method"] == "tfidf-logreg":
        import joblib

        from trainables.baselines import predict_real

        model = joblib.load(folder / bundle["model_file"])
        return lambda texts: predict_real(bundle["method"], model, texts)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    pad_id = tokenizer.pad_token_id or 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def token_ids(texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(x, dtype=np.int64) for x in
                tokenizer(texts, truncation=True, max_length=bundle["max_length"])["input_ids"]]

    model_name, revision = base_model(bundle)
    if bundle["kind"] == "baseline":
        import joblib

        from trainables.baselines import predict_real
        from trainables.embeddings import embed, load_backbone
        from trainables.model import loading_overrides

        backbone = load_backbone(model_name, bundle["pooling"], trust_remote_code, device,
                                 loading_overrides(bundle["preset"]), revision=revision)
        model = joblib.load(folder / bundle["model_file"])
        return lambda texts: predict_real(bundle["method"], model, embed(backbone, token_ids(texts), pad_id, device))

    from trainables.config import FineTuneConfig
    from trainables.model import load_base
    from trainables.training import predict

    config = FineTuneConfig.from_dict({**bundle["config"], "model": model_name, "model_revision": revision,
                                       "trust_remote_code": trust_remote_code})
    if bundle["kind"] == "full":
        model = load_base(config, device, path=str(folder / "model"))
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(config, device), folder / "adapter")
    model = model.to(device)

    def classify(texts: list[str]) -> np.ndarray:
        ids = token_ids(texts)
        _, prob = predict(model, ids, np.zeros(len(ids), dtype=np.int64), config.batch_size, pad_id, device,
                          bf16=bf16, progress=progress)
        return prob

    return classify


def add_trust_flags(parser: argparse.ArgumentParser) -> None:
    """The two flags that let a bundle run code from outside it (check_trust), for every command that loads one."""
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load a baseline bundle's joblib pickle (it can run code: only bundles you trust)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own code (Stella needs it: only models you trust)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="a folder written by python -m results.export")
    parser.add_argument("input", help="reviews to classify")
    parser.add_argument("--out", default="predictions.csv", help="output CSV (default: predictions.csv)")
    parser.add_argument("--text-col", help="text column of INPUT")
    parser.add_argument("--ray", action="store_true",
                        help="score on Ray Data (results/batch_predict.py): INPUT may be a folder or a bucket URI, "
                             "--out a .parquet or .csv; rows keep their order and gain `row` and `path` columns")
    parser.add_argument("--address", help="with --ray: the Ray cluster to run on (default: a local Ray instance)")
    parser.add_argument("--bf16", action="store_true",
                        help="score a fine-tune in bf16 mixed precision where its trials did (a GPU, a CPU with "
                             "AVX512-BF16): about 2x faster on such a CPU and the leaderboard's own probabilities, "
                             "but a review's probability then moves by up to ~5e-4 with the reviews batched beside "
                             "it (default: float32, the same probability in any batch, with or without --ray)")
    add_trust_flags(parser)
    args = parser.parse_args(argv)
    if args.address and not args.ray:
        parser.error("--address runs the scoring on a Ray cluster: pass --ray with it")
    try:
        out = Path(args.out)
        if not args.ray and (out.is_dir() or not out.parent.is_dir()):  # --ray checks its own (a URI, a suffix)
            raise UserError(f"--out {out}: {'is a folder' if out.is_dir() else 'its folder does not exist'}; "
                            "give a file path in an existing folder.")
        bundle = read_bundle(args.bundle)
        check_trust(bundle, args.trust_pickle, args.trust_remote_code)
        if args.ray:
            from results.batch_predict import predict_with_ray

            if "operating_point" in bundle:
                print(operating_point_text(bundle))
            counts = predict_with_ray(args.bundle, bundle, args.input, args.out, args.text_col, args.address,
                                      args.trust_pickle, args.trust_remote_code, args.bf16)
        else:
            counts = predict_in_process(args, bundle)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    blank = f", {counts['blank']} without text (no label)" if counts["blank"] else ""
    where = " on Ray" if args.ray else ""
    rate = f" ({counts['rows'] / counts['seconds']:.0f} rows/s over {counts['seconds']:.0f} s)" if args.ray else ""
    print(f"{counts['rows']} rows classified{where}: {counts['real']} real, {counts['fake']} fake{blank} -> "
          f"{args.out}{rate}")
    return 0


def predict_in_process(args: argparse.Namespace, bundle: dict) -> dict:
    """Score INPUT in this process into the --out CSV; the counts main prints."""
    texts = read_texts(args.input, args.text_col)
    prob = predict_texts(args.bundle, texts, trust_pickle=args.trust_pickle,
                         trust_remote_code=args.trust_remote_code, bf16=args.bf16)
    threshold = bundle.get("threshold", DEFAULT_THRESHOLD)
    pd.DataFrame({"text": [text or "" for text in texts], "label": labels(prob, threshold),
                  "prob_real": prob}).to_csv(args.out, index=False)
    if "operating_point" in bundle:
        print(operating_point_text(bundle))
    return {"rows": len(texts), "real": int((prob >= threshold).sum()), "fake": int((prob < threshold).sum()),
            "blank": int(np.isnan(prob).sum())}


if __name__ == "__main__":
    sys.exit(main())
