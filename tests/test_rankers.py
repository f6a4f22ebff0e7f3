"""The ranking methods on hand-built activations whose answer is known, and the ranker contract."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuroscope.errors import ValidationError
from neuroscope.rankers import RankerInputs, call_ranker, info_of, order_by_score
from neuroscope.rankers.gaussian import gaussian
from neuroscope.rankers.iou import average_precisions, iou
from neuroscope.rankers.probeless import pairwise_mean_differences, probeless
from neuroscope.rankers.random_baseline import random_order
from neuroscope.ranking import weight_mass_ranking
from neuroscope.types import NeuronIndex


def planted(n=900, seed=0):
    """Three labels; neuron 3 separates all of them, neuron 1 tells label 0 from the rest,
    neurons 0, 2, 4, 5 are noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    X[:, 3] += 4.0 * y
    X[:, 1] += 3.0 * (y == 0)
    return X, y


def inputs(X, y, **kw):
    return RankerInputs(X, y, ("A", "B", "C"), NeuronIndex(("emb", "1"), 3), **kw)


def test_probeless_matches_the_pairwise_definition():
    X, y = planted()
    means = np.stack([X[y == c].mean(0) for c in range(3)]).astype(np.float64)
    brute = sum(np.abs(a - b) for a, b in itertools.combinations(means, 2))
    np.testing.assert_allclose(pairwise_mean_differences(means), brute, rtol=1e-12)
    ranking = probeless(inputs(X, y))
    assert ranking.order[:2].tolist() == [3, 1] and ranking.method == "probeless"


def test_class_statistics_are_per_class_counts_means_and_variances_from_one_pass():
    """What a plugin ranker reads (docs/plugins.md): counts and means per class, and the
    per-class variances an ANOVA or Fisher ranker needs, all from one shared pass; rows
    labelled -1 are left out."""
    X, y = planted()
    y = y.copy()
    y[:7] = -1
    given = inputs(X, y)
    counts, means = given.class_means()
    variances = given.class_variances()
    for c in range(3):
        rows = X[y == c].astype(np.float64)
        assert counts[c] == len(rows)
        np.testing.assert_allclose(means[c], rows.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(variances[c], rows.var(axis=0), rtol=1e-9, atol=1e-12)
    assert list(given.shared) == [("class_moments", id(X))]  # one pass, shared
    fisher = (np.var(means, axis=0) / variances.mean(axis=0))  # a Fisher-style score finds neuron 3
    assert int(np.argmax(fisher)) == 3


def test_average_precision_matches_its_definition():
    rng = np.random.default_rng(3)
    column = rng.standard_normal(200)
    labels = rng.integers(0, 4, 200)
    ap = average_precisions(column, labels, 4)
    order = np.argsort(-column)
    for c in range(4):
        hits = labels[order] == c
        precision = np.cumsum(hits) / np.arange(1, 201)
        assert ap[c] == pytest.approx(precision[hits].mean())
    # a perfect detector has AP 1, its reverse the lowest
    perfect = average_precisions(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0]), 2)
    assert perfect[1] == 1.0


def test_iou_finds_the_detectors():
    X, y = planted()
    ranking = iou(inputs(X, y))
    assert set(ranking.order[:2].tolist()) == {1, 3}


def test_gaussian_selects_the_informative_neurons_first():
    X, y = planted()
    ranking = gaussian(inputs(X, y), max_neurons=3)
    assert ranking.order[0] == 3 and ranking.order[1] == 1
    assert sorted(ranking.order.tolist()) == list(range(6))


def test_gaussian_matches_a_direct_computation():
    """The incremental (rank-one) conditional densities equal densities of the full selected block."""
    from neuroscope.rankers.gaussian import greedy_selection
    import torch

    X, y = planted(300)
    Xt, yt = torch.from_numpy(X).double(), torch.from_numpy(y)
    selected, marginal, info = greedy_selection(Xt, yt, 300, 2, 6)
    # direct: MI of the classifier on selected + candidate with full covariances
    counts = np.bincount(y)
    d = 6
    def mi(dims):
        logp = []
        for c in range(3):
            Xc = X[y == c].astype(np.float64)
            mu = Xc.mean(0)
            cov = np.cov(Xc, rowvar=False)
            scatter = (Xc - mu).T @ (Xc - mu)
            sigma = (np.diag(np.diag(cov)) + scatter) / (counts[c] + 2 * d + 4)
            s = sigma[np.ix_(dims, dims)]
            diff = X[:, dims] - mu[dims]
            inv = np.linalg.inv(s)
            logp.append(-0.5 * np.einsum("ni,ij,nj->n", diff, inv, diff) - 0.5 * np.log(np.linalg.det(2 * np.pi * s))
                        + np.log(counts[c] / len(y)))
        logp = np.stack(logp)
        post = logp[y, np.arange(len(y))] - np.logaddexp.reduce(logp, axis=0)
        prior = counts / len(y)
        return (-(prior * np.log(prior)).sum() + post.mean()) / np.log(2)
    candidates = [k for k in range(d) if k not in selected]
    for k in candidates:  # the final information, given both selected neurons (orders the rest)
        assert info[k].item() == pytest.approx(mi(selected + [k]), abs=1e-4)
    for k in range(d):  # the first step: each neuron alone (the marginal tail)
        assert marginal[k].item() == pytest.approx(mi([k]), abs=1e-4)
    # the second choice is the exact greedy one: the best of every pair with the first
    assert selected[1] == max((k for k in range(d) if k != selected[0]), key=lambda k: mi([selected[0], k]))
    shortlisted = greedy_selection(Xt, yt, 300, 2, 6, refresh=2, candidates=3)
    assert shortlisted[0] == selected and torch.allclose(shortlisted[2], info)


