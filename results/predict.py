"""Classify reviews with an exported bundle.

    python -m results.predict BUNDLE INPUT [--out FILE] [--text-col NAME] [--trust-pickle] [--trust-remote-code]

INPUT: .csv/.csv.gz/.tsv/.parquet/.jsonl with a text column (text_, text, review or --text-col),
or .txt with one review per line. Writes a CSV with the text, the predicted label (fake/real) and
the probability of real, in input order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.data import TEXT_COLUMNS, find_column, read_table
from core.errors import DataError, UserError
from results.export import BUNDLE_FILE


def read_texts(path: str | Path, text_col: str | None = None) -> list[str]:
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise DataError(f"Input file not found: {path}.")
        texts = [line for line in path.read_text().splitlines() if line.strip()]
    else:
        frame = read_table(path)
        texts = frame[find_column(frame, text_col, TEXT_COLUMNS, "text")].astype(str).tolist()
    if not texts:
        raise DataError(f"{path} holds no reviews.")
    return texts


def read_bundle(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not path.exists():
        raise UserError(f"{folder} is not a bundle ({BUNDLE_FILE} missing). "
                        "Make one with: python -m results.export RUN_DIR --out DIR")
    bundle = json.loads(path.read_text())
    needed = {"adapter": ["adapter/adapter_config.json", "tokenizer"], "full": ["model", "tokenizer"],
              "baseline": [bundle.get("model_file", "model.joblib")]}[bundle["kind"]]
    if bundle["method"].startswith("embed-"):
        needed.append("tokenizer")
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise UserError(f"Bundle {folder} is incomplete: missing {', '.join(missing)}. Export it again.")
    return bundle


def check_trust(bundle: dict, trust_pickle: bool, trust_remote_code: bool) -> None:
    """Code from outside runs only when the command line says so, whatever bundle.json says."""
    if bundle["kind"] == "baseline" and not trust_pickle:
        raise UserError(f"This {bundle['method']} bundle's model is a joblib pickle, and loading a pickle runs "
                        "whatever code it holds. If you trust where this bundle came from, pass --trust-pickle.")
    if bundle.get("trust_remote_code") and not trust_remote_code:
        raise UserError(f"The base model {bundle['base_model']} runs code from its model repository. If you "
                        "trust it, pass --trust-remote-code.")


def predict_texts(folder: str | Path, texts: list[str], progress: bool = True, trust_pickle: bool = False,
                  trust_remote_code: bool = False) -> np.ndarray:
    """Probability of `real` for each text."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    bundle = read_bundle(folder)
    check_trust(bundle, trust_pickle, trust_remote_code)
    if bundle["method"] == "tfidf-logreg":
        import joblib

        from trainables.baselines import predict_real

        return predict_real(bundle["method"], joblib.load(folder / bundle["model_file"]), texts)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    ids = [np.asarray(x, dtype=np.int64) for x in
           tokenizer(texts, truncation=True, max_length=bundle["max_length"])["input_ids"]]
    pad_id = tokenizer.pad_token_id or 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if bundle["kind"] == "baseline":
        import joblib

        from trainables.baselines import predict_real
        from trainables.embeddings import embed, load_backbone
        from trainables.model import loading_overrides

        backbone = load_backbone(bundle["base_model"], bundle["pooling"], trust_remote_code, device,
                                 loading_overrides(bundle["preset"]))
        features = embed(backbone, ids, pad_id, device)
        return predict_real(bundle["method"], joblib.load(folder / bundle["model_file"]), features)

    from trainables.config import FineTuneConfig
    from trainables.model import load_base
    from trainables.training import predict

    config = FineTuneConfig.from_dict({**bundle["config"], "trust_remote_code": trust_remote_code})
    if bundle["kind"] == "full":
        model = load_base(config, device, path=str(folder / "model"))
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(config, device), folder / "adapter")
    _, prob = predict(model.to(device), ids, np.zeros(len(ids), dtype=np.int64), config.batch_size, pad_id,
                      device, progress=progress)
    return prob


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="a folder written by python -m results.export")
    parser.add_argument("input", help="reviews to classify")
    parser.add_argument("--out", default="predictions.csv", help="output CSV (default: predictions.csv)")
    parser.add_argument("--text-col", help="text column of INPUT")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load a baseline bundle's joblib pickle (it can run code: only bundles you trust)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own code (Stella needs it: only models you trust)")
    args = parser.parse_args(argv)
    try:
        check_trust(read_bundle(args.bundle), args.trust_pickle, args.trust_remote_code)
        texts = read_texts(args.input, args.text_col)
        prob = predict_texts(args.bundle, texts, trust_pickle=args.trust_pickle,
                             trust_remote_code=args.trust_remote_code)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pd.DataFrame({"text": texts, "label": np.where(prob >= 0.5, "real", "fake"), "prob_real": prob}).to_csv(
        args.out, index=False)
    print(f"{len(texts)} reviews classified: {int((prob >= 0.5).sum())} real, {int((prob < 0.5).sum())} fake "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
