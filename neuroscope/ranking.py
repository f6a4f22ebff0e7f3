"""Neuron ranking by weight mass (paper section 2, "Neuron Ranking Algorithm";
Dalvi et al. 2019).

For each label the absolute weights are sorted in descending order; a neuron
is selected for that label at weight-mass share p once the mass of the
neurons ranked before it is below p of the label's total (the top neuron of
each label is selected from p = 0). Growing p in steps of 1 / ``stride``, the
neurons enter the global ordering in the order they first appear for any label.

This is NeuroX's ``get_neuron_ordering`` (``get_top_neurons`` at p / stride
for p = 0 .. stride) with two differences, both documented in docs/ranking.md:

* inside one step NeuroX appends the new neurons in Python ``set`` order;
  we order them by their exact entry share (the smallest p at which they
  enter), then by total |w| descending, then by index: deterministic;
* neurons that never enter (zero weight for every label, as L1 produces)
  are missing from NeuroX's ordering; we append them last, by total |w|
  descending then index, so the ordering is always a permutation.
"""

from __future__ import annotations

import attrs
import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.validation import check_finite_array, check_number


@attrs.frozen
class Ranking:
    """A total order of neurons, most important first."""

    order: np.ndarray  # (neurons,) int64, a permutation
    entry_share: np.ndarray  # (neurons,) float64, weight-mass share at which each neuron enters (inf: never)
    method: str = "weight-mass"
    #: (labels, neurons) float64, each label's own score of every neuron (higher: more
    #: important for that label; NaN: no score, a label without train tokens), for analyses
    #: that take a label's best neurons (k-sparse probing); None where the ranker has one
    #: overall order only. Not written to the step files: the analyses run where the ranking is made.
    label_scores: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def n_neurons(self) -> int:
        return int(len(self.order))

    def count(self, fraction: float) -> int:
        """Number of neurons in ``fraction`` of the network (rounded, at least 1)."""
        check_number("fraction", fraction, low=0, high=1, low_open=True)
        return max(1, int(round(fraction * self.n_neurons)))

    def top(self, fraction: float) -> np.ndarray:
        return np.sort(self.order[: self.count(fraction)])

    def bottom(self, fraction: float) -> np.ndarray:
        return np.sort(self.order[self.n_neurons - self.count(fraction) :])

    def random(self, fraction: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(self.n_neurons, size=self.count(fraction), replace=False))

    def top_n(self, n: int) -> np.ndarray:
        return np.sort(self.order[:n])

    def label_order(self, label: int, limit: int | None = None) -> np.ndarray:
        """Label ``label``'s neurons, best first (its :attr:`label_scores`, ties by neuron
        id; the overall order where the ranker has no per-label scores); the first ``limit``."""
        if self.label_scores is None:
            return self.order[:limit]
        return descending(self.label_scores[label])[:limit]

    def to_json(self) -> dict:
        shares = [None if not np.isfinite(s) else float(s) for s in self.entry_share]
        return {"method": self.method, "order": self.order.tolist(), "entry_share": shares}

    @classmethod
    def from_json(cls, data: dict) -> "Ranking":
        shares = np.array([np.inf if s is None else s for s in data["entry_share"]], dtype=np.float64)
        return cls(np.asarray(data["order"], dtype=np.int64), shares, data["method"])


def descending(score: np.ndarray) -> np.ndarray:
    """Positions of ``score`` from highest to lowest; ties by position, NaN last."""
    score = np.asarray(score, dtype=np.float64)
    key = np.where(np.isnan(score), -np.inf, score)
    return np.lexsort((np.arange(len(score)), -key)).astype(np.int64)


def label_entry_shares(coef: np.ndarray) -> np.ndarray:
    """(labels, neurons): for each label, the weight-mass share of the neurons
    ranked before each neuron; 0 for the label's top neuron, inf for zero weights."""
    weights = np.abs(np.asarray(coef, dtype=np.float64))
    n_labels, n_neurons = weights.shape
    shares = np.full((n_labels, n_neurons), np.inf)
    for c in range(n_labels):
        row = weights[c]
        total = row.sum()
        if total <= 0:
            continue
        order = np.lexsort((np.arange(n_neurons), -row))
        before = np.concatenate([[0.0], np.cumsum(row[order])[:-1]]) / total
        nonzero = row[order] > 0
        shares[c, order[nonzero]] = before[nonzero]
    return shares


def weight_mass_ranking(coef: np.ndarray, stride: int | None = 100) -> Ranking:
    """Rank the neurons of a trained probe, ``coef`` of shape (labels, neurons).

    ``stride`` is the number of weight-mass steps (NeuroX's ``search_stride``);
    ``None`` orders by the exact entry share (the limit of a very fine stride).
    """
    coef = np.asarray(coef)
    if coef.ndim != 2 or 0 in coef.shape:
        raise ValidationError(f"coef must be a non-empty (labels, neurons) matrix, got shape {coef.shape}")
    check_finite_array("coef", coef)
    shares = label_entry_shares(coef)
    entry = shares.min(axis=0)
    total = np.abs(coef.astype(np.float64)).sum(axis=0)
    if stride is None:
        step = np.where(np.isfinite(entry), 0, 1)
    else:
        check_number("stride", stride, low=1, integer=True)
        # selected at p = m / stride when entry < p (entry == 0 is selected at p = 0)
        step = np.where(entry == 0, 0, np.floor(np.minimum(entry, 1.0) * stride) + 1)
        step = np.where(np.isfinite(entry), step, stride + 2)
    finite_entry = np.where(np.isfinite(entry), entry, np.inf)
    order = np.lexsort((np.arange(coef.shape[1]), -total, finite_entry, step))
    return Ranking(order.astype(np.int64), entry, "weight-mass" if stride is None else f"weight-mass/{stride}",
                   np.abs(coef.astype(np.float64)))


def top_neurons_per_label(coef: np.ndarray, mass: float) -> dict[int, np.ndarray]:
    """NeuroX ``get_top_neurons``: per label, the neurons selected at weight-mass share ``mass``."""
    shares = label_entry_shares(coef)
    return {c: np.flatnonzero((shares[c] < mass) | (shares[c] == 0)) for c in range(shares.shape[0])}
