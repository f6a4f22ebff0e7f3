"""A seeded random order: the baseline every ranking must beat (the paper's random
ablation, section 4.1, drawn as a whole ranking). Cost: nothing."""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, ranker, ranking_from_order
from neuroscope.ranking import Ranking


@ranker(needs=(), cite="the random baseline (Durrani et al. 2020, section 4.1)", cost="none")
def random_order(inputs: RankerInputs) -> Ranking:
    return ranking_from_order(np.random.default_rng([inputs.seed, 20201116]).permutation(inputs.n_neurons), "random")
