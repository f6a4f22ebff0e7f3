import numpy as np
import pytest

from neuroscope.probe import ElasticNetProbe, LinearModel, TrainSettings, predict_many, train_elastic_net


def planted(n=3000, d=40, informative=(3, 17, 29), seed=0):
    """Three classes, each signalled by one informative neuron; the rest is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    for c, j in enumerate(informative):
        X[:, j] += 4.0 * (y == c)
    labels = np.array(["NN", "VB", "DT"])[y]
    return X, labels


def test_estimator_conventions():
    probe = ElasticNetProbe(l1=1e-4, l2=1e-3, epochs=2)
    assert probe.get_params()["l1"] == 1e-4
    assert probe.set_params(l2=0.5) is probe and probe.l2 == 0.5
    with pytest.raises(ValueError, match="invalid parameter"):
        probe.set_params(alpha=1)
    assert not hasattr(probe, "coef_")
    with pytest.raises(RuntimeError, match="not fitted"):
        probe.linear_model()
    X, y = planted()
    assert probe.fit(X, y) is probe
    assert probe.classes_.tolist() == ["DT", "NN", "VB"]  # sorted np.unique
    assert probe.coef_.shape == (3, 40)
    assert probe.intercept_.shape == (3,)


def test_probe_learns_and_weights_point_at_planted_neurons():
    X, y = planted(n=12000)
    probe = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=10).fit(X[:10000], y[:10000])
    assert probe.score(X[10000:], y[10000:]) > 0.95
    mass = np.abs(probe.coef_).sum(axis=0)
    assert set(np.argsort(mass)[-3:].tolist()) == {3, 17, 29}
    proba = probe.predict_proba(X[:10])
    assert proba.shape == (10, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_same_seed_same_weights_and_other_seed_differs():
    X, y = planted()
    a = ElasticNetProbe(l1=1e-4, epochs=2, seed=5).fit(X, y).coef_
    b = ElasticNetProbe(l1=1e-4, epochs=2, seed=5).fit(X, y).coef_
    c = ElasticNetProbe(l1=1e-4, epochs=2, seed=6).fit(X, y).coef_
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_grid_training_equals_separate_trainings():
    X, y = planted(n=1500)
    lambdas = [(0.0, 0.0), (1e-3, 1e-2), (1e-2, 0.0)]
    grid = ElasticNetProbe.fit_grid(X, y, lambdas, epochs=3, seed=1)
    for probe, (l1, l2) in zip(grid, lambdas):
        alone = ElasticNetProbe(l1=l1, l2=l2, epochs=3, seed=1).fit(X, y)
        np.testing.assert_allclose(probe.coef_, alone.coef_, atol=1e-5)
        np.testing.assert_allclose(probe.intercept_, alone.intercept_, atol=1e-5)
    # stronger L1 gives a sparser probe
    assert np.abs(grid[2].coef_).sum() < np.abs(grid[0].coef_).sum()


def test_bias_is_not_penalised():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    y = np.where(rng.random(2000) < 0.9, "A", "B")  # labels independent of X
    probe = ElasticNetProbe(l1=1.0, l2=1.0, epochs=20, lr=5e-2).fit(X, y)
    assert np.abs(probe.coef_).max() < 0.05  # weights crushed by the penalty
    assert probe.intercept_[0] - probe.intercept_[1] > 1.0  # bias still learns the 90/10 prior


def test_neuron_subset_reads_only_those_columns():
    X, y = planted()
    probe = ElasticNetProbe(epochs=5, neurons=[3, 17, 29]).fit(X, y)
    assert probe.coef_.shape == (3, 3)
    assert probe.neurons_.tolist() == [3, 17, 29]
    assert probe.score(X, y) > 0.95
    wrong = ElasticNetProbe(epochs=5, neurons=[0, 1, 2]).fit(X, y)
    assert wrong.score(X, y) < 0.5


def test_predict_many_equals_zeroing_columns():
    X, y = planted(n=500)
    probe = ElasticNetProbe(epochs=3).fit(X, y)
    keep = np.array([1, 3, 17])
    zeroed = X.copy()
    zeroed[:, np.setdiff1d(np.arange(X.shape[1]), keep)] = 0
    expected = np.argmax(zeroed @ probe.coef_.T + probe.intercept_, axis=1)
    got = predict_many(X, [probe.linear_model(keep), probe.linear_model()])
    assert np.array_equal(got[0], expected)
    assert np.array_equal(got[1], np.searchsorted(probe.classes_, probe.predict(X)))


def test_train_rejects_bad_labels():
    X, _ = planted(n=100)
    with pytest.raises(ValueError, match="outside"):
        train_elastic_net(X, np.full(100, 5), 3, [(0.0, 0.0)], TrainSettings(epochs=1))
    with pytest.raises(ValueError, match="at least one"):
        train_elastic_net(X, np.zeros(100), 3, [], TrainSettings(epochs=1))


def test_linear_model_predictions_on_columns():
    X = np.eye(3, dtype=np.float32)
    model = LinearModel(np.eye(2, dtype=np.float32), np.zeros(2, dtype=np.float32), np.array([0, 2]))
    assert predict_many(X, [model])[0].tolist() == [0, 0, 1]


def test_neurox_compatible_training_options():
    """shuffle=False visits rows in order; l2_form='norm' penalises ||W|| (NeuroX's objective)."""
    X, y = planted(n=1500)
    ordered = ElasticNetProbe(epochs=2, shuffle=False, seed=1).fit(X, y).coef_
    assert np.array_equal(ordered, ElasticNetProbe(epochs=2, shuffle=False, seed=2).fit(X, y).coef_)
    assert not np.array_equal(ordered, ElasticNetProbe(epochs=2, seed=1).fit(X, y).coef_)
    norm = ElasticNetProbe(l2=0.5, l2_form="norm", epochs=3).fit(X, y)
    squared = ElasticNetProbe(l2=0.5, epochs=3).fit(X, y)
    assert np.isfinite(norm.coef_).all()  # no NaN from the norm's gradient at the zero start
    assert not np.allclose(norm.coef_, squared.coef_)
    with pytest.raises(ValueError):
        TrainSettings(l2_form="cubed")
