"""The lambda search along a warm-started regularisation path (``--search path``; paper
section 2, "Search", at a fraction of the grid's cost; docs/protocol.md, "Faster lambda
searches").

glmnet (Friedman, Hastie & Tibshirani 2010) fits a grid of penalties from the strongest to
the weakest, each fit starting from its neighbour's solution, so most fits need only a few
iterations. Here the grid is cut into chains, one per L1 value, each running through its
L2 values from the strongest to the weakest (the unregularised (0, 0) ends the L1 = 0
chain). The chains advance together: step j trains the j-th setting of every chain at
once (one read of the data per epoch, as the grid does), each starting from the weights
its chain's previous setting ended with (step 0 from zero), with fresh Adam moments (a
documented reset: the previous setting's moments belong to another objective). A setting
stops by ``--epochs auto``'s loss-plateau rule (:func:`neuroscope.probe.has_converged`,
:data:`neuroscope.probe.PATIENCE` epochs in a row), at most ``--epochs`` epochs; a
stopped setting leaves the training (:meth:`neuroscope.probe.ElasticNetTraining.keep`), so
its neighbours do not pay for it.

A warm start that diverges is trained again from zero and never reported: a setting
whose weights or loss are not finite at its end, whose last epoch's mean cross-entropy
lies above ln(labels) (worse than the all-zero probe), or whose last epoch's loss lies
above its first epoch's by more than :data:`RISE` of it (training from a neighbour's
solution should only lower the loss), is retrained from zero by the same rule and marked
``restarted``; a setting that diverges from zero too fails the run, as any training does.

Each point of the record keeps the epochs it got and the pair it started from.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import numpy as np

from neuroscope.choices import DEFAULT_MEMORY
from neuroscope.features import Features, n_columns
from neuroscope.probe import ElasticNetTraining, TrainSettings, diverged_error, max_epochs, training_record
from neuroscope.ranking import Ranking
from neuroscope.search import DevScores, LambdaSearch, dev_scores, group_size, searched, with_unregularised

log = logging.getLogger(__name__)

#: a warm-started setting whose last epoch's loss exceeds its first epoch's by more than this
#: share of it has diverged and is trained again from zero
RISE = 0.05

Pair = tuple[float, float]


def chains(settings: Sequence[Pair]) -> list[list[Pair]]:
    """The path's chains: per L1 value (strongest first), its settings from the strongest L2
    to the weakest, so that each setting's neighbour is the one before it."""
    by_l1: dict[float, list[Pair]] = {}
    for pair in settings:
        by_l1.setdefault(pair[0], []).append(pair)
    return [sorted(by_l1[l1], key=lambda p: -p[1]) for l1 in sorted(by_l1, reverse=True)]


