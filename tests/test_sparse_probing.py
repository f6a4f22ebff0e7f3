"""k-sparse probing (--ksparse, issue 25): the exact probes, per-label orders and the
ceiling (the run through the command line, with the rotation baseline: tests/test_rotation.py)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from neuroscope.errors import ValidationError
from neuroscope.rankers import RankerInputs, call_ranker
from neuroscope.rankers.contrast import mean_diff, moments, one_vs_rest
from neuroscope.rankers.probeless import probeless
from neuroscope.rankers.random_baseline import random_order
from neuroscope.ranking import Ranking, weight_mass_ranking
from neuroscope.sparse_probing import SparseProber, SparseSettings, newton_logistic
from neuroscope.types import NeuronIndex

LABELS = tuple("abcd")


def planted(n: int, seed: int, d: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Label c is carried by neurons 10c, 10c+1, 10c+2 (shifted +1 on its words); the rest noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    for c in range(len(LABELS)):
        X[np.ix_(y == c, [10 * c, 10 * c + 1, 10 * c + 2])] += 1.0
    return X, y


def test_newton_reaches_the_exact_optimum_sklearn_approaches():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4)).astype(np.float32)
    y = (2 * X[:, 0] - X[:, 1] + rng.normal(size=2000) > 0.5).astype(np.float32)
    l2 = 1e-3
    theta, loss, ok = newton_logistic(torch.from_numpy(X[None]), torch.from_numpy(y[None]), l2)
    w, b = theta[0, :-1].numpy(), float(theta[0, -1])
    z = X.astype(np.float64) @ w + b
    grad = np.append(X.T.astype(np.float64) @ (1 / (1 + np.exp(-z)) - y) / len(y) + 2 * l2 * w,
                     (1 / (1 + np.exp(-z)) - y).mean())
    assert bool(ok[0]) and np.abs(grad).max() < 1e-5  # the tolerance, checked in float64
    # sklearn's objective: sum log loss + ||w||^2 / (2C) = n (mean log loss + l2 ||w||^2) at C = 1 / (2 n l2)
    reference = LogisticRegression(C=1 / (2 * len(y) * l2), tol=1e-12, max_iter=10000).fit(X, y)
    assert np.allclose(w, reference.coef_[0], rtol=1e-3, atol=1e-4)
    assert b == pytest.approx(reference.intercept_[0], rel=1e-3)

    def objective(w, b):
        z = X.astype(np.float64) @ w + b
        return np.mean(np.logaddexp(0, z) - y * z) + l2 * (w ** 2).sum()

    assert float(loss[0]) == pytest.approx(objective(w, b), rel=1e-6)
    assert objective(w, b) <= objective(reference.coef_[0].astype(np.float64), reference.intercept_[0]) + 1e-8


def test_separable_problems_stay_finite_under_the_ridge():
    X = torch.tensor([[[-2.0], [-1.0], [1.0], [2.0]]])
    theta, loss, ok = newton_logistic(X, torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 1e-3)
    assert bool(ok[0]) and torch.isfinite(theta).all() and float(theta[0, 0]) > 1


def test_label_orders_follow_each_labels_scores_and_fall_back_to_the_order():
    scores = np.array([[0.1, 0.9, 0.9, np.nan], [3.0, 1.0, 2.0, 0.0]])
    ranking = Ranking(np.array([3, 2, 1, 0]), np.zeros(4), "x", scores)
    assert ranking.label_order(0).tolist() == [1, 2, 0, 3]  # ties by id, NaN last
    assert ranking.label_order(1, 2).tolist() == [0, 2]
    assert Ranking(np.array([3, 2, 1, 0]), np.zeros(4), "x").label_order(1).tolist() == [3, 2, 1, 0]
    coef = np.array([[0.5, -2.0, 0.0], [1.0, 0.1, -0.3]])
    assert weight_mass_ranking(coef).label_order(0).tolist() == [1, 0, 2]


def test_rankers_score_each_label_where_the_method_has_per_label_scores():
    X, y = planted(3000, 1)
    inputs = RankerInputs(X, y, LABELS, NeuronIndex(("emb", "1"), 30))
    md = call_ranker(mean_diff, inputs)
    counts, means, variances, present = moments(inputs)
    assert np.array_equal(md.label_scores[present], one_vs_rest(counts, means, variances, "mean-diff"))
    for c in range(len(LABELS)):
        assert sorted(md.label_order(c, 3).tolist()) == [10 * c, 10 * c + 1, 10 * c + 2]
    pl = call_ranker(probeless, inputs)
    by_hand = np.abs(means[2] - means).sum(axis=0)  # NeuroX get_neuron_ordering_for_tag
    assert np.allclose(pl.label_scores[2], by_hand)
    assert call_ranker(random_order, inputs).label_scores is None


def test_curves_find_the_planted_neurons_and_measure_as_sklearn_does():
    X, y = planted(6000, 2)
    Xt, yt = planted(2000, 3)
    inputs = RankerInputs(X, y, LABELS, NeuronIndex(("emb", "1"), 30))
    settings = SparseSettings(ks=(1, 3, 8), rows=3000, pool=8, shortlist=None)
    prober = SparseProber(X, y, Xt, yt, len(LABELS), settings, seed=0)
    assert len(prober.rows) == 3000 and prober.labels == [0, 1, 2, 3]
    md = prober.curves(call_ranker(mean_diff, inputs), LABELS)
    rd = prober.curves(call_ranker(random_order, inputs), LABELS)
    assert md["label_orders"] == "per label" and rd["label_orders"] == "overall"
    assert md["mean_f1"][1] > 55 and md["mean_f1"][1] > rd["mean_f1"][1] + 25
    # the F1 of one probe, by hand: refit with sklearn on the same standardised sample, predict test
    neurons = np.array(sorted(call_ranker(mean_diff, inputs).label_order(1, 3)))
    sample = X[prober.rows][:, neurons]
    mu, sd = sample.mean(axis=0), sample.std(axis=0)
    clf = LogisticRegression(C=1 / (2 * len(sample) * settings.l2), tol=1e-12, max_iter=10000)
    clf.fit((sample - mu) / sd, y[prober.rows] == 1)
    by_hand = 100 * f1_score(yt == 1, clf.predict((Xt[:, neurons] - mu) / sd))
    assert md["per_label"]["b"]["f1"][1] == pytest.approx(by_hand, abs=0.2)
    # the ceiling finds each label's planted triple; the shortlist of least squares makes the same choice
    counts, means, variances, present = moments(inputs)
    scores = one_vs_rest(counts, means, variances, "mean-diff")
    ceiling = prober.ceiling(scores, LABELS)
    assert ceiling["subsets_per_label"] == 8 + 28 + 56
    for c, label in enumerate(LABELS):
        assert ceiling["per_label"][label]["neurons"][2] == [10 * c, 10 * c + 1, 10 * c + 2]
    short = SparseProber(X, y, Xt, yt, len(LABELS), SparseSettings(ks=(1,), rows=3000, pool=8, shortlist=5), 0)
    assert short.ceiling(scores, LABELS)["per_label"] == ceiling["per_label"]
    assert ceiling["mean_f1"][2] >= md["mean_f1"][1] - 1


def test_a_rare_label_is_left_out_with_the_reason():
    X, y = planted(400, 4)
    y[y == 3] = 2
    y[:3] = 3
    prober = SparseProber(X, y, X, y, 4, SparseSettings(ks=(1,), min_positives=10), seed=0)
    assert prober.labels == [0, 1, 2]
    assert "3 of its words" in prober.describe(LABELS)["left_out"]["d"]


@pytest.mark.parametrize("bad, message", [
    (dict(ks=(4, 2)), "--ksparse-k: expected increasing"),
    (dict(ks=(0,)), "--ksparse-k"),
    (dict(l2=0.0), "--ksparse-l2"),
    (dict(ceiling=5), "--ksparse-ceiling"),
])
def test_settings_are_refused_in_one_line(bad, message):
    with pytest.raises(ValidationError, match=message):
        SparseSettings(**bad)
