"""Baseline trainables: TF-IDF + logistic regression, and frozen embeddings + logistic
regression / RBF-SVM / MLP. Same split, same metrics, same record as the QLoRA trials."""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field

import joblib
import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from core import storage
from core.errors import ConfigError
from core.groups import SplitGroups, read_split
from core.metrics import classification_metrics
from core.record import Record, failed_record, identity, library_versions, scored_record, write_record
from core.run_folder import DataFolder
from trainables.embeddings import read_embeddings

METHODS = ("tfidf-logreg", "embed-logreg", "embed-svm", "embed-mlp")


@dataclass
class BaselineConfig:
    method: str
    preset: str = "minilm"
    model: str = "minilm"  # the frozen backbone of the embed-* methods
    model_revision: str | None = None  # the backbone's hub commit the search pinned (None: a local folder)
    C: float = 1.0
    gamma: str | float = "scale"
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.5
    learning_rate: float = 1e-3
    epochs: int = 30
    batch_size: int = 64
    max_length: int = 512  # of the tokens the embeddings were computed from
    seed: int = 42
    data_dir: str = ""
    embeddings_file: str = ""
    split_hash: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method={self.method!r} (allowed: {', '.join(METHODS)})")
        if not 0 < self.C <= 1e6:
            problems.append(f"C={self.C!r} (allowed: above 0, at most 1e6)")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout!r} (allowed: 0 to below 1)")
        if not self.hidden or any(h < 1 for h in self.hidden):
            problems.append(f"hidden={self.hidden!r} (allowed: one or more positive sizes)")
        if not 1 <= self.epochs <= 1000:
            problems.append(f"epochs={self.epochs!r} (allowed: 1 to 1000)")
        if problems:
            raise ConfigError("Invalid baseline configuration: " + "; ".join(problems) + ".")

    @property
    def params(self) -> dict:
        keys = {"tfidf-logreg": ("C",), "embed-logreg": ("C",), "embed-svm": ("C", "gamma"),
                "embed-mlp": ("hidden", "dropout", "learning_rate", "epochs")}[self.method]
        return {k: getattr(self, k) for k in keys}


def run_baseline(config: BaselineConfig, record_path: str, model_path: str) -> dict:
    """Fit on train, score validation and test; write the fitted model and the record."""
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    if config.method == "tfidf-logreg":
        split = read_split(config.data_dir)
        data = {name: (part["text"].tolist(), part["label"].to_numpy()) for name, part in split.groupby("split")}
    else:
        data = read_embeddings(DataFolder(config.data_dir).file(config.embeddings_file))
    fit = {"tfidf-logreg": fit_tfidf_logreg, "embed-logreg": fit_logreg, "embed-svm": fit_svm,
           "embed-mlp": fit_mlp}[config.method]
    model = fit(data, config)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    val_prob = predict_real(config.method, model, data["val"][0])
    test_prob = predict_real(config.method, model, data["test"][0])
    eval_seconds = time.perf_counter() - started
    pickled = io.BytesIO()
    joblib.dump(model, pickled)
    storage.write_bytes(model_path, pickled.getvalue())
    record = scored_record(
        baseline_identity(config, storage.name(storage.parent(record_path))),
        epochs_run=None,
        val=classification_metrics(data["val"][1], val_prob),
        val_labels=np.asarray(data["val"][1]).tolist(),
        val_prob_real=[round(float(p), 6) for p in val_prob],
        test=classification_metrics(data["test"][1], test_prob),
        test_labels=np.asarray(data["test"][1]).tolist(),
        test_prob_real=[round(float(p), 6) for p in test_prob],
        **SplitGroups.of_run(config.data_dir).record_fields(data["test"][1], test_prob),
        history=[],
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        samples_per_second=len(data["train"][1]) / train_seconds,
        gpu_peak_mb=None,
        cpu_peak_rss_mb=None,
        device="cpu",
        trainable_params=parameter_count(config.method, model),
        total_params=parameter_count(config.method, model),
        adapter_bytes=len(pickled.getvalue()),
        versions=library_versions(),
    )
    write_record(record_path, record)
    return record


def baseline_identity(config: BaselineConfig, trial_id: str) -> Record:
    return identity(method=config.method, preset=config.preset,
                    model="tfidf" if config.method == "tfidf-logreg" else config.model, trial_id=trial_id,
                    params=config.params, config=asdict(config), split_hash=config.split_hash, seed=config.seed)


def failed_baseline_record(config: BaselineConfig, trial_id: str, reason: str) -> Record:
    """The record of a grid point that raised: what it was, and why it has no scores."""
    return failed_record(baseline_identity(config, trial_id), reason)


def fit_tfidf_logreg(data, config):
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True),
    )
    model = make_pipeline(features, LogisticRegression(C=config.C, max_iter=2000))
    return model.fit(*data["train"])


def fit_logreg(data, config):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=config.C, max_iter=2000))
    return model.fit(*data["train"])


def fit_svm(data, config):
    model = make_pipeline(StandardScaler(), SVC(C=config.C, gamma=config.gamma, kernel="rbf"))
    return model.fit(*data["train"])


def fit_mlp(data, config):
    x_train, y_train = data["train"]
    scaler = StandardScaler().fit(x_train)
    layers, width = [], x_train.shape[1]
    for size in config.hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU(), torch.nn.Dropout(config.dropout)]
        width = size
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    x = torch.as_tensor(scaler.transform(x_train), dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.long)
    generator = torch.Generator().manual_seed(config.seed)
    net.train()
    for _ in range(config.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return scaler, net.eval()


def predict_real(method: str, model, features) -> np.ndarray:
    """Probability of `real` for texts (tfidf-logreg) or embeddings (embed-*)."""
    if method == "embed-svm":
        # The logistic of the SVM's decision value, so 0.5 is its own decision boundary
        # (Platt scaling's 5-fold refit would cost 5x the fit for the same ranking).
        return 1 / (1 + np.exp(-model.decision_function(features)))
    if method == "embed-mlp":
        scaler, net = model
        with torch.no_grad():
            logits = net(torch.as_tensor(scaler.transform(features), dtype=torch.float32))
        return torch.softmax(logits, dim=-1)[:, 1].numpy()
    return model.predict_proba(features)[:, 1]


def parameter_count(method: str, model) -> int:
    if method == "embed-mlp":
        return sum(p.numel() for p in model[1].parameters())
    if method == "embed-svm":
        return int(model[-1].support_vectors_.size)
    return int(model[-1].coef_.size + 1)
