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

Two cheaper, inexact starts (issue 26; ``--scan-start``, docs/protocol.md, "Minimal
neuron set") train each size only ``epochs`` epochs (``--scan-epochs``) instead of the
oracle's full training, from weights that are already close:

* ``"oracle"``: every size starts from the oracle probe's own weights on its neurons (the
  others zero). The oracle is an elastic-net solution with these lambdas; restricted to
  its best neurons it is near the probe retrained on them.
* ``"previous"``: the first block is trained as the cold scan trains it; every later block
  starts from the previous block's largest probe, whose neurons are the first of each of
  its sizes (a ranking's top sets are nested), the added neurons at zero.

Their answers can differ from the cold scan's (other probes), which is why they are
options, measured against the cold scan in bench/RESULTS.md; the default stays ``cold``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import attrs
import numpy as np

from neuroscope.ablation import accuracy
from neuroscope.choices import SCAN_STARTS
from neuroscope.errors import ValidationError
from neuroscope.features import Features, n_columns
from neuroscope.probe import (ElasticNetTraining, LinearModel, TrainSettings, diverged_error, predict_many,
                              train_elastic_net)
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
    #: with a warm start (``--scan-start oracle|previous``): its name and the epochs each
    #: warm-started size was trained (the cold scan leaves both out: its record is as before)
    start: str | None = None
    epochs: int | None = None

    def to_json(self) -> dict[str, Any]:
        warm = {} if self.start is None else {"start": self.start, "epochs": self.epochs}
        return {"sizes": list(self.sizes), "dev_accuracies": list(self.dev_accuracies), "oracle_dev": self.oracle_dev,
                "sets": [{**attrs.asdict(s), "neurons": list(s.neurons)} for s in self.sets], **warm}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MinimalScan":
        sets = tuple(MinimalSet(**{**s, "neurons": tuple(s["neurons"])}) for s in data["sets"])
        return cls(tuple(data["sizes"]), tuple(data["dev_accuracies"]), data["oracle_dev"], sets, data.get("start"),
                   data.get("epochs"))

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
    start: str = "cold",
    oracle: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int | None = None,
) -> MinimalScan:
    """The smallest top-N set (N in steps of ``step`` of the network) within each delta of
    the oracle on dev. ``start``: "cold" (the paper's: each size trained from zero as the
    oracle was), "oracle" (each size from ``oracle``'s weights, coef (labels, neurons) and
    intercept (labels), on its neurons) or "previous" (each block after the first from the
    previous block's largest probe); warm-started sizes train ``epochs`` epochs (the module
    docstring)."""
    check_number("oracle_dev", oracle_dev, low=0, high=100)
    if not deltas:
        raise ValidationError("deltas: one or more accuracy margins are needed")
    for delta in deltas:
        check_number("delta", delta, low=0, high=100)
    check_number("block", block, low=1, integer=True)
    if ranking.n_neurons != n_columns(X_train):
        raise ValidationError(f"the ranking orders {ranking.n_neurons} neurons, the activations have "
                              f"{n_columns(X_train)}")
    if start not in SCAN_STARTS:
        raise ValidationError(f"scan start {start!r}: expected one of {', '.join(SCAN_STARTS)}")
    if start != "cold":
        if start == "oracle" and oracle is None:
            raise ValidationError("scan start oracle: the oracle probe's weights are needed")
        if trainer is not train_elastic_net:
            raise ValidationError(f"scan start {start}: needs the elastic-net probe's trainer (it continues given "
                                  "weights); use the cold scan with this probe")
        check_number("epochs", epochs, low=1, integer=True)
    sizes = scan_sizes(ranking.n_neurons, step)
    pending = sorted(set(float(d) for d in deltas), reverse=True)  # larger delta stops first
    found: dict[float, tuple[int, LinearModel, float]] = {}
    accs: list[float] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for first in range(0, len(sizes), block):
        chunk = sizes[first : first + block]
        columns = ranking.order[: chunk[-1]]
        masks = np.zeros((len(chunk), len(columns)), dtype=bool)
        for g, n in enumerate(chunk):
            masks[g, :n] = True
        if start == "oracle":
            begin = (np.asarray(oracle[0])[:, columns], np.asarray(oracle[1]))  # type: ignore[index]
        else:
            begin = previous if start == "previous" else None
        if begin is None:
            coef, intercept = trainer(X_train, y_train, n_classes, [lambdas] * len(chunk), settings,
                                      neurons=columns, progress=progress, masks=masks)
        else:
            coef, intercept = train_from(X_train, y_train, n_classes, lambdas, settings, columns, masks, begin,
                                         epochs, progress)  # type: ignore[arg-type]
        previous = (coef[-1], intercept[-1])  # the block's largest size: all its columns
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
    warm = start != "cold"
    return MinimalScan(tuple(sizes[: len(accs)]), tuple(accs), oracle_dev, tuple(sets), start if warm else None,
                       epochs if warm else None)


def train_from(X: Features, y: np.ndarray, n_classes: int, lambdas: tuple[float, float], settings: TrainSettings,
               columns: np.ndarray, masks: np.ndarray, begin: tuple[np.ndarray, np.ndarray], epochs: int,
               progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """A block of sizes (``masks`` over ``columns``) trained ``epochs`` epochs from ``begin``:
    coef (labels, k) for the first k columns (the rest start at zero) and intercept
    (labels); each size keeps only its own columns' weights (zero elsewhere, where its
    mask keeps them)."""
    coef, intercept = (np.asarray(a, dtype=np.float32) for a in begin)
    weights = np.zeros((len(masks), n_classes, len(columns)), dtype=np.float32)
    weights[:, :, : coef.shape[1]] = coef[None]
    weights *= masks[:, None, :]
    biases = np.repeat(intercept[None, :], len(masks), axis=0)
    training = ElasticNetTraining(X, y, n_classes, [lambdas] * len(masks), settings, columns, progress, masks,
                                  init=(weights, biases))
    for _ in range(epochs):
        training.epoch()
    if not training.finite().all():
        raise diverged_error(settings)
    return training.weights()
