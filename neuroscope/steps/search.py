"""Step 3: the lambda search (paper section 2, "Search"): every (l1, l2) pair of the grid
trained with the first seed and scored on dev by S = alpha (At - Ab) - beta (Az - Al),
where the ranking of each grid probe is the run's first ranker that reads the probe."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from neuroscope.cell import CellContext
from neuroscope.rankers import call_ranker
from neuroscope.ranking import Ranking
from neuroscope.search import LambdaSearch, group_size, lambda_grid, with_unregularised
from neuroscope.search_methods import search_lambdas


@attrs.frozen
class GridProbe:
    """A probe as far as a probe-based ranker sees it, for the lambda search's grid probes."""

    coef_: np.ndarray


def searches(c: CellContext) -> bool:
    """Whether the cell searches its lambdas: none given, and a ranker reads the probe's weights."""
    return c.config.search and c.searcher is not None


def search_grid(c: CellContext) -> list[tuple[float, float]]:
    """The (l1, l2) pairs the cell's search tries: the grid's, only l1 = 0 for a probe
    without an L1 penalty."""
    l1_allowed = "l1" in getattr(c.probe_cls, "penalties", ("l1", "l2"))
    return [pair for pair in lambda_grid(c.config.grid) if l1_allowed or pair[0] == 0]


def lambda_search_step(c: CellContext, reporter: Any) -> LambdaSearch:
    """The search over the grid's pairs (:func:`search_grid`) by ``--search``'s method; its
    ``best_probe`` is the winner, the very oracle probe of the first seed."""
    config = c.config
    fn, options = c.rankers[c.searcher]  # type: ignore[index]
    n_classes = len(c.task.labels)

    def coef_ranker(coef: np.ndarray) -> Ranking:
        return call_ranker(fn, c.ranker_inputs(config.seeds[0], GridProbe(coef)), **options)

    grid = search_grid(c)
    n_settings = len(with_unregularised(grid))
    n_groups = -(-n_settings // group_size(c.index.n_neurons, n_classes, n_settings, config.grid_memory))
    # the grid's rows are known; the path's and halving's depend on what the settings do
    rows = config.rows_trained(c.acts["train"].n_tokens, n_groups) if config.search_method == "grid" else None
    with reporter.task(f"lambda {config.search_method} ({len(grid)} pairs)", rows) as advance:
        return search_lambdas(config.search_method, c.acts["train"], c.gold["train"], c.acts["dev"],
                              c.gold["dev"], n_classes, grid, config.settings(config.seeds[0]), coef_ranker, {},
                              config.fraction, config.alpha, config.beta, config.unseen_labels, config.grid_memory,
                              advance, c.trainer)
