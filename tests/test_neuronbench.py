"""NeuronBench (issue 25): planted ground truth, the scores of a ranking against it, and
the leaderboard files. The planted part runs in seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroscope.errors import ValidationError
from neuroscope.neuronbench import planted_board, render_html, write_board
from neuroscope.planted import SETTINGS, Planting, bootstrap_interval, plant, score_ranking, setting_of
from neuroscope.rankers.contrast import f_stat
from neuroscope.rankers.probeless import probeless
from neuroscope.rankers.random_baseline import random_order
from neuroscope_plugins.probes import weight_mass


def test_planted_neurons_carry_their_labels_and_nothing_else_does():
    setting = Planting(tokens=3000, neurons=60, labels=4, per_label=2, spread=2, copies=1, shared=1,
                       distractors=0.5)
    data = plant(setting, 3)
    assert len(data.planted) == setting.n_planted == 4 * 2 * 2 * 2
    assert data.X.shape == (3000, 60) and data.X.dtype == np.float32
    shift = setting.shift / np.sqrt(setting.spread)
    for c, neurons in data.by_label.items():
        assert set(neurons) <= set(data.planted.tolist())
        for j in neurons:  # a planted neuron rises on its label's tokens by about the shift
            gap = data.X[data.y == c, j].mean() - data.X[~np.isin(data.y, [c, (c + 1) % 4, (c - 1) % 4]), j].mean()
            assert gap == pytest.approx(shift, abs=0.25)
    rest = np.setdiff1d(np.arange(60), data.planted)
    means = np.stack([data.X[data.y == c][:, rest].mean(0) for c in range(4)])
    assert np.abs(means - means.mean(0)).max() < 0.5 * shift  # unplanted: no label signal beyond noise
    assert np.array_equal(plant(setting, 3).X, data.X)  # deterministic
    assert data.train.stop == 2250 and data.test.start == 2250
    with pytest.raises(ValidationError, match="planted neurons"):
        plant(Planting(neurons=10, labels=8), 0)
    with pytest.raises(ValidationError, match="unknown planted setting"):
        setting_of("crowded")
    assert setting_of({"labels": 3}).labels == 3 and set(SETTINGS) >= {"clean", "superposition", "hard"}


def test_scores_of_a_ranking():
    planted = np.array([2, 5])
    assert score_ranking(np.array([5, 2, 0, 1, 3, 4]), planted) == {"recall_at_k": 1.0, "ap": 1.0}
    worst = score_ranking(np.array([0, 1, 3, 4, 2, 5]), planted)
    assert worst["recall_at_k"] == 0.0 and worst["ap"] == pytest.approx((1 / 5 + 2 / 6) / 2)
    assert bootstrap_interval(np.array([1.0, 1.0, 1.0])) == (1.0, 1.0)
    low, high = bootstrap_interval(np.array([0.0, 1.0, 0.5, 0.25]))
    assert 0.0 <= low < 0.44 < high <= 1.0


def test_on_clean_planted_data_the_good_rankers_recover_the_planted_neurons_and_random_does_not():
    """The acceptance of issue 25: f-stat, probeless and weight-mass find >= 90 % of the
    planted neurons in their top k; random about k / n (3 seeds)."""
    rankers = {"f-stat": (f_stat, {}), "probeless": (probeless, {}), "weight-mass": (weight_mass, {}),
               "random": (random_order, {})}
    board = planted_board(rankers, ["clean"], seeds=3)
    clean = board["results"]["clean"]
    for name in ("f-stat", "probeless", "weight-mass"):
        assert clean[name]["recall_at_k"]["mean"] >= 0.9, (name, clean[name])
    setting = SETTINGS["clean"]
    chance = setting.n_planted / setting.neurons
    assert clean["random"]["recall_at_k"]["mean"] == pytest.approx(chance, abs=0.1)
    assert clean["random"]["ap"]["mean"] < 0.25
    assert board["leaderboard"][-1]["ranker"] == "random"
    assert board["settings"]["clean"]["probe_test_accuracy"] > 50.0  # the probe weight-mass read learned
    text = render_html({"planted": board, "runs": None})
    assert "<td>weight-mass</td>" in text and "recall at k" in text


def test_a_ranker_that_needs_the_model_is_listed_as_skipped_and_a_failing_one_is_named(tmp_path):
    from neuroscope.rankers import ranker

    @ranker(needs=("model",), cite="", cost="")
    def live(inputs):
        raise AssertionError("never called on planted data")

    @ranker(needs=("activations",), cite="", cost="")
    def broken(inputs):
        raise RuntimeError("boom")

    board = planted_board({"live": (live, {}), "random": (random_order, {})}, ["clean"], seeds=1)
    assert "live" in board["skipped"] and "live" not in board["results"]["clean"]
    written = write_board(tmp_path / "board", board, None)
    assert json.loads(written[0].read_text())["planted"]["skipped"]["live"].startswith("needs the live model")
    with pytest.raises(ValidationError, match="ranker 'broken' failed on the planted setting 'clean'.*boom"):
        planted_board({"broken": (broken, {})}, ["clean"], seeds=1)
