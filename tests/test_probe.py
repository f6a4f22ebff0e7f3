import numpy as np
import pytest

from neuroscope.estimator import NotFittedError
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
    with pytest.raises(ValueError, match="(?i)invalid parameter"):
        probe.set_params(alpha=1)
    assert not hasattr(probe, "coef_")
    with pytest.raises(NotFittedError, match="not fitted"):
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


@pytest.mark.parametrize("l2_form", ["squared", "norm"])
def test_written_out_gradient_equals_autograd(l2_form):
    """elastic_net_gradient is the exact gradient of the summed per-setting loss (3 settings)."""
    import torch

    from neuroscope.probe import elastic_net_gradient

    gen = torch.Generator().manual_seed(0)
    batch, width, g, labels = 37, 11, 3, 5
    xb = torch.randn(batch, width, generator=gen)
    yb = torch.randint(0, labels, (batch,), generator=gen)
    weight = torch.randn(width, g, labels, generator=gen)
    weight[0, 1, :] = 0.0  # |w| at 0: subgradient 0, as autograd's
    bias = torch.randn(g, labels, generator=gen)
    l1, l2 = torch.tensor([0.0, 1e-2, 3e-1]), torch.tensor([2e-1, 0.0, 5e-2])
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    elastic_net_gradient(xb, yb, weight, bias, l1, l2, l2_form)

    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    loss = 0.0
    for k in range(g):
        ce = torch.nn.functional.cross_entropy(xb @ w[:, k, :] + b[k], yb)
        l2_term = (w[:, k, :] ** 2).sum() if l2_form == "squared" else (w[:, k, :] ** 2).sum().sqrt()
        loss = loss + ce + l1[k] * w[:, k, :].abs().sum() + l2[k] * l2_term
    loss.backward()
    torch.testing.assert_close(weight.grad, w.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bias.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_bfloat16_precision_trains_the_same_probe_closely():
    """Mixed precision: same accuracy and same planted neurons as float32, weights close, masks still exact."""
    X, y = planted(n=12000)
    full = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=5).fit(X[:10000], y[:10000])
    mixed = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=5, precision="bfloat16").fit(X[:10000], y[:10000])
    assert mixed.get_params()["precision"] == "bfloat16"
    assert abs(mixed.score(X[10000:], y[10000:]) - full.score(X[10000:], y[10000:])) < 0.005
    assert set(np.argsort(np.abs(mixed.coef_).sum(axis=0))[-3:].tolist()) == {3, 17, 29}
    assert np.abs(mixed.coef_ - full.coef_).max() < 0.05 * np.abs(full.coef_).max()
    assert not np.array_equal(mixed.coef_, full.coef_)  # the products really ran in bfloat16
    ids = np.searchsorted(np.unique(y), y)
    masks = np.zeros((2, 40), dtype=bool)
    masks[0] = True
    masks[1, [3, 17]] = True
    coef, _ = train_elastic_net(X, ids, 3, [(1e-3, 1e-3)] * 2, TrainSettings(epochs=1, precision="bfloat16"),
                                masks=masks)
    assert np.count_nonzero(coef[1][:, ~masks[1]]) == 0 and np.count_nonzero(coef[1][:, masks[1]]) == 6
    with pytest.raises(ValueError):
        TrainSettings(precision="float8")
