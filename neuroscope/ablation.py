"""Ablation: keep the top, random or bottom M% of neurons, zero the rest and
evaluate the trained probe without retraining (paper section 4.1, Table 1).

Zeroing a neuron's activation removes exactly its column's contribution to
the logits, so each ablation is evaluated as a linear model over the kept
columns; all ablations of one split share one read of its activations.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from neuroscope.choices import UNSEEN_RULES
from neuroscope.errors import ValidationError
from neuroscope.features import Features, n_rows
from neuroscope.probe import ElasticNetProbe, predict_many
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_class_ids



def accuracy(predicted: np.ndarray, gold: np.ndarray, unseen: str = "error") -> float:
    """Share of tokens whose predicted class id equals the gold id.

    Gold id -1 marks a label never seen in training. Rule ``error`` (default)
    keeps those tokens and counts them wrong, as the probe can never output
    them; ``exclude`` leaves them out of the denominator (docs/data.md).
    """
    check_choice("unseen", unseen, UNSEEN_RULES)
    predicted = np.asarray(predicted)
    gold = check_class_ids("gold", gold, len(predicted))
    if unseen == "exclude":
        keep = gold >= 0
        predicted, gold = predicted[keep], gold[keep]
    if len(gold) == 0:
        raise ValidationError("accuracy over no tokens: the split is empty"
                              + (", or every label in it is unseen in train (rule exclude)" if unseen == "exclude" else ""))
    return float(np.mean(predicted == gold) * 100.0)


def ablation_sets(ranking: Ranking, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Positions (into the probe's columns) kept by each ablation."""
    return {
        "top": ranking.top(fraction),
        "random": ranking.random(fraction, seed),
        "bottom": ranking.bottom(fraction),
    }


def evaluate_ablations(
    probe: ElasticNetProbe,
    keep_sets: Mapping[str, np.ndarray | None],
    X: Features,
    gold: np.ndarray,
    unseen: str = "error",
) -> dict[str, float]:
    """Accuracy (in %) of the probe with each kept set; ``None`` keeps all neurons.

    ``gold`` are class ids into ``probe.classes_`` (-1: a label unseen in training),
    e.g. ``labels_to_ids(labels, probe.classes_)``; label strings are refused."""
    gold = check_class_ids("gold", gold, n_rows(X))
    names = list(keep_sets)
    models = [probe.linear_model(keep_sets[n]) for n in names]
    predictions = predict_many(X, models, probe.device)
    return {n: accuracy(predictions[k], gold, unseen) for k, n in enumerate(names)}
