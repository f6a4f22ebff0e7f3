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
is NeuroX's, whose numbers we match (ties included, below).

NeuroX ranks the neurons for one label. To rank for the whole task, a neuron's score
here is its best label: max over labels of (AP - the label's frequency), the AP above
what a random score gets (docs/ranking.md). ``aggregate = "mean"`` averages instead.

AP, per label c, with the tokens sorted by activation, highest first:
(1 / n_c) x sum over the tokens of c of (tokens of c up to it) / (rank), where a block of
equal activations counts as one threshold: each of its tokens takes the precision at the
block's end, the definition of scikit-learn's ``average_precision_score`` (which NeuroX
calls). Ties matter: the store holds float16, so most of a neuron's activations tie with
another token's (66-71k of MiniLM's 81,793 PTB train rows), and ordering a block by row
instead moves AP by up to 0.076 and the overall ordering from its 6th neuron on (issue 25).

The activation threshold: ``threshold`` = 0 (the default) keeps every activation;
NeuroX's ``iou_probe`` zeroes |a| < 0.05 (its default), which ``threshold=0.05`` gives.
Zeroing ties the small activations into one block at 0.

Cost: every activation of every neuron must be sorted, so the columns are read in
blocks of ``memory`` bytes (float16), one pass over the store per block (one pass for
MiniLM on the PTB sample), then one sort per neuron: O(tokens log tokens x neurons).
"""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, order_by_score, ranker, with_label_scores
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_number


def average_precisions(column: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """AP of ``column`` as a score for each class (one against the rest); NaN for absent
    classes. Ties as scikit-learn's ``average_precision_score``: every token of a block
    of equal values gets the precision at the block's end (rows labelled -1 count as
    negatives of every class)."""
    values = column.astype(np.float32)
    order = np.argsort(-values, kind="stable")
    ranked = labels[order]
    sorted_values = values[order]
    # each rank's block of equal values ends at ``block_end`` (0-based); NaN sorts last, one block
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1])
    if np.isnan(sorted_values).any():
        change = change[~(np.isnan(sorted_values[change]) & np.isnan(sorted_values[change + 1]))]
    ends = np.concatenate([change, [len(values) - 1]])
    block = np.zeros(len(values), dtype=np.int64)
    block[change + 1] = 1
    block = np.cumsum(block)
    keep = ranked >= 0
    tokens = np.flatnonzero(keep)  # 0-based rank of every token with a known label
    classes = ranked[keep]
    small = classes.astype(np.int16) if n_classes < 2**15 else classes  # numpy radix-sorts 16-bit keys
    grouped = np.argsort(small, kind="stable")  # ranks grouped by class, increasing within a class
    cls = classes[grouped]
    blocks = block[tokens[grouped]]
    counts = np.bincount(cls, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # the last token of each (class, block) run: its ordinal in the class is the class's hits
    # up to the block's end
    last = np.ones(len(cls), dtype=bool)
    last[:-1] = (cls[1:] != cls[:-1]) | (blocks[1:] != blocks[:-1])
    hits = _run_last(last) - starts[cls] + 1
    precision = hits / (ends[blocks] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(cls, weights=precision, minlength=n_classes) / counts


def _run_last(last: np.ndarray) -> np.ndarray:
    """For every position, the index of the first position at or after it where ``last`` is True."""
    index = np.where(last, np.arange(len(last)), len(last))
    return np.minimum.accumulate(index[::-1])[::-1]


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
    lifts = np.empty((inputs.n_neurons, int((counts > 0).sum())), dtype=np.float64)  # a neuron's lifts: one row
    for first in range(0, inputs.n_neurons, block):
        neurons = np.arange(first, min(first + block, inputs.n_neurons))
        columns = np.empty((len(neurons), n_rows), dtype=np.float16)  # the store's own precision
        for start, chunk in inputs.chunks(neurons):
            columns[:, start : start + len(chunk)] = chunk.T
        if threshold > 0:
            columns[np.abs(columns) < threshold] = 0.0
        for k, column in enumerate(columns):
            lifts[first + k] = (average_precisions(column, labels, n_classes) - frequency)[counts > 0]
    scores = lifts.max(axis=1) if aggregate == "max" else lifts.mean(axis=1)
    return with_label_scores(order_by_score(scores, "iou"), lifts.T, counts > 0)
