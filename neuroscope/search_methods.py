"""The lambda search's methods (``--search``; docs/protocol.md, "Faster lambda searches"):
the paper's full grid (:func:`neuroscope.search.lambda_search`), the warm-started path
(:mod:`neuroscope.lambda_path`) and successive halving (:mod:`neuroscope.halving`). All
three score settings by the same S on dev and return a :class:`neuroscope.search.LambdaSearch`."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from neuroscope.choices import DEFAULT_MEMORY, SEARCH_METHODS
from neuroscope.errors import ValidationError
from neuroscope.features import Features
from neuroscope.halving import halving_search
from neuroscope.lambda_path import path_search
from neuroscope.probe import TrainSettings, train_elastic_net
from neuroscope.ranking import Ranking
from neuroscope.search import LambdaSearch, lambda_search


def search_lambdas(method: str, X_train: Features, y_train: np.ndarray, X_dev: Features, y_dev: np.ndarray,
                   n_classes: int, grid: Sequence[tuple[float, float]], settings: TrainSettings,
                   ranker: Callable[..., Ranking], ranker_options: dict[str, Any] | None = None,
                   fraction: float = 0.2, alpha: float = 0.5, beta: float = 0.5, unseen: str = "error",
                   memory: int = DEFAULT_MEMORY, progress: Callable[[int], None] | None = None,
                   trainer: Callable[..., tuple[np.ndarray, np.ndarray]] = train_elastic_net) -> LambdaSearch:
    """The lambda search by ``method`` (:data:`neuroscope.choices.SEARCH_METHODS`). The grid
    trains with any probe's ``trainer``; the path and halving continue trainings epoch by
    epoch, which only the elastic-net probe's trainer does."""
    if method not in SEARCH_METHODS:
        raise ValidationError(f"--search {method!r}: expected one of {', '.join(SEARCH_METHODS)}")
    args = (X_train, y_train, X_dev, y_dev, n_classes, grid, settings, ranker, ranker_options, fraction, alpha, beta,
            unseen, memory, progress)
    if method == "grid":
        return lambda_search(*args, trainer=trainer)
    if trainer is not train_elastic_net:
        raise ValidationError(f"--search {method}: needs the elastic-net probe's trainer (it continues trainings "
                              "epoch by epoch); use --search grid with this probe")
    return (path_search if method == "path" else halving_search)(*args)
