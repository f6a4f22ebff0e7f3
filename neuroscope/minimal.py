"""Minimal neuron selection (paper section 2, "Minimal Neuron Selection";
section 4.2, Tables 2, 3 and 7).

Given the oracle (a probe on all neurons with the chosen lambdas) and its
ranking, retrain a probe on the top N neurons, N growing by 1 % of the
network at every step, until its dev accuracy is within delta of the oracle's:
the first N with ``acc(N) >= oracle - delta``.

The scan is exact but cheap: the candidate sizes are trained in blocks over
one read of the data, each size as its own probe restricted to its neurons
(``train_elastic_net(..., masks=...)``; masked weights stay exactly zero, so
each is the probe trained on that subset alone). Sizes are then checked in
increasing order with the same stopping rule, so the answer is the 1 % scan's
answer, with one data pass per block instead of one per size
(``tests/test_minimal.py`` compares it with a size-by-size scan).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import attrs
import numpy as np

from neuroscope.ablation import accuracy
from neuroscope.errors import ValidationError
from neuroscope.features import Features, n_columns
from neuroscope.probe import LinearModel, TrainSettings, predict_many, train_elastic_net
from neuroscope.ranking import Ranking
from neuroscope.validation import check_number


def scan_sizes(n_neurons: int, step: float = 0.01) -> list[int]:
    """N for every step of the scan: k * step * neurons rounded half up, k = 1, 2, ...;
    at least 1, each size once, ending at all neurons."""
    check_number("step", step, low=0, high=1, low_open=True)
    sizes: list[int] = []
    k = 1
    while True:
        n = min(n_neurons, max(1, math.floor(k * step * n_neurons + 0.5)))
        if not sizes or n > sizes[-1]:
            sizes.append(n)
        if n == n_neurons:
            return sizes
        k += 1


def first_within(accuracies: Sequence[float], oracle: float, delta: float) -> int | None:
    """Index of the first accuracy not less than ``oracle - delta`` (the stopping rule), or None."""
    for i, acc in enumerate(accuracies):
        if acc >= oracle - delta:
            return i
    return None


@attrs.frozen
class MinimalSet:
    """The minimal neuron set for one delta."""

    delta: float
    n_neurons: int
    share: float
    neurons: tuple[int, ...]
    dev_accuracy: float
    test_accuracy: float


@attrs.frozen
class MinimalScan:
    sizes: tuple[int, ...]
    dev_accuracies: tuple[float, ...]
    oracle_dev: float
    sets: tuple[MinimalSet, ...]

    def to_json(self) -> dict[str, Any]:
        return {"sizes": list(self.sizes), "dev_accuracies": list(self.dev_accuracies), "oracle_dev": self.oracle_dev,
                "sets": [{**attrs.asdict(s), "neurons": list(s.neurons)} for s in self.sets]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MinimalScan":
        sets = tuple(MinimalSet(**{**s, "neurons": tuple(s["neurons"])}) for s in data["sets"])
        return cls(tuple(data["sizes"]), tuple(data["dev_accuracies"]), data["oracle_dev"], sets)

    def for_delta(self, delta: float) -> MinimalSet:
        return next(s for s in self.sets if s.delta == delta)


def minimal_neuron_scan(
    X_train: Features,
    y_train: np.ndarray,
    X_dev: Features,
    y_dev: np.ndarray,
    X_test: Features,
    y_test: np.ndarray,
    n_classes: int,
    ranking: Ranking,
    lambdas: tuple[float, float],
    settings: TrainSettings,
    oracle_dev: float,
    deltas: Sequence[float] = (0.5, 2.0),
    step: float = 0.01,
    block: int = 8,
    unseen: str = "error",
    progress: Callable[[int], None] | None = None,
    trainer: Callable[..., tuple[np.ndarray, np.ndarray]] = train_elastic_net,
) -> MinimalScan:
    """The smallest top-N set (N in steps of ``step`` of the network) within each delta of the oracle on dev."""
    check_number("oracle_dev", oracle_dev, low=0, high=100)
    if not deltas:
        raise ValidationError("deltas: one or more accuracy margins are needed")
    for delta in deltas:
        check_number("delta", delta, low=0, high=100)
    check_number("block", block, low=1, integer=True)
    if ranking.n_neurons != n_columns(X_train):
        raise ValidationError(f"the ranking orders {ranking.n_neurons} neurons, the activations have "
                              f"{n_columns(X_train)}")
    sizes = scan_sizes(ranking.n_neurons, step)
    pending = sorted(set(float(d) for d in deltas), reverse=True)  # larger delta stops first
    found: dict[float, tuple[int, LinearModel, float]] = {}
    accs: list[float] = []
    for start in range(0, len(sizes), block):
        chunk = sizes[start : start + block]
        columns = ranking.order[: chunk[-1]]
        masks = np.zeros((len(chunk), len(columns)), dtype=bool)
        for g, n in enumerate(chunk):
            masks[g, :n] = True
        coef, intercept = trainer(X_train, y_train, n_classes, [lambdas] * len(chunk), settings,
                                            neurons=columns, progress=progress, masks=masks)
        models = [LinearModel(coef[g][:, :n], intercept[g], columns[:n]) for g, n in enumerate(chunk)]
        predictions = predict_many(X_dev, models, settings.device)
        for g, n in enumerate(chunk):
            acc = accuracy(predictions[g], y_dev, unseen)
            accs.append(acc)
            for delta in list(pending):
                if acc >= oracle_dev - delta:
                    found[delta] = (n, models[g], acc)
                    pending.remove(delta)
            last = (n, models[g], acc)
        if not pending:
            break
    for delta in pending:  # even all neurons retrained fall short (only for delta near 0): take all
        found[delta] = last
    sets = []
    chosen = sorted(found.items())
    test_predictions = predict_many(X_test, [m for _, (_, m, _) in chosen], settings.device)
    for k, (delta, (n, model, dev_acc)) in enumerate(chosen):
        sets.append(MinimalSet(delta, n, n / ranking.n_neurons, tuple(int(j) for j in np.sort(model.columns)),
                               dev_acc, accuracy(test_predictions[k], y_test, unseen)))
    return MinimalScan(tuple(sizes[: len(accs)]), tuple(accs), oracle_dev, tuple(sets))
