"""The probeless ranking of Antverg & Belinkov, "On the Pitfalls of Analyzing Individual
Neurons in Language Models" (ICLR 2022), section 3.

No probe: a neuron matters for the property when its mean activation differs between the
property's values. For every pair of labels (z, z') the absolute difference of the
neuron's class-conditional means |q(z) - q(z')| is summed over all pairs; neurons are
ranked by that sum, largest first. It equals NeuroX's ``probeless.get_overall_ranking``
(ties aside: NeuroX's ``argsort`` order, ours by neuron id). Labels that never occur in
train have no mean and take no part.

Per label (the order k-sparse probing takes a label's neurons in) the sum runs over the
pairs with that label only, as NeuroX's ``get_neuron_ordering_for_tag``.

Cost: one pass over the train activations (class means, shared with other rankers),
then O(labels^2 x neurons) arithmetic.
"""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, order_by_score, ranker, with_label_scores
from neuroscope.ranking import Ranking


def pairwise_mean_differences(means: np.ndarray) -> np.ndarray:
    """Per neuron, the sum over all label pairs of |mean(z) - mean(z')| ((labels, neurons) in)."""
    means = np.asarray(means, dtype=np.float64)
    # sum over pairs i < j of |m_i - m_j| = sum_k (2k - L + 1) m_(k) over the sorted means
    ordered = np.sort(means, axis=0)
    n = ordered.shape[0]
    weights = 2 * np.arange(n) - n + 1
    return weights @ ordered


def tag_wise_differences(means: np.ndarray) -> np.ndarray:
    """(labels, neurons): per label z, the sum over the other labels z' of |q(z) - q(z')|
    (NeuroX's ``probeless.get_neuron_ordering_for_tag``)."""
    means = np.asarray(means, dtype=np.float64)
    return np.stack([np.abs(means[z] - means).sum(axis=0) for z in range(len(means))])


@ranker(needs=("activations",), cite="Antverg & Belinkov, ICLR 2022 (NeuroX probeless.get_overall_ranking)",
        cost="one pass over the train activations (class means); no probe")
def probeless(inputs: RankerInputs) -> Ranking:
    counts, means = inputs.class_means()
    present = counts > 0
    return with_label_scores(order_by_score(pairwise_mean_differences(means[present]), "probeless"),
                             tag_wise_differences(means[present]), present)
