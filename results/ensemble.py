"""An ensemble of a search's own models, chosen on validation only.

Greedy forward selection with replacement (Caruana et al., 2004), as AutoGluon's
`EnsembleSelection` does it: each round adds the model whose inclusion most improves the run's
selection metric of the averaged validation probabilities; after `ROUNDS` rounds the best prefix
is kept (a tie goes to the shorter one), and a member's weight is how often it was picked over
that prefix's length. Candidates are every record with validation probabilities (fine-tunes at
the model their checkpoint holds, baselines), all of one split (load_records refuses a mix).
Test is scored once, after the choice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from core.metrics import classification_metrics, prediction_selection_score, selection_score
from core.record import has_scores

ROUNDS = 25  # AutoGluon's default ensemble_size


@dataclass(frozen=True)
class Ensemble:
    members: list[str]  # trial ids, most weight first
    weights: list[float]  # same order; they sum to 1
    rounds: int
    metric: str
    val: dict  # classification_metrics of the weighted validation probabilities
    test: dict
    val_score: float
    best_member: str  # the candidate with the best validation score alone
    best_member_val_score: float
    test_labels: list
    test_prob_real: list

    @property
    def better_than_best_member(self) -> bool:
        return self.val_score > self.best_member_val_score

    def describe(self) -> str:
        return ", ".join(f"{member} x{weight:.2f}" for member, weight in zip(self.members, self.weights))

    def to_json(self) -> dict:
        return asdict(self)


def candidates(records: list[dict]) -> list[dict]:
    """Records an ensemble may use: scored, with validation probabilities on the same reviews."""
    usable = [r for r in records if has_scores(r) and r.get("val_prob_real")]
    if usable:
        labels = usable[0]["val_labels"]
        usable = [r for r in usable if r["val_labels"] == labels and r["test_labels"] == usable[0]["test_labels"]]
    return sorted(usable, key=lambda r: str(r["trial_id"]))  # the same candidates, the same answer


def greedy_selection(labels: np.ndarray, probabilities: np.ndarray, metric: str,
                     rounds: int = ROUNDS) -> list[int]:
    """The chosen candidates (rows of `probabilities`), with repeats: the best prefix of `rounds`
    greedy picks. Ties between candidates go to the lower row, ties between prefixes to the shorter.
    Each combination is scored from its confusion counts (rounds x candidates of them)."""
    picked: list[int] = []
    total = np.zeros(probabilities.shape[1])
    best, best_score = [], -np.inf
    for _ in range(rounds):
        scores = [prediction_selection_score(labels, (total + row) / (len(picked) + 1), metric)
                  for row in probabilities]
        choice = int(np.argmax(scores))
        picked.append(choice)
        total += probabilities[choice]
        if scores[choice] > best_score:
            best, best_score = list(picked), scores[choice]
    return best


def build_ensemble(records: list[dict], metric: str, rounds: int = ROUNDS) -> Ensemble | None:
    """The run's ensemble, or None with fewer than two candidates."""
    pool = candidates(records)
    if len(pool) < 2:
        return None
    labels = np.asarray(pool[0]["val_labels"])
    val_prob = np.asarray([r["val_prob_real"] for r in pool], dtype=float)
    chosen = Counter(greedy_selection(labels, val_prob, metric, rounds))
    size = sum(chosen.values())
    order = sorted(chosen, key=lambda i: (-chosen[i], i))
    weights = np.asarray([chosen[i] / size for i in order])
    test_labels = np.asarray(pool[0]["test_labels"])
    test_prob = weights @ np.asarray([pool[i]["test_prob_real"] for i in order], dtype=float)
    val = classification_metrics(labels, weights @ val_prob[order])
    alone = [prediction_selection_score(labels, row, metric) for row in val_prob]
    best = int(np.argmax(alone))
    return Ensemble(members=[str(pool[i]["trial_id"]) for i in order], weights=[float(w) for w in weights],
                    rounds=rounds, metric=metric, val=val, test=classification_metrics(test_labels, test_prob),
                    val_score=selection_score(val, metric), best_member=str(pool[best]["trial_id"]),
                    best_member_val_score=alone[best], test_labels=test_labels.tolist(),
                    test_prob_real=[float(p) for p in test_prob])
