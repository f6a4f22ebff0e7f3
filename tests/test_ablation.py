import numpy as np
import pytest

from neuroscope.ablation import ablation_sets, accuracy, evaluate_ablations
from neuroscope.probe import ElasticNetProbe
from neuroscope.ranking import Ranking


def test_accuracy_rules_for_unseen_labels():
    predicted = np.array([0, 1, 1, 0])
    gold = np.array([0, 1, -1, 1])
    assert accuracy(predicted, gold, "error") == pytest.approx(50.0)
    assert accuracy(predicted, gold, "exclude") == pytest.approx(200 / 3)
    with pytest.raises(ValueError):
        accuracy(predicted, gold, "ignore")


def test_ablation_sets_have_the_right_sizes():
    ranking = Ranking(np.arange(50)[::-1].copy(), np.zeros(50))
    sets = ablation_sets(ranking, 0.2, seed=0)
    assert sets["top"].tolist() == list(range(40, 50))
    assert sets["bottom"].tolist() == list(range(10))
    assert len(sets["random"]) == 10


def test_top_beats_bottom_on_planted_neurons():
    rng = np.random.default_rng(0)
    n, d = 6000, 50
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, :10] += 2.0 * (2 * y[:, None] - 1)  # neurons 0-9 informative
    probe = ElasticNetProbe(l1=1e-3, epochs=10).fit(X, y)
    from neuroscope.ranking import weight_mass_ranking

    ranking = weight_mass_ranking(probe.coef_)
    result = evaluate_ablations(probe, {"all": None, **ablation_sets(ranking, 0.2, 0)}, X, y)
    assert result["top"] > 99.0
    assert result["bottom"] < 60.0
    assert result["all"] >= result["top"] - 0.5
