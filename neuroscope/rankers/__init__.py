"""The ranker contract: what a neuron-ranking method is given and what it declares.

A ranker is a function ``rank(inputs, **options) -> Ranking`` marked with
:func:`ranker`, which declares what it needs (``"probe"``: the fitted oracle
probe's weights; ``"activations"``: the train activations and labels; ``"model"``: the
live model, :meth:`RankerInputs.adapter`, and the train sentences), the
paper it implements and its cost. :class:`RankerInputs` gives it the fitted
probe (None when it declares it needs none), an out-of-core reader over the
train activations (chunks, never the whole matrix in RAM), the class id of
every train row, the label names, the :class:`~neuroscope.types.NeuronIndex`
and the seed. Statistics several rankers share (class counts and means) are
computed once per run in one pass over the store (:meth:`RankerInputs.class_means`,
:meth:`RankerInputs.class_active`), or
read from streamed statistics where the run has them (:mod:`neuroscope.statistics`).

A plain function ``f(coef, **options)`` (the contract before rankers could
read activations) still works: it is taken as a ranker that needs the probe.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import attrs
import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.features import Features, iter_chunks, n_columns
from neuroscope.ranking import Ranking, descending
from neuroscope.types import NeuronIndex

NEEDS = ("probe", "activations", "model")


@attrs.frozen
class RankerInputs:
    """Everything a ranker may use (see the module docstring)."""

    train: Features | None  # None: rankers read only ``statistics`` (probe-free rankers, no store)
    labels: np.ndarray
    label_names: tuple[str, ...]
    index: NeuronIndex
    seed: int = 0
    probe: Any = None
    #: statistics computed once and shared by every ranker of the run (not part of equality)
    shared: dict = attrs.field(factory=dict, eq=False, repr=False)
    #: the share of neurons the run's ablation keeps (--fraction), for rankers whose cost grows with it
    fraction: float = 0.2
    #: streamed statistics of ``train`` (:mod:`neuroscope.statistics`): class moments are
    #: read from them instead of a pass over the store
    statistics: Any = attrs.field(default=None, eq=False, repr=False)
    #: for rankers that declare ``needs=("model",)``: a loader of the run's live model
    #: adapter (:class:`neuroscope.model.ModelAdapter`, called once, when first used) and the
    #: train sentences (word lists) whose words are the rows of ``train``
    model: Any = attrs.field(default=None, eq=False, repr=False)
    sentences: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def coef(self) -> np.ndarray:
        """The oracle probe's (labels, neurons) weights."""
        if self.probe is None:
            raise ValidationError("this ranker needs a fitted probe, but none was given (declare needs=('probe',))")
        return np.asarray(self.probe.coef_)

    def adapter(self) -> Any:
        """The run's live model adapter (loaded on first use, then shared by the run's
        rankers), for rankers that declare ``needs=("model",)``."""
        if self.model is None:
            raise ValidationError("this ranker needs the live model, but none was given (declare needs=('model',))")
        if "adapter" not in self.shared:
            self.shared["adapter"] = self.model()
        return self.shared["adapter"]

    @property
    def n_neurons(self) -> int:
        """The number of neurons (columns of ``train``; without a store, of the streamed
        statistics): the length of the Ranking to return."""
        if self.train is None and self.statistics is not None:
            return self.statistics.n_neurons
        return n_columns(self.train)

    def chunks(self, neurons: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 block) over all train rows, in order, a chunk at a time."""
        return iter_chunks(self.train, neurons)

    def class_means(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, means)``: ``counts`` (labels,) int64, the train tokens of each class
        (``label_names`` order; rows labelled -1 are left out), and ``means`` (labels,
        neurons) float64, each class's mean activation per neuron (NaN for a class with no
        train token). From one pass over the store, computed once per run and shared by
        every ranker."""
        counts, sums, _ = self._class_moments()
        with np.errstate(invalid="ignore", divide="ignore"):
            return counts, sums / counts[:, None]

    def class_variances(self) -> np.ndarray:
        """(labels, neurons) float64: each class's variance of each neuron's activation over
        its train tokens (population variance, ddof 0; NaN for a class with no token), for
        ANOVA-, Fisher- or t-statistic rankers. From the same single shared pass as
        :meth:`class_means`."""
        counts, sums, squares = self._class_moments()
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts[:, None]
            return np.maximum(squares / counts[:, None] - means * means, 0.0)

    def _class_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class: token counts, sums and sums of squares of every neuron (float64), one
        pass over the store, once per run."""
        key = ("class_moments", id(self.train))
        if key not in self.shared and self.statistics is not None:
            stats = self.statistics
            if stats.n_neurons != self.n_neurons or stats.label_names != tuple(self.label_names):
                raise ValidationError(f"streamed statistics of {stats.n_neurons} neurons and labels "
                                      f"{stats.label_names[:3]}... do not describe these activations "
                                      f"({self.n_neurons} neurons)")
            self.shared[key] = (stats.counts, stats.sums, stats.squares)
        if key not in self.shared:
            n_classes = len(self.label_names)
            counts = np.bincount(self.labels[self.labels >= 0], minlength=n_classes).astype(np.int64)
            sums = np.zeros((n_classes, self.n_neurons), dtype=np.float64)
            squares = np.zeros_like(sums)
            for start, block in self.chunks():
                y = self.labels[start : start + len(block)]
                _add_by_class(sums, y, block, squares)
            self.shared[key] = (counts, sums, squares)
        return self.shared[key]

    def class_active(self) -> np.ndarray:
        """(labels, neurons) int64: how many of each class's train tokens each neuron is
        active on (value > 0; rows labelled -1 left out), for activation-probability rankers
        (``lape``). From the streamed statistics where the run has them, else one pass over
        the store, computed once per run and shared."""
        key = ("class_active", id(self.train))
        if key not in self.shared and self.statistics is not None:
            self._class_moments()  # checks that the statistics describe these activations
            self.shared[key] = self.statistics.active
        if key not in self.shared:
            active = np.zeros((len(self.label_names), self.n_neurons), dtype=np.float64)
            for start, block in self.chunks():
                _add_by_class(active, self.labels[start : start + len(block)], (block > 0).astype(np.float32))
            self.shared[key] = np.rint(active).astype(np.int64)
        return self.shared[key]

    def overall_mean(self) -> np.ndarray:
        """(neurons,) float64 mean activation over every labelled train token, from
        :meth:`class_means` (no second pass)."""
        counts, means = self.class_means()
        return (counts[:, None] * np.nan_to_num(means)).sum(axis=0) / max(int(counts.sum()), 1)


def _add_by_class(sums: np.ndarray, y: np.ndarray, block: np.ndarray, square: np.ndarray | None = None) -> None:
    """sums[c] += sum of the rows of class c (a one-hot matrix product, float64), and with
    ``square`` square[c] += the sum of their squares. The rows are widened to float64 (and
    squared: exact, a float32's square fits a float64) by torch: numpy's values, several
    times faster."""
    import torch

    keep = y >= 0
    onehot = np.zeros((int(keep.sum()), sums.shape[0]), dtype=np.float64)
    onehot[np.arange(len(onehot)), y[keep]] = 1.0
    rows = torch.from_numpy(np.ascontiguousarray(block if keep.all() else block[keep])).double()
    sums += onehot.T @ rows.numpy()
    if square is not None:
        square += onehot.T @ rows.square_().numpy()


@attrs.frozen
class RankerInfo:
    """What ``neuroscope rankers`` shows of a registered ranker."""

    needs: tuple[str, ...]
    cite: str
    cost: str
    options: dict[str, Any]


def ranker(*, needs: Sequence[str], cite: str, cost: str, **options: Any) -> Callable[[Callable], Callable]:
    """Mark ``f(inputs, **options) -> Ranking`` as a ranker: what it needs (a subset of
    ``("probe", "activations", "model")``), the paper it implements, its cost, and its
    options' defaults (documentation; the function's own defaults apply)."""
    needs = tuple(needs)
    for need in needs:
        if need not in NEEDS:
            raise ValueError(f"a ranker needs a subset of {NEEDS}, got {need!r}")

    def mark(fn: Callable) -> Callable:
        fn.ranker_info = RankerInfo(needs, cite, cost, dict(options))
        return fn

    return mark


class _Unread(BaseException):
    """Raised by :class:`_PlanningInputs` at a ranker's first read of its inputs (a
    BaseException, so a ranker's own ``except Exception`` does not swallow it)."""


