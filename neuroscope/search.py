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

from neuroscope.choices import DEFAULT_MEMORY, PAPER_VALUES, SEARCH_METHODS
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
    """One setting's dev accuracies and S. ``epochs``, ``start`` and ``restarted`` are kept by
    the searches that train settings unequally (``--search path|halving``; None for the
    grid, which trains every setting for ``--epochs``): the epochs it was trained, the pair
    whose probe it started from (None: from zero) and whether a diverged warm start was
    trained again from zero."""

    l1: float
    l2: float
    top: float
    bottom: float
    all: float
    score: float
    epochs: int | None = None
    start: tuple[float, float] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    restarted: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(self).items() if v is not None}


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
    #: how the grid was searched (:data:`SEARCH_METHODS`)
    method: str = "grid"
    #: the pairs the choice is made among: those with their full training (halving's last
    #: round); None: every point
    finalists: tuple[tuple[float, float], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"points": [p.to_json() for p in self.points], "unregularised": self.unregularised,
                "best": list(self.best), "alpha": self.alpha, "beta": self.beta, "fraction": self.fraction,
                "seed": self.seed, "best_training": self.best_training}
        if self.method != "grid":  # a grid search's record stays as it always was
            data["method"] = self.method
        if self.finalists is not None:
            data["finalists"] = [list(pair) for pair in self.finalists]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LambdaSearch":
        finalists = data.get("finalists")
        return cls(tuple(GridPoint(**p) for p in data["points"]), data["unregularised"], tuple(data["best"]),
                   data["alpha"], data["beta"], data["fraction"], data["seed"],
                   best_training=data.get("best_training"), method=data.get("method", "grid"),
                   finalists=None if finalists is None else tuple(tuple(pair) for pair in finalists))

    def contenders(self) -> list[int]:
        """Indices of the points the chosen pair is the best of (:attr:`finalists`)."""
        chosen = None if self.finalists is None else set(self.finalists)
        return [i for i, p in enumerate(self.points) if chosen is None or (p.l1, p.l2) in chosen]


def best_point(points: Sequence[GridPoint], among: Sequence[int] | None = None) -> int:
    """Index of the point of highest S (among ``among``); ties go to the point listed first."""
    candidates = range(len(points)) if among is None else among
    return max(candidates, key=lambda i: (points[i].score, -i))


@attrs.frozen
class DevScores:
    """A probe's dev accuracies with all neurons, its top and its bottom ``fraction``."""

    all: float
    top: float
    bottom: float


def dev_scores(X_dev: Features, y_dev: np.ndarray, coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray],
               ranker: Callable[..., Ranking], ranker_options: dict[str, Any] | None, fraction: float, unseen: str,
               device: str) -> list[DevScores]:
    """A_l, A_t and A_b of each probe (paper section 2, "Search"): its ranking by ``ranker``,
    then all 3 x G probes evaluated over one read of dev."""
    columns = np.arange(coefs[0].shape[1]) if len(coefs) else np.arange(0)
    models: list[LinearModel] = []
    for coef, intercept in zip(coefs, intercepts):
        ranking = ranker(coef, **(ranker_options or {}))
        top, bottom = ranking.top(fraction), ranking.bottom(fraction)
        models += [LinearModel(coef, intercept, columns), LinearModel(coef[:, top], intercept, columns[top]),
                   LinearModel(coef[:, bottom], intercept, columns[bottom])]
    predictions = predict_many(X_dev, models, device)
    return [DevScores(accuracy(predictions[3 * k], y_dev, unseen), accuracy(predictions[3 * k + 1], y_dev, unseen),
                      accuracy(predictions[3 * k + 2], y_dev, unseen)) for k in range(len(coefs))]


def searched(grid: Sequence[tuple[float, float]], scores: dict[tuple[float, float], DevScores],
             details: dict[tuple[float, float], dict[str, Any]], alpha: float, beta: float, fraction: float,
             seed: int, method: str, probes: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]],
             records: dict[tuple[float, float], dict[str, Any] | None],
             finalists: Sequence[tuple[float, float]] | None = None) -> LambdaSearch:
    """The search's record from every setting's dev scores (``scores``, (0, 0) among them)
    and its ``details`` (GridPoint's epochs / start / restarted): S per grid pair, and the
    chosen pair, the best among ``finalists`` (None: all), with its probe and training
    record where ``probes`` / ``records`` hold them."""
    if method not in SEARCH_METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(SEARCH_METHODS)}")
    unregularised = scores[(0.0, 0.0)].all
    points = tuple(GridPoint(a, b, scores[(a, b)].top, scores[(a, b)].bottom, scores[(a, b)].all,
                             selection_score(scores[(a, b)].top, scores[(a, b)].bottom, unregularised,
                                             scores[(a, b)].all, alpha, beta), **details.get((a, b), {}))
                   for a, b in grid)
    final = None if finalists is None else tuple(tuple(pair) for pair in finalists)
    record = LambdaSearch(points, unregularised, (0.0, 0.0), alpha, beta, fraction, seed, method=method,
                          finalists=final)
    best = best_point(points, record.contenders())
    pair = (points[best].l1, points[best].l2)
    return attrs.evolve(record, best=pair, best_probe=probes.get(pair), best_training=records.get(pair))


def score_order(scores: dict[tuple[float, float], DevScores], unregularised: float,
                position: dict[tuple[float, float], int], alpha: float, beta: float) -> Callable[[tuple[float, float]], tuple[float, int]]:
    """The sort key that ranks pairs by S (from ``scores`` and A_z = ``unregularised``), ties
    to the pair listed first in the grid (``position``)."""
    def key(pair: tuple[float, float]) -> tuple[float, int]:
        s = scores[pair]
        return selection_score(s.top, s.bottom, unregularised, s.all, alpha, beta), -position[pair]
    return key


def with_unregularised(grid: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The settings a search trains: the grid's, and (0, 0) for A_z where the grid lacks it."""
    return list(grid) if (0.0, 0.0) in grid else list(grid) + [(0.0, 0.0)]


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
    settings_list = with_unregularised(grid)
    width = n_columns(X_train)
    size = group_size(width, n_classes, len(settings_list), memory)
    scores: dict[tuple[float, float], DevScores] = {}
    position = {pair: i for i, pair in enumerate(grid)}
    kept: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
    records: dict[tuple[float, float], dict[str, Any] | None] = {}
    for start in range(0, len(settings_list), size):
        group = settings_list[start : start + size]
        coef, intercept, report = train_recorded(trainer, X_train, y_train, n_classes, group, settings,
                                                 progress=progress)
        records.update({pair: training_record(report[k]) for k, pair in enumerate(group)})
        scores.update(zip(group, dev_scores(X_dev, y_dev, list(coef), list(intercept), ranker, ranker_options,
                                            fraction, unseen, settings.device)))
        kept.update({pair: (coef[k].copy(), intercept[k].copy()) for k, pair in enumerate(group) if pair in position})
        if (0.0, 0.0) in scores:  # S is computable: keep only the best probe so far
            leader = max(kept, key=score_order(scores, scores[(0.0, 0.0)].all, position, alpha, beta))
            kept = {leader: kept[leader]}
    return searched(grid, scores, {}, alpha, beta, fraction, settings.seed, "grid", kept, records)

