"""Planted ground truth for neuron rankers (issue 25, NeuronBench part a): synthetic
activation sets in which known neurons encode each label, and the scores of a ranking
against them.

Why: rankers are usually judged by one another (Jaccard, Spearman) or by the probe that
also made one of them (Antverg & Belinkov, ICLR 2022, section 4: rankings and the probes
that judge them must be separated), and the survey of the field (Sajjad, Durrani & Dalvi,
TACL 2022, section 7) lists the missing standard evaluation as the open problem. Planted
data has an answer.

A :class:`Planting` draws ``tokens`` labels (label c with probability proportional to
``(c + 1) ** -skew``, so 0 is uniform) and ``neurons`` values of standard normal noise
times ``noise``, then plants, for every label, ``per_label`` neurons whose value rises by
``shift`` on the label's tokens. The harder settings:

* ``spread`` (superposition, a label over several neurons): each planted neuron of a
  label carries ``shift / sqrt(spread)`` and the label has ``per_label x spread`` of them,
  so no single one is as clear as in the clean setting, but together they are;
* ``shared`` (several labels on one neuron, polysemantic): each planted neuron also rises
  on the tokens of ``shared`` other labels;
* ``copies`` (redundancy): every planted neuron has that many copies, each with its own
  noise; the copies are planted too;
* ``distractors``: a share of the unplanted neurons with ``distractor_scale`` times the
  noise, and heavy tails (Student t, 3 degrees of freedom), unrelated to the labels;
* ``relu``: every value passed through ``max(0, x - 1)``, so neurons are sparse and
  "active" means something (the MLP site's shape, what ``lape`` reads).

Scores of a ranking (:func:`score_ranking`): recall at k (the share of the planted
neurons in the ranking's first k, k = the number planted), and the average precision of
the planted set over the whole ordering (1 when they come first, about the planted share
for a random order). Deterministic: everything is drawn from the seed.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.validation import check_number


@attrs.frozen
class Planting:
    """One planted setting (see the module docstring)."""

    tokens: int = 4000
    neurons: int = 256
    labels: int = 8
    per_label: int = 2
    shift: float = 2.5
    noise: float = 1.0
    skew: float = 0.0
    spread: int = 1
    shared: int = 0
    copies: int = 0
    distractors: float = 0.0
    distractor_scale: float = 6.0
    relu: bool = False

    def check(self) -> None:
        check_number("planted tokens", self.tokens, low=10, integer=True)
        check_number("planted labels", self.labels, low=2, integer=True)
        check_number("planted per_label", self.per_label, low=1, integer=True)
        check_number("planted spread", self.spread, low=1, integer=True)
        check_number("planted shared (other labels per neuron)", self.shared, low=0, high=self.labels - 1,
                     integer=True)
        check_number("planted copies", self.copies, low=0, integer=True)
        check_number("planted shift", self.shift, low=0, low_open=True)
        check_number("planted noise", self.noise, low=0, low_open=True)
        check_number("planted skew", self.skew, low=0)
        check_number("planted distractors (a share)", self.distractors, low=0, high=1)
        check_number("planted neurons", self.neurons, low=self.n_planted + 1, integer=True)

    @property
    def n_planted(self) -> int:
        """How many neurons carry label information (copies included)."""
        return self.labels * self.per_label * self.spread * (1 + self.copies)


@attrs.frozen(eq=False)
class PlantedData:
    """Activations ``X`` (tokens, neurons) float32, labels ``y``, and the truth: ``planted``
    (the neurons that carry label information, sorted) and ``by_label`` (label -> its
    planted neurons), split into ``train`` rows and ``test`` rows (the last quarter)."""

    X: np.ndarray
    y: np.ndarray
    planted: np.ndarray
    by_label: dict[int, np.ndarray]
    label_names: tuple[str, ...]
    train: slice
    test: slice


def plant(setting: Planting, seed: int) -> PlantedData:
    """Draw one planted data set of ``setting`` from ``seed``."""
    setting.check()
    rng = np.random.default_rng([seed, 25])
    weights = (np.arange(setting.labels) + 1.0) ** -setting.skew
    y = rng.choice(setting.labels, size=setting.tokens, p=weights / weights.sum())
    X = rng.standard_normal((setting.tokens, setting.neurons)) * setting.noise
    neurons = rng.permutation(setting.neurons)  # planted neurons at random positions
    strength = setting.shift / math.sqrt(setting.spread)
    by_label: dict[int, list[int]] = {c: [] for c in range(setting.labels)}
    position = 0
    for c in range(setting.labels):
        for _ in range(setting.per_label * setting.spread):
            group = neurons[position : position + 1 + setting.copies]
            position += 1 + setting.copies
            others = (c + 1 + np.arange(setting.shared)) % setting.labels
            on = np.isin(y, np.concatenate([[c], others]))
            X[:, group] += strength * on[:, None]
            for label in (c, *others.tolist()):
                by_label[label].extend(group.tolist())
    rest = neurons[position:]
    loud = rest[: int(round(setting.distractors * len(rest)))]
    X[:, loud] = rng.standard_t(3, size=(setting.tokens, len(loud))) * setting.noise * setting.distractor_scale
    if setting.relu:
        X = np.maximum(X - 1.0, 0.0)
    split = setting.tokens * 3 // 4
    planted = np.sort(neurons[:position])
    return PlantedData(X.astype(np.float32), y.astype(np.int64), planted,
                       {c: np.unique(v) for c, v in by_label.items()},
                       tuple(f"L{c}" for c in range(setting.labels)), slice(0, split), slice(split, None))


def score_ranking(order: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """``recall_at_k``: the share of ``planted`` among the first k = len(planted) of
    ``order``; ``ap``: the mean over the planted neurons of the precision at their rank."""
    order = np.asarray(order)
    k = len(planted)
    is_planted = np.isin(order, planted)
    ranks = np.flatnonzero(is_planted) + 1
    return {"recall_at_k": float(is_planted[:k].sum() / k),
            "ap": float(np.mean(np.arange(1, len(ranks) + 1) / ranks))}


def bootstrap_interval(values: np.ndarray, seed: int = 0, resamples: int = 2000,
                       level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` over its last axis (the
    seeds), seeded. More axes (e.g. settings x seeds) resample the seeds jointly and
    average over everything."""
    values = np.asarray(values, dtype=np.float64)
    seeds = values.shape[-1]
    if seeds < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng([seed, 2025])
    picks = rng.integers(0, seeds, size=(resamples, seeds))
    means = values[..., picks].reshape(-1, resamples, seeds).mean(axis=(0, 2))
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


