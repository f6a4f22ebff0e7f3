"""``mi``: the mutual information between a neuron, binned, and the label (the plug-in
estimate of information-theoretic neuron scoring as surveyed by Sajjad, Durrani & Dalvi,
"Neuron-level Interpretation of Deep NLP Models: A Survey", TACL 2022, section 3; the
discrete estimate Gurnee et al. 2023 set beside their probes).

Each neuron's values are cut into ``bins`` equal-frequency bins, their edges the
quantiles of a deterministic sample of ``sample`` train rows (evenly spaced; all rows
when there are fewer). Tied values (a float16 store has many) can merge bins; an empty
bin adds nothing. Then, from the joint counts of (bin, label) over every labelled train
token (one more pass over the store), in bits:

* one label against the rest: ``I(B; [y = c])``, the information the binned neuron gives
  about whether a token is c;
* ``overall``: ``I(B; y)`` over all labels at once.

``aggregate`` is the contrast rankers' (:mod:`neuroscope.rankers.contrast`): ``cover``
(default: labels take turns, most frequent first, each adding its best neuron),
``max`` (a neuron's best label), ``overall`` (``I(B; y)``).

The plug-in estimate is biased upwards by about ``(bins - 1)(labels - 1) / (2 N ln 2)``
bits (Miller 1955): at MiniLM x PTB's 81,793 tokens, 16 bins and one label against the
rest, 1.3e-4 bits, the same for every neuron of a label. ``correction="miller-madow"``
subtracts the Miller-Madow estimate of it (from the occupied cells), which can take an
estimate slightly below 0; the default ``"none"`` keeps the plug-in value, never
negative.

Cost: a read of the sample rows and one pass over the store (the counts), and (neurons x
bins x labels) int64 counts (1.9M cells for MiniLM x PTB).
"""

from __future__ import annotations

import numpy as np

from neuroscope.features import read_rows
from neuroscope.rankers import RankerInputs, order_by_score, ranker, with_label_scores
from neuroscope.rankers.contrast import AGGREGATES, by_labels
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_number

CORRECTIONS = ("none", "miller-madow")
NEURON_BLOCK = 256  # neurons binned at once within a chunk (bounds the index array)


def bin_edges(inputs: RankerInputs, bins: int, sample: int) -> np.ndarray:
    """(neurons, bins - 1) inner edges: each neuron's quantiles at 1/bins, ..., (bins-1)/bins
    of a deterministic, evenly spaced sample of train rows."""
    n_rows = len(inputs.labels)
    rows = np.unique(np.linspace(0, n_rows - 1, min(sample, n_rows)).round().astype(np.int64))
    values = read_rows(inputs.train, rows, None)
    return np.quantile(values, np.arange(1, bins) / bins, axis=0, method="lower").T.astype(np.float32)


def joint_counts(inputs: RankerInputs, edges: np.ndarray) -> np.ndarray:
    """(neurons, bins, labels) int64 counts of (bin, label) over the labelled train rows."""
    n, inner = edges.shape
    bins = inner + 1
    n_labels = len(inputs.label_names)
    counts = np.zeros(n * bins * n_labels, dtype=np.int64)
    for start, block in inputs.chunks():
        y = inputs.labels[start : start + len(block)]
        keep = y >= 0
        block, y = block[keep], y[keep]
        for first in range(0, n, NEURON_BLOCK):
            last = min(first + NEURON_BLOCK, n)
            binned = np.empty((len(block), last - first), dtype=np.int64)
            for k, j in enumerate(range(first, last)):
                binned[:, k] = np.searchsorted(edges[j], block[:, j], side="right")
            cell = ((np.arange(first, last)[None, :] * bins + binned) * n_labels + y[:, None]).ravel()
            counts[first * bins * n_labels : last * bins * n_labels] += np.bincount(
                cell - first * bins * n_labels, minlength=(last - first) * bins * n_labels)
    return counts.reshape(n, bins, n_labels)


def _information(joint: np.ndarray, correction: str) -> np.ndarray:
    """Mutual information in bits of the two last axes of ``joint`` (counts, (..., a, b))."""
    total = joint.sum(axis=(-2, -1), keepdims=True).astype(np.float64)
    p = joint / np.maximum(total, 1)
    pa = p.sum(axis=-1, keepdims=True)
    pb = p.sum(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0) / (pa * pb)), 0.0)
    info = np.maximum(terms.sum(axis=(-2, -1)), 0.0)  # exact zeros where rounding dips below
    if correction == "miller-madow":
        # Miller-Madow adds (occupied cells - 1) / 2N nats to each entropy of I = H(a) + H(b) - H(a, b)
        cells_a = (joint.sum(axis=-1) > 0).sum(axis=-1)
        cells_b = (joint.sum(axis=-2) > 0).sum(axis=-1)
        cells_ab = (joint > 0).sum(axis=(-2, -1))
        info = info - (cells_ab - cells_a - cells_b + 1) / (2 * np.maximum(total[..., 0, 0], 1) * np.log(2))
    return info


def label_information(joint: np.ndarray, correction: str = "none") -> np.ndarray:
    """(labels, neurons) ``I(B; [y = c])`` in bits from (neurons, bins, labels) counts."""
    per_bin = joint.sum(axis=2, keepdims=True)  # (neurons, bins, 1)
    binary = np.stack([joint, per_bin - joint], axis=-1)  # (neurons, bins, labels, 2)
    return _information(np.moveaxis(binary, 2, 0), correction)


def overall_information(joint: np.ndarray, correction: str = "none") -> np.ndarray:
    """(neurons,) ``I(B; y)`` in bits."""
    return _information(joint, correction)


@ranker(needs=("activations",), cite="mutual information of the binned neuron and the label (plug-in; Sajjad, "
        "Durrani & Dalvi, TACL 2022, section 3)", cost="a read of a row sample (the bin edges) and one pass over "
        "the train activations ((bin, label) counts); no probe", bins=16, sample=20000, aggregate="cover",
        correction="none")
def mutual_information(inputs: RankerInputs, bins: int = 16, sample: int = 20000, aggregate: str = "cover",
                       correction: str = "none") -> Ranking:
    check_number("mi bins", bins, low=2, high=1024, integer=True)
    check_number("mi sample", sample, low=2, integer=True)
    check_choice("mi aggregate", aggregate, AGGREGATES)
    check_choice("mi correction", correction, CORRECTIONS)
    joint = joint_counts(inputs, bin_edges(inputs, int(bins), int(sample)))
    counts = joint[0].sum(axis=0)  # every neuron sees every labelled token once
    present = counts > 0
    scores = label_information(joint[:, :, present], correction)
    if aggregate == "overall":
        return with_label_scores(order_by_score(overall_information(joint[:, :, present], correction), "mi"), scores,
                                 present)
    return with_label_scores(by_labels(scores, counts[present], aggregate, "mi"), scores, present)