class _PlanningInputs:
    """Inputs that stop a ranker at its first read: its option checks have run by then."""

    def __getattr__(self, name: str) -> Any:
        raise _Unread


def check_options(obj: Callable, options: dict[str, Any]) -> None:
    """Refuse bad option values before anything is loaded: the ranker is called with inputs
    that stop it at its first read, so the checks it makes first (docs/plugins.md: check
    the options, then read the inputs) raise their ValidationError here. A plain
    ``f(coef, **options)`` is left to its run."""
    if not hasattr(obj, "ranker_info"):
        return
    try:
        obj(_PlanningInputs(), **options)
    except _Unread:
        return
    except ValidationError:
        raise
    except Exception:  # noqa: BLE001 - anything else is the run's to report, with real inputs
        return


def info_of(obj: Callable) -> RankerInfo:
    """The declaration of a registered ranker (a legacy ``f(coef, **options)`` needs the probe)."""
    return getattr(obj, "ranker_info", None) or RankerInfo(("probe",), "", "", {})


def call_ranker(obj: Callable, inputs: RankerInputs, **options: Any) -> Ranking:
    """Run a registered ranker on ``inputs`` and check that it returned a permutation of the neurons."""
    if hasattr(obj, "ranker_info"):
        result = obj(inputs, **options)
    else:
        result = obj(inputs.coef, **options)
    if not isinstance(result, Ranking):
        raise ValidationError(f"ranker {getattr(obj, '__name__', obj)!r} returned {type(result).__name__}, "
                              "not a neuroscope Ranking")
    n = inputs.n_neurons
    if result.n_neurons != n or not np.array_equal(np.sort(result.order), np.arange(n)):
        raise ValidationError(f"ranker {getattr(obj, '__name__', obj)!r} did not return a permutation of the "
                              f"{n} neurons")
    return result