def test_refreshed_shortlists_select_what_scoring_every_candidate_selects():
    """Between full scorings every `refresh` steps only a shortlist is scored; on 40 neurons
    with planted signal of varying strength it makes the exact greedy choices."""
    from neuroscope.rankers.gaussian import greedy_selection
    import torch

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=600)
    X = rng.normal(size=(600, 40))
    for k in range(12):  # neurons k carry label (k % 4) with strength falling with k
        X[:, k] += (y == k % 4) * (2.0 - 0.15 * k)
    X[:, 20] = X[:, 0] + 0.1 * rng.normal(size=600)  # a near-copy of neuron 0: redundant
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    exact = greedy_selection(Xt, yt, 600, 10, 40)
    assert exact[0][:4] == [0, 1, 2, 3]  # the strongest detector of each label first
    assert 20 not in exact[0]  # a copy of a selected neuron adds almost nothing
    shortlisted = greedy_selection(Xt, yt, 600, 10, 40, refresh=4, candidates=12)
    assert shortlisted[0] == exact[0]
    assert torch.allclose(shortlisted[2], exact[2])
    # a shortlist too short: the 2 best neurons alone are 0 and its copy, so the copy comes second
    narrow = greedy_selection(Xt, yt, 600, 10, 40, refresh=10, candidates=2)
    assert narrow[0][:2] == [0, 20]


def test_gaussian_orders_the_rest_by_marginal_or_conditional_information():
    X, y = planted()
    marginal = gaussian(inputs(X, y), max_neurons=1, tail="marginal")
    conditional = gaussian(inputs(X, y), max_neurons=1)
    assert marginal.order[0] == conditional.order[0]
    assert set(marginal.order[:2].tolist()) == {1, 3}  # the other informative neuron next
    with pytest.raises(ValueError, match="tail"):
        gaussian(inputs(X, y), tail="mean")


def test_random_is_seeded_and_a_permutation():
    X, y = planted()
    a, b = random_order(inputs(X, y, seed=1)), random_order(inputs(X, y, seed=1))
    assert a.order.tolist() == b.order.tolist() != random_order(inputs(X, y, seed=2)).order.tolist()
    assert sorted(a.order.tolist()) == list(range(6))


def test_contract_declarations_and_checks():
    X, y = planted()
    assert info_of(probeless).needs == ("activations",)
    assert info_of(random_order).needs == ()
    assert info_of(weight_mass_ranking).needs == ("probe",)  # a plain f(coef) ranker needs the probe

    class Fitted:
        coef_ = np.array([[0.0, 2.0, 0.0, 1.0, 0.0, 0.0]])

    legacy = call_ranker(weight_mass_ranking, inputs(X, y, probe=Fitted()), stride=100)
    assert legacy.order[:2].tolist() == [1, 3]
    with pytest.raises(ValidationError, match="needs a fitted probe"):
        call_ranker(weight_mass_ranking, inputs(X, y))
    with pytest.raises(ValidationError, match="permutation"):
        call_ranker(lambda coef: order_by_score(np.zeros(3), "short"), inputs(X, y, probe=Fitted()))


def test_contrast_rankers_match_their_definitions():
    """f-stat: the one-vs-rest F of each label equals scipy's one-way ANOVA of the label's
    tokens against the rest, and ``overall`` the k-group ANOVA; mean-diff: the absolute
    difference of the label's mean and the rest's."""
    from scipy.stats import f_oneway

    from neuroscope.rankers.contrast import moments, one_vs_rest, overall_score

    X, y = planted()
    counts, means, variances = moments(inputs(X, y))
    values = X.astype(np.float64)
    f = one_vs_rest(counts, means, variances, "f-stat")
    d = one_vs_rest(counts, means, variances, "mean-diff")
    for c in range(3):
        inside, rest = values[y == c], values[y != c]
        np.testing.assert_allclose(f[c], f_oneway(inside, rest).statistic, rtol=1e-9)
        np.testing.assert_allclose(d[c], np.abs(inside.mean(0) - rest.mean(0)), rtol=1e-9)
    np.testing.assert_allclose(overall_score(counts, means, variances, "f-stat"),
                               f_oneway(*(values[y == c] for c in range(3))).statistic, rtol=1e-9)


def test_contrast_rankers_cover_every_label_and_refuse_unknown_aggregations():
    """Planted: one neuron per label (shifts 3, 2, 1.5, the rarest label the weakest) among
    distractors of large variance; with ``cover`` every planted neuron is in the top 4 of
    both rankers (each label takes a turn), and the rankings are permutations."""
    from neuroscope.rankers.contrast import f_stat, mean_diff

    rng = np.random.default_rng(1)
    y = rng.choice(4, size=4000, p=[0.5, 0.3, 0.15, 0.05])
    X = rng.standard_normal((4000, 40)).astype(np.float32)
    X[:, 20:] *= 6.0  # distractors: large spread, no label
    for c, (neuron, shift) in enumerate(((3, 3.0), (11, 2.0), (17, 1.5), (5, 1.5))):
        X[:, neuron] += shift * (y == c)
    planted_set = {3, 11, 17, 5}
    data = RankerInputs(X, y, ("a", "b", "c", "d"), NeuronIndex(("emb",), 40))
    for rank in (f_stat, mean_diff):
        order = call_ranker(rank, data).order
        assert set(order[:4].tolist()) == planted_set, (rank.__name__, order[:8])
        for aggregate in ("max", "overall"):
            assert sorted(call_ranker(rank, data, aggregate=aggregate).order.tolist()) == list(range(40))
    assert set(call_ranker(f_stat, data, aggregate="max").order[:4].tolist()) == planted_set
    with pytest.raises(ValidationError, match="aggregate"):
        call_ranker(f_stat, data, aggregate="sum")
