"""A seeded random order: the baseline every ranking must beat (the paper's random
ablation, section 4.1, drawn as a whole ranking). Cost: nothing."""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, ranker
from neuroscope.ranking import Ranking


@ranker(needs=(), cite="the random baseline (Durrani et al. 2020, section 4.1)", cost="none")
def random_order(inputs: RankerInputs) -> Ranking:
    n = inputs.n_neurons
    order = np.random.default_rng([inputs.seed, 20201116]).permutation(n).astype(np.int64)
    entry = np.empty(n, dtype=np.float64)
    entry[order] = np.arange(n) / max(1, n)
    return Ranking(order, entry, "random")
