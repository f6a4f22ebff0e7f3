"""One-vs-rest contrast rankers from the class moments (one pass over the train
activations, or the streamed statistics where a run has them): ``mean-diff``, the mean
difference Gurnee et al. 2023 ("Finding Neurons in a Haystack", section 3) prefilter
neurons with, and ``f-stat``, the one-way ANOVA F statistic between a label's tokens and
the rest.

Per label c and neuron j (population moments of train tokens):

* mean-diff: ``|mean_c(j) - mean_rest(j)|``;
* f-stat: with two groups, ``F = (n_c (mean_c - mean)^2 + n_rest (mean_rest - mean)^2)
  / ((n_c var_c + n_rest var_rest) / (n - 2))``, ``mean`` the overall mean (a neuron
  constant on both sides scores 0).

How per-label scores become one ranking decides what the top set holds (an ANOVA ranker
with one overall F per neuron kept fewer of a task's labels in its top 20 % than a random
20 % on CoNLL-2000; issue 25). ``aggregate``:

* ``cover`` (default): the labels take turns, most frequent first, each adding its best
  neuron not yet ranked, as the weight-mass ranking walks every label's weights, so the
  top set covers the labels;
* ``max``: by each neuron's best label score;
* ``overall``: one score over all labels at once (mean-diff: the sum over labels of
  ``n_c |mean_c - mean|`` / n; f-stat: the k-group ANOVA F, between-label over
  within-label mean squares).

Equal scores are taken by neuron id. Labels without train tokens take no part.
"""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, order_by_score, ranker, ranking_from_order, with_label_scores
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice

AGGREGATES = ("cover", "max", "overall")


def moments(inputs: RankerInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(counts, means, variances) of the labels with train tokens (shared class moments),
    and the mask of those labels among all."""
    counts, means = inputs.class_means()
    variances = inputs.class_variances()
    present = counts > 0
    return counts[present].astype(np.float64), means[present], variances[present], present


def one_vs_rest(counts: np.ndarray, means: np.ndarray, variances: np.ndarray, kind: str) -> np.ndarray:
    """(labels, neurons) one-vs-rest score of ``kind`` (mean-diff or f-stat) per label."""
    n = counts.sum()
    c = counts[:, None]
    total = (c * means).sum(axis=0)
    squares = (c * (variances + means * means)).sum(axis=0)  # sum of x^2 over every token
    rest_n = n - c
    with np.errstate(invalid="ignore", divide="ignore"):
        rest_mean = (total - c * means) / rest_n
        if kind == "mean-diff":
            return np.abs(means - rest_mean)
        rest_var = np.maximum((squares - c * (variances + means * means)) / rest_n - rest_mean ** 2, 0.0)
        overall = total / n
        between = c * (means - overall) ** 2 + rest_n * (rest_mean - overall) ** 2
        within = (c * variances + rest_n * rest_var) / max(n - 2, 1)
        return np.where(within > 0, between / np.where(within > 0, within, 1.0), 0.0)


def overall_score(counts: np.ndarray, means: np.ndarray, variances: np.ndarray, kind: str) -> np.ndarray:
    """(neurons,) one score over all labels at once (module docstring, ``overall``)."""
    n = counts.sum()
    c = counts[:, None]
    overall = (c * means).sum(axis=0) / n
    if kind == "mean-diff":
        return (c * np.abs(means - overall)).sum(axis=0) / n
    k = len(counts)
    between = (c * (means - overall) ** 2).sum(axis=0) / max(k - 1, 1)
    within = (c * variances).sum(axis=0) / max(n - k, 1)
    return np.where(within > 0, between / np.where(within > 0, within, 1.0), 0.0)


def covering_order(scores: np.ndarray, counts: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Every neuron (the first ``limit``), the labels taking turns (most frequent first),
    each adding its best neuron not yet in the order; ties by neuron id."""
    n_labels, n = scores.shape
    limit = n if limit is None else min(int(limit), n)
    turns = np.argsort(-counts, kind="stable")
    orders = [np.lexsort((np.arange(n), -np.nan_to_num(scores[c], nan=-np.inf))) for c in turns]
    taken = np.zeros(n, dtype=bool)
    position = [0] * n_labels
    out: list[int] = []
    while len(out) < limit:
        for t, order in enumerate(orders):
            while position[t] < n and taken[order[position[t]]]:
                position[t] += 1
            if position[t] < n and len(out) < limit:
                j = int(order[position[t]])
                taken[j] = True
                out.append(j)
    return np.asarray(out, dtype=np.int64)


def by_labels(scores: np.ndarray, counts: np.ndarray, aggregate: str, method: str) -> Ranking:
    """One ranking from (labels, neurons) per-label scores (labels with ``counts`` train
    tokens): ``max``, by each neuron's best label (NaN scores never win), or ``cover``, the
    labels taking turns (:func:`covering_order`). ``overall`` is each ranker's own score."""
    if aggregate == "max":
        return order_by_score(np.nanmax(np.where(np.isnan(scores), -np.inf, scores), axis=0), method)
    return ranking_from_order(covering_order(scores, counts), method)


def contrast_ranking(inputs: RankerInputs, kind: str, aggregate: str) -> Ranking:
    check_choice(f"{kind} aggregate", aggregate, AGGREGATES)
    counts, means, variances, present = moments(inputs)
    scores = one_vs_rest(counts, means, variances, kind)
    if aggregate == "overall":
        return with_label_scores(order_by_score(overall_score(counts, means, variances, kind), kind), scores, present)
    return with_label_scores(by_labels(scores, counts, aggregate, kind), scores, present)


@ranker(needs=("activations",), cite="Gurnee et al. 2023, Finding Neurons in a Haystack, section 3 (mean "
        "difference, one label against the rest)", cost="one pass over the train activations (class moments); "
        "no probe", aggregate="cover")
def mean_diff(inputs: RankerInputs, aggregate: str = "cover") -> Ranking:
    return contrast_ranking(inputs, "mean-diff", aggregate)


@ranker(needs=("activations",), cite="one-way ANOVA F statistic (Fisher), one label against the rest",
        cost="one pass over the train activations (class moments); no probe", aggregate="cover")
def f_stat(inputs: RankerInputs, aggregate: str = "cover") -> Ranking:
    return contrast_ranking(inputs, "f-stat", aggregate)
