"""A third-party ranker for the tests: ranks neurons by their activation variance on train,
written against docs/plugins.md only (it reads the activations through the contract's chunks)."""

import numpy as np

from neuroscope.plugin import Ranking, hookimpl, ranker


@ranker(needs=("activations",), cite="activation variance (a test fixture)", cost="one pass over the activations")
def variance(inputs, ddof=0):
    total = np.zeros(inputs.n_neurons)
    squares = np.zeros(inputs.n_neurons)
    n = 0
    for _, block in inputs.chunks():
        total += block.sum(axis=0)
        squares += np.square(block, dtype=np.float64).sum(axis=0)
        n += len(block)
    score = squares / n - (total / n) ** 2
    order = np.lexsort((np.arange(inputs.n_neurons), -score))
    entry = np.empty(inputs.n_neurons)
    entry[order] = np.arange(inputs.n_neurons) / inputs.n_neurons
    return Ranking(order, entry, "variance")


@hookimpl
def register_rankers(register):
    register("variance", variance, aliases=["var"])
