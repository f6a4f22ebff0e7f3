"""Analyses of where the top neurons are (paper section 5, Figures 1-5).

All work on a probe's weights and a set of top neurons (the minimal set):

* :func:`layer_distribution` - top neurons per layer (Figure 1, section 5.1);
* :func:`label_neuron_sets` - the neurons each label selects among the top
  ones (section 5.2: "the number of neurons that are selected for each label");
* :func:`neurons_per_label` - localized vs distributed labels (Figures 2, 4);
* :func:`labels_per_neuron` - how exclusive top neurons are to labels: 1 means
  a neuron serves one label only ("localized and disjoint"), more means it is
  shared ("distributed and coupled"; Figure 3, appendix A.7);
* :func:`dominant_layers` - the layer that predominantly captures each label
  (Figure 5, appendix A.8).

A label selects neuron j when j is among the label's heaviest neurons up to
the weight-mass share at which the top set is complete: with the ranking's
entry shares, p* = the largest entry share inside the top set, and label c
selects j when j's share for c is at most p* (docs/analyses.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from neuroscope.ranking import label_entry_shares
from neuroscope.types import NeuronIndex


def layer_distribution(neurons: np.ndarray | Sequence[int], index: NeuronIndex) -> list[int]:
    """How many of ``neurons`` lie in each layer."""
    return np.bincount(index.layer_of(np.asarray(neurons, dtype=np.int64)), minlength=index.n_layers).tolist()


def label_neuron_sets(coef: np.ndarray, top: np.ndarray | Sequence[int]) -> list[np.ndarray]:
    """For each label (row of ``coef``), the top neurons it selects (sorted)."""
    top = np.asarray(top, dtype=np.int64)
    shares = label_entry_shares(coef)
    if len(top) == 0:
        return [np.array([], dtype=np.int64) for _ in range(shares.shape[0])]
    entry = shares[:, top].min(axis=0)
    finite = entry[np.isfinite(entry)]
    cutoff = finite.max() if len(finite) else 0.0
    return [np.sort(top[shares[c, top] <= cutoff]) for c in range(shares.shape[0])]


def neurons_per_label(sets: Sequence[np.ndarray]) -> list[int]:
    return [int(len(s)) for s in sets]


def labels_per_neuron(sets: Sequence[np.ndarray], top: np.ndarray | Sequence[int]) -> dict[int, int]:
    """For every top neuron, how many labels select it."""
    counts = {int(j): 0 for j in np.asarray(top, dtype=np.int64)}
    for s in sets:
        for j in s:
            counts[int(j)] += 1
    return counts


def exclusivity(per_neuron: dict[int, int]) -> dict[str, Any]:
    """Summary of :func:`labels_per_neuron`: mean labels per neuron, percentage serving exactly one, histogram."""
    values = np.array(list(per_neuron.values()), dtype=np.int64)
    if len(values) == 0:
        return {"mean_labels_per_neuron": 0.0, "exclusive_percent": 0.0, "histogram": {}}
    hist = np.bincount(values)
    return {
        "mean_labels_per_neuron": float(values.mean()),
        "exclusive_percent": float(100 * np.mean(values == 1)),
        "histogram": {str(k): int(v) for k, v in enumerate(hist) if v},
    }


def dominant_layers(sets: Sequence[np.ndarray], index: NeuronIndex) -> list[dict[str, Any]]:
    """For each label: its neurons per layer, and the layer holding most of them (ties: lower layer)
    with the percentage of the label's neurons there."""
    out = []
    for s in sets:
        per_layer = layer_distribution(s, index)
        total = sum(per_layer)
        layer = int(np.argmax(per_layer)) if total else None
        out.append({
            "per_layer": per_layer,
            "layer": None if layer is None else index.layer_names[layer],
            "share": 0.0 if not total else 100 * per_layer[layer] / total,
        })
    return out


def analyse(coef: np.ndarray, top: np.ndarray | Sequence[int], index: NeuronIndex,
            labels: Sequence[str]) -> dict[str, Any]:
    """All analyses of one probe and top set, keyed by label name, JSON-ready."""
    sets = label_neuron_sets(coef, top)
    per_neuron = labels_per_neuron(sets, top)
    dominant = dominant_layers(sets, index)
    return {
        "n_top": int(len(top)),
        "layer_distribution": layer_distribution(top, index),
        "neurons_per_label": dict(zip(labels, neurons_per_label(sets))),
        "label_neurons": {lab: s.tolist() for lab, s in zip(labels, sets)},
        "exclusivity": exclusivity(per_neuron),
        "dominant_layer": dict(zip(labels, dominant)),
    }
