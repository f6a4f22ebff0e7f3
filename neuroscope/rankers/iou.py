"""The detection ranking of NeuroX's ``iou_probe`` (master branch), after Mu & Andreas,
"Compositional Explanations of Neurons" (NeurIPS 2020).

Mu & Andreas score a neuron for a concept by the intersection over union of the
neuron's top-activation mask and the concept's mask. NeuroX's ``iou_probe`` implements
the threshold-free form of that question, the one implemented here: how well does the
neuron's activation, as a detector score, retrieve the tokens of a label? It is the
average precision (AP) of the activation for the label, one label against the rest,
after activations with |a| < ``threshold`` are set to 0 (NeuroX's ``threshold``; 0 keeps
all). We chose AP over a thresholded IoU because it needs no activation quantile (IoU's
result depends on it, and Mu & Andreas' 0.5 % was tuned for image units), and because it
is NeuroX's, whose numbers we match (ties aside).

NeuroX ranks the neurons for one label. To rank for the whole task, a neuron's score
here is its best label: max over labels of (AP - the label's frequency), the AP above
what a random score gets (docs/ranking.md). ``aggregate = "mean"`` averages instead.

AP, per label c, with the tokens sorted by activation, highest first:
(1 / n_c) x sum over the tokens of c of (tokens of c up to it) / (rank). Equal
activations are ordered by row (sklearn averages over tied thresholds instead; the
difference is confined to ties).

Cost: every activation of every neuron must be sorted, so the columns are read in
blocks of ``memory`` bytes (float16), one pass over the store per block (one pass for
MiniLM on the PTB sample), then one sort per neuron: O(tokens log tokens x neurons).
"""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, order_by_score, ranker
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_number


def average_precisions(column: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """AP of ``column`` as a score for each class (one against the rest); NaN for absent classes."""
    order = np.argsort(-column.astype(np.float32), kind="stable")  # ties keep row order
    ranked = labels[order]
    keep = ranked >= 0
    positions = np.flatnonzero(keep) + 1  # 1-based rank of every token with a known label
    classes = ranked[keep]
    small = classes.astype(np.int16) if n_classes < 2**15 else classes  # numpy radix-sorts 16-bit keys
    grouped = np.argsort(small, kind="stable")  # positions grouped by class, increasing within a class
    cls = classes[grouped]
    counts = np.bincount(cls, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    hits = np.arange(len(cls)) - starts[cls] + 1  # tokens of the class up to and including this one
    precision = hits / positions[grouped]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(cls, weights=precision, minlength=n_classes) / counts


@ranker(needs=("activations",), cite="Mu & Andreas, NeurIPS 2020; NeuroX iou_probe.get_neuron_ordering "
        "(average precision per label)", cost="reads the activations by column blocks (one pass per block of "
        "`memory` bytes) and sorts every neuron's activations", threshold=0.0, aggregate="max", memory=2**29)
def iou(inputs: RankerInputs, threshold: float = 0.0, aggregate: str = "max", memory: int = 2**29) -> Ranking:
    check_number("iou threshold", threshold, low=0)
    check_choice("iou aggregate", aggregate, ("max", "mean"))
    check_number("iou memory", memory, low=1)
    labels = np.asarray(inputs.labels)
    n_classes = len(inputs.label_names)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    frequency = counts / max(1, counts.sum())
    n_rows = len(labels)
    block = max(1, int(memory) // (2 * max(1, n_rows)))
    scores = np.empty(inputs.n_neurons, dtype=np.float64)
    for first in range(0, inputs.n_neurons, block):
        neurons = np.arange(first, min(first + block, inputs.n_neurons))
        columns = np.empty((len(neurons), n_rows), dtype=np.float16)  # the store's own precision
        for start, chunk in inputs.chunks(neurons):
            columns[:, start : start + len(chunk)] = chunk.T
        if threshold > 0:
            columns[np.abs(columns) < threshold] = 0.0
        for k, column in enumerate(columns):
            lift = average_precisions(column, labels, n_classes) - frequency
            lift = lift[counts > 0]
            scores[first + k] = lift.max() if aggregate == "max" else lift.mean()
    return order_by_score(scores, "iou")
