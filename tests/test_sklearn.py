"""The probes as scikit-learn estimators (issue: notebook users), and the convergence record."""

import logging

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from neuroscope.lbfgs import LbfgsProbe
from neuroscope.probe import ElasticNetProbe, TrainSettings, has_converged, train_elastic_net


def synthetic(n=3000, d=20, seed=0):
    """Three string labels, linearly separable up to noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.array(["NN", "VB", "DT"])[np.argmax(X @ rng.standard_normal((d, 3)) + 0.3 * rng.standard_normal((n, 3)), 1)]
    return X, y


@pytest.mark.parametrize("estimator", [ElasticNetProbe(epochs=10), LbfgsProbe(max_iter=30)],
                         ids=["paper-10-epochs", "lbfgs"])
def test_check_estimator_passes(estimator):
    failed = [(r["check_name"], repr(r["exception"])[:300])
              for r in check_estimator(estimator, on_fail=None) if r["status"] == "failed"]
    assert failed == []


def test_model_selection_and_pipelines_work_with_string_labels():
    X, y = synthetic(900)
    probe = ElasticNetProbe(l1=1e-5, l2=1e-5, epochs=30, lr=1e-2, batch_size=64)
    scores = cross_val_score(probe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    search = GridSearchCV(probe, {"l1": [1e-5, 1e-1]}, cv=3).fit(X, y)
    assert search.best_params_ == {"l1": 1e-5}  # a huge L1 penalty cannot fit
    assert set(search.best_estimator_.classes_) == {"DT", "NN", "VB"}
    pipeline = make_pipeline(StandardScaler(), clone(probe)).fit(X, y)
    assert pipeline.score(X, y) > 0.9
    copy = clone(probe)
    assert copy.get_params() == probe.get_params() and not hasattr(copy, "coef_")
    fitted = clone(probe).fit(X, y)
    assert fitted.score(X, y) == pytest.approx(fitted.accuracy(X, y) / 100)  # fraction vs the project's percent


def test_the_paper_training_reports_when_it_has_not_converged(caplog):
    """10 epochs of Adam at lr 1e-3 underfit 3,000 rows: the probe says so; epochs="auto" goes on."""
    from neuroscope.probe import reset_unconverged_note

    X, y = synthetic()
    reset_unconverged_note()  # said once per run: this test's fit is the first
    with caplog.at_level(logging.WARNING, logger="neuroscope"):
        short = ElasticNetProbe(epochs=10).fit(X, y)
    assert not short.converged_ and short.n_iter_ == 10 and len(short.loss_curve_) == 10
    assert "had not converged after 10 epochs" in caplog.text
    assert short.loss_curve_[-1] < short.loss_curve_[0]
    auto = ElasticNetProbe(epochs="auto", lr=1e-2).fit(X, y)
    assert auto.converged_ and 10 < auto.n_iter_ < 1000
    assert has_converged(auto.loss_curve_) and not has_converged(auto.loss_curve_[:10])
    assert auto.score(X, y) > short.score(X, y) + 0.1
    lbfgs = LbfgsProbe().fit(X, y)
    assert lbfgs.converged_ and lbfgs.n_iter_ >= 1


def test_on_its_own_the_probe_converges_like_logistic_regression():
    """Used as a scikit-learn classifier, the probe converges by default whatever the size:
    400 rows are one Adam step per epoch, so convergence is judged over 100 steps, not one
    epoch; it then matches scikit-learn's LogisticRegression on held-out rows, where the
    paper's 10 epochs (10 steps) are little better than chance."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 40)).astype(np.float32)
    y = X[:, :3].argmax(axis=1)
    reference = LogisticRegression(max_iter=1000).fit(X[:400], y[:400]).score(X[400:], y[400:])
    probe = ElasticNetProbe(l1=1e-4, l2=1e-4).fit(X[:400], y[:400])
    assert probe.converged_ and probe.n_iter_ > 1000
    assert probe.score(X[400:], y[400:]) >= reference - 0.03
    paper = ElasticNetProbe(l1=1e-4, l2=1e-4, epochs=10).fit(X[:400], y[:400])
    assert paper.score(X[400:], y[400:]) < reference - 0.2


def test_the_loss_record_leaves_the_weights_bit_identical():
    X, y = synthetic(600)
    ids = np.searchsorted(np.unique(y), y)
    settings = TrainSettings(epochs=3, batch_size=64)
    report: list = []
    with_record = train_elastic_net(X, ids, 3, [(1e-4, 1e-4), (0, 0)], settings, report=report)
    without = train_elastic_net(X, ids, 3, [(1e-4, 1e-4), (0, 0)], settings)
    assert all(np.array_equal(a, b) for a, b in zip(with_record, without))
    assert [r[1] for r in report] == [3, 3] and all(len(r[2]) == 3 for r in report)
    assert report[0][2][-1] > report[1][2][-1]  # the penalised setting's loss includes its penalty


def test_has_converged():
    assert not has_converged([1.0, 0.9995], window=2) and has_converged([1.0, 0.9999, 0.9995], window=2)
    assert not has_converged([1.0, 0.9999, 0.99], window=2)
    assert not has_converged([1.0])
    assert not has_converged([1.0, 0.9])
    assert has_converged([1.0, 0.9995])
    assert has_converged([1.0, 1.2])  # rising: no longer falling