def ranking_from_order(order: Sequence[int] | np.ndarray, method: str) -> Ranking:
    """A Ranking from an ordering of every neuron; ``entry_share`` holds each neuron's rank
    share (0 for the first neuron)."""
    order = np.asarray(order, dtype=np.int64)
    entry = np.empty(len(order), dtype=np.float64)
    entry[order] = np.arange(len(order)) / max(1, len(order))
    return Ranking(order, entry, method)


def every_label(scores: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """(labels, neurons) float64: ``scores``, a row per label, or, with the boolean mask
    ``present``, a row per label where it is True (the others NaN: no score)."""
    scores = np.asarray(scores, dtype=np.float64)
    if present is None:
        return scores
    full = np.full((len(present), scores.shape[1]), np.nan)
    full[np.asarray(present, dtype=bool)] = scores
    return full


def with_label_scores(ranking: Ranking, scores: np.ndarray, present: np.ndarray | None = None) -> Ranking:
    """``ranking`` with each label's own scores (:attr:`Ranking.label_scores`), laid out by
    :func:`every_label`."""
    return attrs.evolve(ranking, label_scores=every_label(scores, present))


def order_by_score(score: np.ndarray, method: str) -> Ranking:
    """A Ranking from one score per neuron, highest first; ties by neuron id; NaN last."""
    return ranking_from_order(descending(score), method)


__all__ = ["NEEDS", "RankerInfo", "RankerInputs", "call_ranker", "check_options", "info_of", "order_by_score", "ranker",
           "ranking_from_order", "with_label_scores"]
