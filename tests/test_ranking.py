import numpy as np
import pytest

from neuroscope.ranking import Ranking, label_entry_shares, top_neurons_per_label, weight_mass_ranking


def neurox_ordering(coef: np.ndarray, stride: int) -> list[set[int]]:
    """Reference: NeuroX's get_neuron_ordering as groups of neurons added per step
    (the order inside a group is Python set order in NeuroX, so only groups compare)."""
    weights = np.abs(coef)
    groups, seen = [], set()
    for p in range(stride + 1):
        share = p / stride
        selected = set()
        for c in range(weights.shape[0]):
            total = weights[c].sum()
            idx = np.argsort(weights[c], kind="stable")[::-1]
            cum = np.cumsum(weights[c, idx])
            over = np.where(cum >= total * share)[0]
            chosen = np.arange(len(cum)) if len(over) == 0 else np.arange(over[0] + 1)
            # at p = 1 rounding of cum can make NeuroX take every neuron, zero weights too;
            # the ordering of those is arbitrary there, so the reference keeps weighted ones only
            selected |= {int(j) for j in idx[chosen] if weights[c, j] > 0}
        new = selected - seen
        groups.append(new)
        seen |= new
    return groups


def test_hand_checked_ordering():
    # label 0 mass: n0=6, n1=3, n2=1 (total 10); label 1: n3=8, n2=2 (total 10)
    coef = np.array([[6.0, -3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, -8.0, 0.0]])
    shares = label_entry_shares(coef)
    assert shares[0, :3].tolist() == [0.0, 0.6, 0.9]
    assert shares[1, 3] == 0.0 and shares[1, 2] == pytest.approx(0.8)
    ranking = weight_mass_ranking(coef, stride=10)
    # top neurons of each label first (n3 has more total mass than n0), then n1 (0.6), n2 (0.8); n4 has no weight
    assert ranking.order.tolist() == [3, 0, 1, 2, 4]
    assert np.isinf(ranking.entry_share[4])
    assert ranking.top(0.4).tolist() == [0, 3]
    assert ranking.bottom(0.2).tolist() == [4]


def test_groups_match_neurox_reference():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(6, 200)) * (rng.random(200) < 0.8)
    stride = 100
    ranking = weight_mass_ranking(coef, stride=stride)
    groups = [g for g in neurox_ordering(coef, stride) if g]
    position = 0
    for group in groups:
        assert set(ranking.order[position : position + len(group)].tolist()) == group
        position += len(group)
    # neurons NeuroX never orders (all-zero weights) come last
    zero = set(np.flatnonzero(np.abs(coef).sum(axis=0) == 0).tolist())
    assert set(ranking.order[position:].tolist()) == zero
    assert sorted(ranking.order.tolist()) == list(range(200))


def test_exact_ordering_without_stride_is_by_entry_share():
    rng = np.random.default_rng(1)
    coef = rng.normal(size=(3, 50))
    ranking = weight_mass_ranking(coef, stride=None)
    shares = ranking.entry_share[ranking.order]
    assert np.all(np.diff(shares) >= 0)


def test_ranking_is_deterministic_with_ties():
    coef = np.ones((2, 8))
    a = weight_mass_ranking(coef).order.tolist()
    assert a == weight_mass_ranking(coef.copy()).order.tolist()
    assert a == list(range(8))  # full tie: by index


def test_random_subset_is_seeded_and_sized():
    ranking = Ranking(np.arange(100), np.zeros(100))
    assert ranking.random(0.2, seed=3).tolist() == ranking.random(0.2, seed=3).tolist()
    assert ranking.random(0.2, seed=3).tolist() != ranking.random(0.2, seed=4).tolist()
    assert len(ranking.random(0.2, seed=3)) == 20
    with pytest.raises(ValueError):
        ranking.count(0.0)


def test_json_round_trip():
    ranking = weight_mass_ranking(np.array([[1.0, 0.0, 2.0]]))
    back = Ranking.from_json(ranking.to_json())
    assert back.order.tolist() == ranking.order.tolist()
    assert np.array_equal(np.isinf(back.entry_share), np.isinf(ranking.entry_share))


def test_top_neurons_per_label():
    coef = np.array([[6.0, -3.0, 1.0, 0.0], [0.0, 0.0, 2.0, -8.0]])
    sets = top_neurons_per_label(coef, 0.5)
    assert sets[0].tolist() == [0]
    assert sets[1].tolist() == [3]
    assert top_neurons_per_label(coef, 0.7)[0].tolist() == [0, 1]
