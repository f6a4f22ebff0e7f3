"""Automatic choice of the elastic-net lambdas (paper section 2, "Search";
appendix A.2 and A.3).

For every (l1, l2) of a grid a probe is trained on train, its neurons are
ranked, and on dev

    S(l1, l2) = alpha * (A_t - A_b) - beta * (A_z - A_l)

is computed, with A_t / A_b the accuracy keeping only the top / bottom M % of
neurons (the rest zeroed), A_z the accuracy of the unregularised probe
(l1 = l2 = 0) and A_l the accuracy of this probe with all neurons. The pair
with the highest S wins; ties go to the pair listed first in the grid.

The winner's probe is kept (``LambdaSearch.best_probe``): it was trained with
the search's seed and settings, so it *is* that seed's oracle, and the
orchestrator uses it instead of training the same probe again.

All grid points train together over one read of the activations
(:func:`neuroscope.probe.train_elastic_net`), in groups sized to a memory
budget, and all 3 x G evaluations share one read of dev.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs
import numpy as np

from neuroscope.choices import DEFAULT_MEMORY, PAPER_VALUES
from neuroscope.ablation import accuracy
from neuroscope.features import Features, n_columns
from neuroscope.probe import (LinearModel, TrainSettings, predict_many, train_elastic_net, train_recorded,
                              training_record)
from neuroscope.ranking import Ranking



def lambda_grid(values: Sequence[float] = PAPER_VALUES) -> list[tuple[float, float]]:
    """Every (l1, l2) pair of ``values``: the paper's 8 x 8 grid by default."""
    return [(float(a), float(b)) for a in values for b in values]


def selection_score(top: float, bottom: float, unregularised: float, this: float,
                    alpha: float = 0.5, beta: float = 0.5) -> float:
    """S = alpha * (A_t - A_b) - beta * (A_z - A_l)."""
    return alpha * (top - bottom) - beta * (unregularised - this)


@attrs.frozen
class GridPoint:
    l1: float
    l2: float
    top: float
    bottom: float
    all: float
    score: float


@attrs.frozen
class LambdaSearch:
    """Every grid point with its dev accuracies and score, and the chosen pair."""

    points: tuple[GridPoint, ...]
    unregularised: float
    best: tuple[float, float]
    alpha: float
    beta: float
    fraction: float
    seed: int
    #: (coef (labels, neurons), intercept (labels,)) of the chosen pair's probe; not in the JSON
    best_probe: tuple[np.ndarray, np.ndarray] | None = attrs.field(default=None, eq=False, repr=False)
    #: the chosen pair's training record (probe.training_record), None if the trainer keeps none
    best_training: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"points": [attrs.asdict(p) for p in self.points], "unregularised": self.unregularised,
                "best": list(self.best), "alpha": self.alpha, "beta": self.beta, "fraction": self.fraction,
                "seed": self.seed, "best_training": self.best_training}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LambdaSearch":
        return cls(tuple(GridPoint(**p) for p in data["points"]), data["unregularised"], tuple(data["best"]),
                   data["alpha"], data["beta"], data["fraction"], data["seed"],
                   best_training=data.get("best_training"))


def group_size(n_neurons: int, n_classes: int, n_settings: int, memory: int = DEFAULT_MEMORY) -> int:
    """How many settings train together: weights, gradients and two Adam moments
    (16 bytes per weight) of a group fit in ``memory``."""
    per_setting = 16 * n_neurons * n_classes
    return max(1, min(n_settings, memory // per_setting))


def lambda_search(
    X_train: Features,
    y_train: np.ndarray,
    X_dev: Features,
    y_dev: np.ndarray,
    n_classes: int,
    grid: Sequence[tuple[float, float]],
    settings: TrainSettings,
    ranker: Callable[..., Ranking],
    ranker_options: dict[str, Any] | None = None,
    fraction: float = 0.2,
    alpha: float = 0.5,
    beta: float = 0.5,
    unseen: str = "error",
    memory: int = DEFAULT_MEMORY,
    progress: Callable[[int], None] | None = None,
    trainer: Callable[..., tuple[np.ndarray, np.ndarray]] = train_elastic_net,
) -> LambdaSearch:
    """Score every (l1, l2) of ``grid`` on dev and choose the best (see module docstring).

    ``y_train`` are class ids in [0, n_classes); ``y_dev`` may hold -1 for labels
    unseen in train (handled by ``unseen``).
    """
    grid = [(float(a), float(b)) for a, b in grid]
    if not grid:
        raise ValueError("the lambda grid is empty")
    settings_list = list(grid) if (0.0, 0.0) in grid else list(grid) + [(0.0, 0.0)]
    width = n_columns(X_train)
    size = group_size(width, n_classes, len(settings_list), memory)
    columns = np.arange(width)
    dev_all: dict[tuple[float, float], float] = {}
    dev_top: dict[tuple[float, float], float] = {}
    dev_bottom: dict[tuple[float, float], float] = {}
    position = {pair: i for i, pair in enumerate(grid)}
    kept: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
    records: dict[tuple[float, float], dict[str, Any] | None] = {}
    for start in range(0, len(settings_list), size):
        group = settings_list[start : start + size]
        coef, intercept, report = train_recorded(trainer, X_train, y_train, n_classes, group, settings,
                                                 progress=progress)
        records.update({pair: training_record(report[k]) for k, pair in enumerate(group)})
        models: list[LinearModel] = []
        for k in range(len(group)):
            ranking = ranker(coef[k], **(ranker_options or {}))
            top, bottom = ranking.top(fraction), ranking.bottom(fraction)
            models += [LinearModel(coef[k], intercept[k], columns),
                       LinearModel(coef[k][:, top], intercept[k], columns[top]),
                       LinearModel(coef[k][:, bottom], intercept[k], columns[bottom])]
        predictions = predict_many(X_dev, models, settings.device)
        for k, pair in enumerate(group):
            dev_all[pair] = accuracy(predictions[3 * k], y_dev, unseen)
            dev_top[pair] = accuracy(predictions[3 * k + 1], y_dev, unseen)
            dev_bottom[pair] = accuracy(predictions[3 * k + 2], y_dev, unseen)
        kept.update({pair: (coef[k].copy(), intercept[k].copy()) for k, pair in enumerate(group) if pair in position})
        if (0.0, 0.0) in dev_all:  # S is computable: keep only the best probe so far
            def key(pair: tuple[float, float]) -> tuple[float, int]:
                score = selection_score(dev_top[pair], dev_bottom[pair], dev_all[(0.0, 0.0)], dev_all[pair], alpha, beta)
                return score, -position[pair]
            leader = max(kept, key=key)
            kept = {leader: kept[leader]}
    unregularised = dev_all[(0.0, 0.0)]
    points = tuple(
        GridPoint(a, b, dev_top[(a, b)], dev_bottom[(a, b)], dev_all[(a, b)],
                  selection_score(dev_top[(a, b)], dev_bottom[(a, b)], unregularised, dev_all[(a, b)], alpha, beta))
        for a, b in grid
    )
    best = max(range(len(points)), key=lambda i: (points[i].score, -i))
    pair = (points[best].l1, points[best].l2)
    return LambdaSearch(points, unregularised, pair, alpha, beta, fraction, settings.seed, kept.get(pair),
                        records.get(pair))