#: the benchmark's settings: a clean one and one per difficulty (module docstring)
SETTINGS: dict[str, Planting] = {
    "clean": Planting(),
    "skewed": Planting(labels=16, skew=1.5, shift=1.5),
    "superposition": Planting(spread=4),
    "polysemantic": Planting(shared=1, shift=1.5),
    "redundant": Planting(copies=2, shift=1.5),
    "distractors": Planting(distractors=0.3, shift=1.5),
    "noisy": Planting(tokens=2000, shift=0.4),
    "sparse": Planting(relu=True, shift=1.5),
    "hard": Planting(labels=12, skew=1.0, spread=2, shared=1, distractors=0.3, shift=1.5),
}


def setting_of(spec: str | dict[str, Any]) -> Planting:
    """A named setting of :data:`SETTINGS`, or one from a dict of :class:`Planting` fields."""
    if isinstance(spec, dict):
        unknown = set(spec) - {a.name for a in attrs.fields(Planting)}
        if unknown:
            raise ValidationError(f"unknown planted setting fields {sorted(unknown)}; "
                             f"expected some of {[a.name for a in attrs.fields(Planting)]}")
        return Planting(**spec)
    if spec not in SETTINGS:
        raise ValidationError(f"unknown planted setting {spec!r}; expected one of {', '.join(SETTINGS)}")
    return SETTINGS[spec]
