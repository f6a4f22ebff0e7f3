"""The lambda search by successive halving (``--search halving``; paper section 2,
"Search", at a fraction of the grid's cost; docs/protocol.md, "Faster lambda searches").

The grid search trains every (l1, l2) for the full ``--epochs`` before scoring it. Successive
halving (Jamieson & Talwalkar 2016, the inner loop of Hyperband, Li et al. 2018) spends
less on the settings that lose: every setting is trained a little, S is computed from the
partial probes exactly as the grid computes it (their rankings, top and bottom ablations
on dev, A_z from the unregularised probe trained as long), the better half goes on, and so
on until the last round, whose settings get their full training and are chosen among by S.

Rounds (:func:`rungs`): with E epochs, the survivors are trained up to ceil(E / 2^j)
epochs for j = ceil(log2 E), ..., 1, 0 (E = 10: 1, 2, 3, 5, 10), and after each round but
the last the best half (rounded up, at least :data:`MIN_FINALISTS`) of the other
contenders is kept. The first round is not judged before every setting has had
:data:`MIN_ROUND_STEPS` optimiser steps: on a small corpus an epoch is a dozen
mini-batches, and probes that young rank the lambdas at random (MiniLM x PMB sem tags,
1,000 sentences, 13 steps an epoch: after 13 and 26 steps the grid's final three best
pairs stood 25th-42nd of 65 by their partial S, after 39 steps 1st-6th; bench/RESULTS.md).
Rounds that would end earlier are merged into the first that does not. The unregularised
setting (0, 0) is trained through every round whatever its S, as A_z needs it (and,
where it is a grid pair, it competes in the last round). A survivor is continued, not
retrained: its weights and Adam state go on from where the round left them
(:class:`neuroscope.probe.ElasticNetTraining`), and the batch order of each epoch is that
of the grid's training with the same seed, so a finalist is the grid's probe for its pair.
With the paper's 64 pairs and 10 epochs the settings get 233 setting-epochs
(:func:`halving_epochs` of the 63 pairs besides (0, 0): 63 + 32 + 16 x 8 = 223, and
(0, 0)'s 10) instead of 640.

Every setting's record (:class:`neuroscope.search.GridPoint`) keeps the epochs it got and
the S of its last round; ``finalists`` names the last round's settings.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import numpy as np

from neuroscope.choices import DEFAULT_MEMORY
from neuroscope.errors import ValidationError
from neuroscope.features import Features, n_columns, n_rows
from neuroscope.probe import ElasticNetTraining, TrainSettings, diverged_error, steps_per_epoch, training_record
from neuroscope.ranking import Ranking
from neuroscope.search import (DevScores, LambdaSearch, dev_scores, group_size, score_order, searched,
                               with_unregularised)

log = logging.getLogger(__name__)

#: the fewest optimiser steps a setting has had when the first round is judged (module docstring)
MIN_ROUND_STEPS = 40
#: the fewest settings (besides (0, 0)) halving keeps: the last cuts, made on probes trained
#: half their epochs or less, are where the partial S misjudges most. On the whole PTB sample
#: (MiniLM, 64 pairs) 2 finalists let the grid's choice be cut at 3 or 5 epochs on seeds 0
#: and 2 (chosen pairs 2.1 and 5.1 below the grid's best S), 8 on seed 2, 16 on neither
#: (docs/protocol.md): with the paper's grid, a quarter of the settings train fully
MIN_FINALISTS = 16


def rungs(epochs: int, first: int = 1) -> list[int]:
    """The epochs the survivors have after each round: ceil(E / 2^j), j = ceil(log2 E) .. 0,
    each once (E = 10: [1, 2, 3, 5, 10]); no round before ``first`` epochs (rounds that
    would end earlier become one round at ``first``, at most E)."""
    if epochs < 1:
        raise ValueError(f"epochs {epochs}: expected at least 1")
    first = min(max(1, int(first)), epochs)
    top = math.ceil(math.log2(epochs)) if epochs > 1 else 0
    out: list[int] = []
    for j in range(top, -1, -1):
        e = max(first, -(-epochs // 2 ** j))
        if not out or e > out[-1]:
            out.append(e)
    return out


def first_round(rows: int, batch_size: int) -> int:
    """The epochs after which every setting has had :data:`MIN_ROUND_STEPS` optimiser steps."""
    return max(1, -(-MIN_ROUND_STEPS // steps_per_epoch(rows, batch_size)))


def halving_epochs(n_settings: int, epochs: int, first: int = 1) -> int:
    """Setting-epochs successive halving trains for ``n_settings`` contenders (the
    unregularised reference not counted) with its first round at ``first`` epochs or
    later: what the module docstring adds up."""
    total, alive, done = 0, n_settings, 0
    ladder = rungs(epochs, first)
    for r, e in enumerate(ladder):
        total += alive * (e - done)
        done = e
        if r < len(ladder) - 1:
            alive = min(alive, max(MIN_FINALISTS, -(-alive // 2)))
    return total


def halving_search(
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
) -> LambdaSearch:
    """Choose (l1, l2) of ``grid`` by successive halving (module docstring); the arguments
    are :func:`neuroscope.search.lambda_search`'s. ``settings.epochs`` must be a number."""
    grid = [(float(a), float(b)) for a, b in grid]
    if not grid:
        raise ValueError("the lambda grid is empty")
    if settings.epochs == "auto":
        raise ValidationError("--search halving: needs a number of --epochs (its rounds train the survivors "
                              "shares of them), not auto")
    position = {pair: i for i, pair in enumerate(grid)}
    reference = (0.0, 0.0)
    settings_list = with_unregularised(grid)
    width = n_columns(X_train)
    size = group_size(width, n_classes, len(settings_list), memory)
    if len(settings_list) > size:
        log.info("successive halving holds the training state of all %d settings between rounds (%d per "
                 "training, --grid-memory allows %d at once)", len(settings_list), size, size)
    trainings = [ElasticNetTraining(X_train, y_train, n_classes, settings_list[i : i + size], settings,
                                    progress=progress) for i in range(0, len(settings_list), size)]
    scores: dict[tuple[float, float], DevScores] = {}
    epochs_of: dict[tuple[float, float], int] = {}
    ladder = rungs(int(settings.epochs), first_round(n_rows(X_train), settings.batch_size))
    for r, target in enumerate(ladder):
        for training in trainings:
            while training.epochs < target:
                training.epoch()
            if not training.finite().all():
                raise diverged_error(settings)
            coef, intercept = training.weights()
            scores.update(zip(training.lambdas, dev_scores(X_dev, y_dev, list(coef), list(intercept), ranker,
                                                           ranker_options, fraction, unseen, settings.device)))
            epochs_of.update((pair, training.epochs) for pair in training.lambdas)
        alive = [pair for training in trainings for pair in training.lambdas if pair in position]
        if r == len(ladder) - 1:
            break
        key = score_order(scores, scores[reference].all, position, alpha, beta)
        others = [pair for pair in alive if pair != reference]
        survivors = set(sorted(others, key=key, reverse=True)[: max(MIN_FINALISTS, -(-len(others) // 2))])
        survivors |= {reference}
        log.debug("halving round %d (%d epochs): %d of %d settings go on", r + 1, target, len(survivors), len(alive))
        for training in trainings:
            training.keep([k for k, pair in enumerate(training.lambdas) if pair in survivors])
        trainings = [training for training in trainings if training.lambdas]
    finalists = [pair for pair in grid if pair in set(alive)]
    probes: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
    records: dict[tuple[float, float], dict[str, Any] | None] = {}
    for training in trainings:
        coef, intercept = training.weights()
        for k, (pair, entry) in enumerate(zip(training.lambdas, training.record())):
            probes[pair] = (coef[k].copy(), intercept[k].copy())
            records[pair] = training_record(entry)
    details = {pair: {"epochs": epochs_of[pair]} for pair in grid}
    return searched(grid, scores, details, alpha, beta, fraction, settings.seed, "halving", probes, records,
                    finalists)