def warm_start(previous: tuple[np.ndarray, np.ndarray] | None, n_classes: int, width: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The weights a setting starts from: its chain's previous setting's, or zero."""
    if previous is None:
        return np.zeros((n_classes, width), dtype=np.float32), np.zeros(n_classes, dtype=np.float32)
    return previous


def diverged(losses: Sequence[float], finite: bool, cross_entropy: float | None = None,
             n_classes: int | None = None) -> bool:
    """Whether a warm-started setting's training went wrong (module docstring):
    non-finite, its loss risen, or its last mean cross-entropy (``cross_entropy``, the loss
    less the penalties) above ln(labels), worse than the all-zero probe it could start from."""
    if not finite or not all(math.isfinite(v) for v in losses):
        return True
    if cross_entropy is not None and n_classes and cross_entropy > math.log(n_classes):
        return True
    return losses[-1] > losses[0] + RISE * abs(losses[0])


def penalty(coef: np.ndarray, pair: Pair, l2_form: str) -> float:
    """l1 |W|_1 + l2 |W|_2^2 (``l2_form`` "norm": l2 |W|_2) of one probe's weights."""
    weights = coef.astype(np.float64)
    squares = float((weights ** 2).sum())
    return pair[0] * float(np.abs(weights).sum()) + pair[1] * (squares if l2_form == "squared" else math.sqrt(squares))


def path_search(
    X_train: Features,
    y_train: np.ndarray,
    X_dev: Features,
    y_dev: np.ndarray,
    n_classes: int,
    grid: Sequence[Pair],
    settings: TrainSettings,
    ranker: Callable[..., Ranking],
    ranker_options: dict[str, Any] | None = None,
    fraction: float = 0.2,
    alpha: float = 0.5,
    beta: float = 0.5,
    unseen: str = "error",
    memory: int = DEFAULT_MEMORY,
    progress: Callable[[int], None] | None = None,
) -> LambdaSearch:
    """Choose (l1, l2) of ``grid`` along the warm-started path (module docstring); the
    arguments are :func:`neuroscope.search.lambda_search`'s."""
    grid = [(float(a), float(b)) for a, b in grid]
    if not grid:
        raise ValueError("the lambda grid is empty")
    width = n_columns(X_train)
    paths = chains(with_unregularised(grid))
    size = group_size(width, n_classes, len(paths), memory)
    probes: dict[Pair, tuple[np.ndarray, np.ndarray]] = {}
    records: dict[Pair, dict[str, Any] | None] = {}
    details: dict[Pair, dict[str, Any]] = {}
    for step in range(max(len(chain) for chain in paths)):
        pairs = [chain[step] for chain in paths if step < len(chain)]
        starts = {chain[step]: chain[step - 1] if step else None for chain in paths if step < len(chain)}
        for i in range(0, len(pairs), size):
            group = pairs[i : i + size]
            inits = [warm_start(probes.get(starts[pair]), n_classes, width) for pair in group]
            done = train_until_settled(X_train, y_train, n_classes, group, settings, progress,
                                       (np.stack([c for c, _ in inits]), np.stack([b for _, b in inits])))
            again = [pair for pair in group if starts[pair] is not None and diverged(
                done[pair][2], done[pair][3], done[pair][2][-1] - penalty(done[pair][0], pair, settings.l2_form),
                n_classes)]
            if again:
                log.warning("lambda path: the warm start of %s diverged; trained again from zero",
                            ", ".join(f"(l1 {a:g}, l2 {b:g})" for a, b in again))
                done.update(train_until_settled(X_train, y_train, n_classes, again, settings, progress, None))
            for pair in group:
                coef, intercept, losses, finite, converged = done[pair]
                if not finite:
                    raise diverged_error(settings)
                probes[pair] = (coef, intercept)
                records[pair] = training_record((converged, len(losses), losses))
                restarted = pair in again
                details[pair] = {"epochs": len(losses), "start": None if restarted else starts[pair],
                                 "restarted": restarted}
    scores = score_all(X_dev, y_dev, probes, ranker, ranker_options, fraction, unseen, settings.device, size)
    best_probes = {pair: probes[pair] for pair in grid}
    return searched(grid, scores, details, alpha, beta, fraction, settings.seed, "path", best_probes, records)


def train_until_settled(X: Features, y: np.ndarray, n_classes: int, group: Sequence[Pair], settings: TrainSettings,
                        progress: Callable[[int], None] | None, init: tuple[np.ndarray, np.ndarray] | None
                        ) -> dict[Pair, tuple[np.ndarray, np.ndarray, list[float], bool, bool]]:
    """Train ``group`` together from ``init`` (None: zero), each setting until it has settled
    (the plateau rule) or has had the most epochs, leaving the training as it stops. Per
    setting: coef, intercept, its epoch losses, whether its weights are finite, whether it
    converged."""
    training = ElasticNetTraining(X, y, n_classes, group, settings, progress=progress, init=init)
    cap = max_epochs(settings, training.total)
    out: dict[Pair, tuple[np.ndarray, np.ndarray, list[float], bool, bool]] = {}
    while training.lambdas:
        training.epoch()
        finite = training.finite()
        finished = [k for k in range(len(training.lambdas))
                    if training.settled(k) or training.epochs >= cap or not finite[k]]
        if finished:
            coef, intercept = training.weights()
            for k in finished:
                out[training.lambdas[k]] = (coef[k].copy(), intercept[k].copy(), list(training.losses[k]),
                                            bool(finite[k]), training.settled(k))
            training.keep([k for k in range(len(training.lambdas)) if k not in set(finished)])
    return out


def score_all(X_dev: Features, y_dev: np.ndarray, probes: dict[Pair, tuple[np.ndarray, np.ndarray]],
              ranker: Callable[..., Ranking], ranker_options: dict[str, Any] | None, fraction: float, unseen: str,
              device: str, size: int) -> dict[Pair, DevScores]:
    """Every probe's dev scores, ``size`` probes per read of dev."""
    pairs = list(probes)
    scores: dict[Pair, DevScores] = {}
    for i in range(0, len(pairs), size):
        chunk = pairs[i : i + size]
        scores.update(zip(chunk, dev_scores(X_dev, y_dev, [probes[p][0] for p in chunk],
                                            [probes[p][1] for p in chunk], ranker, ranker_options, fraction, unseen,
                                            device)))
    return scores
