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


def test_average_precision_with_ties_is_scikit_learns():
    """float16 activations tie constantly; a block of equal values is one threshold, as in
    scikit-learn's average_precision_score (rows labelled -1 are negatives)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(5)
    for _ in range(12):
        n = int(rng.integers(5, 300))
        column = (np.round(rng.standard_normal(n) * rng.choice([0.5, 3.0])) / 4).astype(np.float16)
        labels = rng.integers(-1, 4, n)
        ap = average_precisions(column, labels, 5)
        for c in range(5):
            if (labels == c).any():
                assert ap[c] == pytest.approx(average_precision_score(labels == c, column.astype(np.float32)),
                                              abs=1e-12)
            else:
                assert np.isnan(ap[c])
    # one block of ties: every positive gets the block's precision, whatever the row order
    assert average_precisions(np.zeros(4, np.float16), np.array([1, 0, 0, 1]), 2)[1] == 0.5


def test_iou_finds_the_detectors():
    X, y = planted()
    ranking = iou(inputs(X, y))
    assert set(ranking.order[:2].tolist()) == {1, 3}


def test_gaussian_selects_the_informative_neurons_first():
    X, y = planted()
    for options in ({}, {"score": "held-out"}, {"prior": "network"}):
        ranking = gaussian(inputs(X, y), max_neurons=3, **options)
        assert ranking.order[0] == 3 and ranking.order[1] == 1, options
        assert sorted(ranking.order.tolist()) == list(range(6))
    for option, bad in (("prior", "wide"), ("score", "test"), ("tail", "none")):
        with pytest.raises(ValidationError, match=f"gaussian {option}"):
            gaussian(inputs(X, y), **{option: bad})


@pytest.mark.parametrize("prior", ["block", "network"])
def test_gaussian_matches_a_direct_computation(prior):
    """The incremental (rank-one) conditional densities equal densities of the full selected
    block: with prior "network" the block of NeuroX's D-dimensional MAP, with "block" the
    MAP of the block's own marginal (D replaced by the block's size)."""
    from neuroscope.rankers.gaussian import greedy_selection
    import torch

    X, y = planted(300)
    Xt, yt = torch.from_numpy(X).double(), torch.from_numpy(y)
    selected, marginal, info = greedy_selection(Xt, yt, 300, 2, 6, prior=prior)
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
            size = d if prior == "network" else len(dims)
            sigma = (np.diag(np.diag(cov)) + scatter) / (counts[c] + 2 * size + 4)
            s = sigma[np.ix_(dims, dims)]
            diff = X[:, dims] - mu[dims]
            inv = np.linalg.inv(s)
            logp.append(-0.5 * np.einsum("ni,ij,nj->n", diff, inv, diff) - 0.5 * np.log(np.linalg.det(2 * np.pi * s))
                        + np.log(counts[c] / len(y)))
        logp = np.stack(logp)
        post = logp[y, np.arange(len(y))] - np.logaddexp.reduce(logp, axis=0)
        frequency = counts / len(y)
        return (-(frequency * np.log(frequency)).sum() + post.mean()) / np.log(2)
    candidates = [k for k in range(d) if k not in selected]
    for k in candidates:  # the final information, given both selected neurons (orders the rest)
        assert info[k].item() == pytest.approx(mi(selected + [k]), abs=1e-4)
    for k in range(d):  # the first step: each neuron alone (the marginal tail)
        assert marginal[k].item() == pytest.approx(mi([k]), abs=1e-4)
    # the second choice is the exact greedy one: the best of every pair with the first
    assert selected[1] == max((k for k in range(d) if k != selected[0]), key=lambda k: mi([selected[0], k]))
    shortlisted = greedy_selection(Xt, yt, 300, 2, 6, refresh=2, candidates=3, prior=prior)
    assert shortlisted[0] == selected and torch.allclose(shortlisted[2], info)
    if prior == "block":  # each neuron alone carries information >= 0 under its own 1-d MAP here
        assert marginal.min().item() > -1e-6


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
    counts, means, variances, _ = moments(inputs(X, y))
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


def test_mutual_information_matches_a_direct_plug_in_estimate_and_finds_the_planted_neurons():
    """mi: per label, I(bin; [y = c]) in bits equals the plug-in estimate computed by hand
    from the same bins; every planted neuron leads; the overall I(bin; y) is scikit-learn's
    mutual_info_score of the bins (in nats, converted)."""
    from sklearn.metrics import mutual_info_score

    from neuroscope.rankers.mutual_information import (bin_edges, joint_counts, label_information,
                                                       mutual_information, overall_information)

    X, y = planted()
    given = inputs(X, y)
    edges = bin_edges(given, 8, 10_000)
    joint = joint_counts(given, edges)
    binned = np.stack([np.searchsorted(edges[j], X[:, j], side="right") for j in range(6)], axis=1)
    assert joint.sum() == 6 * len(y) and np.array_equal(joint[2].sum(axis=1), np.bincount(binned[:, 2], minlength=8))
    info = label_information(joint)
    for j in (1, 3, 4):
        assert overall_information(joint)[j] == pytest.approx(mutual_info_score(binned[:, j], y) / np.log(2))
        for c in range(3):
            pb = np.bincount(binned[:, j], minlength=8) / len(y)
            direct = 0.0
            for z in (True, False):
                pz = np.mean((y == c) == z)
                for b in range(8):
                    pbz = np.mean((binned[:, j] == b) & ((y == c) == z))
                    if pbz > 0:
                        direct += pbz * np.log2(pbz / (pb[b] * pz))
            assert info[c, j] == pytest.approx(direct, abs=1e-12)
    assert set(mutual_information(given).order[:2].tolist()) == {1, 3}
    assert mutual_information(given, aggregate="overall").order[0] == 3
    corrected = call_ranker(mutual_information, given, correction="miller-madow")
    assert sorted(corrected.order.tolist()) == list(range(6))
    with pytest.raises(ValidationError, match="mi bins"):
        call_ranker(mutual_information, given, bins=1)


def test_lape_ranks_label_specific_activity_first():
    """lape (Tang et al. 2024): a neuron active only on label 0's tokens, one active only on
    label 2's, one active on every token and noise. Entropies by hand; the specific neurons
    lead; the always-active neuron has the entropy log 3; the filter puts the rarely and
    the half active neurons after the kept ones; a never-active one comes last."""
    from neuroscope.rankers.lape import entropies, lape

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 3000)
    X = -np.abs(rng.standard_normal((3000, 6))).astype(np.float32)  # inactive everywhere ...
    X[:, 0] = np.where(y == 0, 1.0, -1.0)  # ... but: only on label 0
    X[:, 1] = np.where(y == 2, 2.0, -1.0)  # only on label 2
    X[:, 2] = 1.0  # always
    X[:, 3] = rng.standard_normal(3000)  # half the time, whatever the label
    X[:40, 5] = 1.0  # rarely (40 of 3000 tokens)
    given = inputs(X, y)
    active = given.class_active()
    counts, _ = given.class_means()
    np.testing.assert_array_equal(active, np.stack([(X[y == c] > 0).sum(0) for c in range(3)]))
    q, entropy = entropies(active / counts[:, None])
    assert entropy[0] == pytest.approx(0.0) and entropy[2] == pytest.approx(np.log(3)) and np.isnan(entropy[4])
    for aggregate in ("cover", "max", "overall"):
        order = call_ranker(lape, given, aggregate=aggregate).order.tolist()
        # kept by the filter (p = 1 on some label): 0, 1, 2; then 3 and 5; never active: 4
        assert set(order[:3]) == {0, 1, 2} and set(order[3:5]) == {3, 5} and order[5] == 4, (aggregate, order)
        if aggregate != "cover":  # cover gives label 1, which has no specific neuron, a turn too
            assert set(order[:2]) == {0, 1}, (aggregate, order)
    unfiltered = call_ranker(lape, given, keep=0, aggregate="overall").order.tolist()
    assert set(unfiltered[:2]) == {0, 1} and unfiltered[-1] == 4
    with pytest.raises(ValidationError, match="lape keep"):
        call_ranker(lape, given, keep=101)
