"""Each analysis on a hand-built weight matrix whose answer is known."""

import numpy as np
import pytest

from neuroscope import NeuronIndex
from neuroscope.analyses import (analyse, dominant_layers, exclusivity, label_neuron_sets, labels_per_neuron,
                                 layer_distribution, neurons_per_label)

# 3 labels x 6 neurons (2 layers x 3 units). Label A: all mass on n0. Label B: n1 and n4 equal.
# Label C: n4 heavy, n5 light. n2 and n3 carry no weight.
COEF = np.array([
    [9.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 5.0, 0.0, 0.0, 5.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 8.0, 2.0],
])
INDEX = NeuronIndex(("emb", "1"), 3)


def test_label_sets_and_counts():
    top = np.array([0, 1, 4])  # entry shares: n0 0 (A), n4 0 (C), n1 0 (B); n5 0.8 (C)
    sets = label_neuron_sets(COEF, top)
    assert [s.tolist() for s in sets] == [[0], [1], [4]]
    top = np.array([0, 1, 4, 5])  # p* = 0.8: B also selects n4 (share 0.5)
    sets = label_neuron_sets(COEF, top)
    assert [s.tolist() for s in sets] == [[0], [1, 4], [4, 5]]
    assert neurons_per_label(sets) == [1, 2, 2]


def test_exclusivity_counts_labels_per_neuron():
    top = np.array([0, 1, 4, 5])
    per_neuron = labels_per_neuron(label_neuron_sets(COEF, top), top)
    assert per_neuron == {0: 1, 1: 1, 4: 2, 5: 1}
    summary = exclusivity(per_neuron)
    assert summary["mean_labels_per_neuron"] == pytest.approx(1.25)
    assert summary["exclusive_percent"] == pytest.approx(75.0)
    assert summary["histogram"] == {"1": 3, "2": 1}


def test_layer_distribution_and_dominant_layer():
    assert layer_distribution([0, 1, 4, 5], INDEX) == [2, 2]
    sets = [np.array([0]), np.array([1, 4]), np.array([4, 5])]
    dom = dominant_layers(sets, INDEX)
    assert [d["layer"] for d in dom] == ["emb", "emb", "1"]  # B ties 1-1: lower layer
    assert dom[2]["share"] == 100.0 and dom[1]["per_layer"] == [1, 1]


def test_analyse_is_keyed_by_label():
    result = analyse(COEF, np.array([0, 1, 4, 5]), INDEX, ["A", "B", "C"])
    assert result["neurons_per_label"] == {"A": 1, "B": 2, "C": 2}
    assert result["dominant_layer"]["C"]["layer"] == "1"
    assert result["layer_distribution"] == [2, 2]
