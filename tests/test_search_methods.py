"""--search path and halving (issue 26): the resumable training they rest on, their rounds,
their choice against the full grid's on a planted problem, and a diverged warm start."""

import attrs
import numpy as np
import pytest

from neuroscope import halving as halving_module
from neuroscope import lambda_path
from neuroscope.errors import ValidationError
from neuroscope.halving import first_round, halving_epochs, rungs
from neuroscope.probe import ElasticNetTraining, TrainSettings, train_elastic_net
from neuroscope.ranking import weight_mass_ranking
from neuroscope.search import LambdaSearch, lambda_grid
from neuroscope.search_methods import search_lambdas
from neuroscope.settings import RunConfig
from neuroscope.steps.files import search_record

SETTINGS = TrainSettings(epochs=10, batch_size=32)
GRID = lambda_grid((0, 3e-2, 1e-3))


def planted(seed=0, n=6000, d=100):
    """4 labels, each with two shifted neurons among d Gaussian ones."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    for c in range(4):
        X[:, 2 * c] += 1.0 * (y == c)
        X[:, 2 * c + 1] += 0.5 * (y == c)
    return X[:4000], y[:4000], X[4000:], y[4000:]


def search(method, seed=0, grid=GRID):
    X, y, Xd, yd = planted()
    return search_lambdas(method, X, y, Xd, yd, 4, grid, attrs.evolve(SETTINGS, seed=seed), weight_mass_ranking,
                          {"stride": 100})


def test_rungs_and_their_cost():
    assert rungs(10) == [1, 2, 3, 5, 10] and rungs(1) == [1] and rungs(4) == [1, 2, 4]
    assert halving_epochs(64, 10) == 64 + 32 + 16 * 8 == 224
    assert halving_epochs(63, 10) + 10 == 233  # the paper's grid, (0, 0) trained throughout
    assert halving_epochs(40, 10) == 40 + 20 + 16 * 8  # at least MIN_FINALISTS = 16 go on
    assert halving_epochs(8, 10) == 8 * 10  # a grid of 9 pairs: nothing is cut
    # no round is judged before MIN_ROUND_STEPS (40) optimiser steps: 6,454 rows in batches of 512
    # are 13 steps an epoch, so the first round ends at 4 epochs; 24,000 rows (47 steps) at 1
    assert first_round(6454, 512) == 4 and first_round(24_000, 512) == 1 and first_round(10, 512) == 40
    assert rungs(10, 4) == [4, 5, 10] and rungs(10, 40) == [10] and rungs(10, 1) == rungs(10)
    assert halving_epochs(63, 10, 4) == 63 * 4 + 32 * 1 + 16 * 5


def test_a_kept_setting_continues_as_if_trained_alone():
    X, y, _, _ = planted()
    lambdas = [(0.0, 0.0), (1e-3, 1e-4), (3e-2, 0.0), (0.0, 1e-2)]
    settings = TrainSettings(epochs=4, batch_size=128)
    coef, intercept = train_elastic_net(X, y, 4, lambdas, settings)
    training = ElasticNetTraining(X, y, 4, lambdas, settings)
    training.epoch()
    training.epoch()
    training.keep([2, 0])
    training.epoch()
    training.epoch()
    kept_coef, kept_intercept = training.weights()
    assert training.lambdas == [lambdas[2], lambdas[0]] and training.epochs == 4
    np.testing.assert_allclose(kept_coef, coef[[2, 0]], atol=1e-6)
    np.testing.assert_allclose(kept_intercept, intercept[[2, 0]], atol=1e-6)


def test_halving_chooses_within_the_grids_seed_spread(monkeypatch):
    """The issue's acceptance rule on a planted problem: the chosen pair is the grid's, or
    its S (as the grid scores it) lies within the spread of S across seeds at the grid's
    choice. (The path does not meet it here: it chooses (3e-2, 3e-2), grid S 18.45 against
    18.83 at the grid's (3e-2, 0) with a seed spread of 0.25; docs/protocol.md.) The 9-pair
    grid is below the default MIN_FINALISTS (16), which would keep every pair; with 2, as a
    quarter of a grid this size, the rounds cut and continue."""
    monkeypatch.setattr(halving_module, "MIN_FINALISTS", 2)
    grids = [search("grid", seed) for seed in range(3)]
    best = grids[0].best
    at_best = [next(p.score for p in g.points if (p.l1, p.l2) == best) for g in grids]
    spread = max(at_best) - min(at_best)
    grid_score = {(p.l1, p.l2): p.score for p in grids[0].points}
    halving = search("halving")
    assert halving.method == "halving" and len(halving.points) == len(GRID)
    assert halving.best == best or grid_score[halving.best] >= grid_score[best] - spread, halving.best
    # under half the grid's setting-epochs, (0, 0) trained through as A_z's reference
    assert sum(p.epochs for p in halving.points) < 10 * len(GRID) / 2
    assert len(halving.finalists) == 3  # 8 pairs besides (0, 0): 8, 4, 2, 2, 2, and (0, 0) for A_z
    assert all(p.epochs == 10 for p in halving.points if (p.l1, p.l2) in halving.finalists)
    # a finalist is continued, not retrained: its probe is the grid's probe for the pair
    grid_probe = search_lambdas("grid", *planted(), 4, [halving.best], SETTINGS, weight_mass_ranking,
                                {"stride": 100}).best_probe
    np.testing.assert_allclose(halving.best_probe[0], grid_probe[0], atol=1e-5)


def test_the_path_chooses_within_the_converged_grids_seed_spread():
    """The acceptance rule for the path, against the grid it can match: with ``--epochs
    auto`` on both, every probe trained until its loss settles, the path's warm-started
    probes and the grid's cold-started ones are near the same solutions, and its choice
    is the grid's pair or one whose grid S lies within the grid's spread over seeds (with
    a fixed 10 epochs the grid's probes are 10-epoch iterates from zero, which a warm
    start is not, and the rule fails: see the halving test's docstring)."""
    converged = attrs.evolve(SETTINGS, epochs="auto")
    X, y, Xd, yd = planted()
    grids = [search_lambdas("grid", X, y, Xd, yd, 4, GRID, attrs.evolve(converged, seed=seed), weight_mass_ranking,
                            {"stride": 100}) for seed in range(3)]
    best = grids[0].best
    at_best = [next(p.score for p in g.points if (p.l1, p.l2) == best) for g in grids]
    spread = max(at_best) - min(at_best)
    grid_score = {(p.l1, p.l2): p.score for p in grids[0].points}
    for seed in range(3):
        path = search_lambdas("path", X, y, Xd, yd, 4, GRID, attrs.evolve(converged, seed=seed), weight_mass_ranking,
                              {"stride": 100})
        assert path.best == best or grid_score[path.best] >= grid_score[best] - spread, (seed, path.best)


def test_the_path_warm_starts_each_setting_from_its_neighbour():
    found = search("path")
    assert found.method == "path" and len(found.points) == len(GRID)
    start = {(p.l1, p.l2): p.start for p in found.points}
    assert start[(3e-2, 3e-2)] is None and start[(3e-2, 1e-3)] == (3e-2, 3e-2) and start[(0.0, 0.0)] == (0.0, 1e-3)
    assert all(1 <= p.epochs <= 10 and not p.restarted for p in found.points)
    assert found.best_probe is not None and found.best_training["epochs"] == next(
        p.epochs for p in found.points if (p.l1, p.l2) == found.best)


def test_records_round_trip_and_a_grid_record_keeps_its_layout():
    grid = search("grid").to_json()
    assert "method" not in grid and "finalists" not in grid
    assert all(set(p) == {"l1", "l2", "top", "bottom", "all", "score"} for p in grid["points"])
    for method in ("path", "halving"):
        found = search(method)
        data = found.to_json()
        assert data["method"] == method and all("epochs" in p for p in data["points"])
        again = search_record(data, GRID, 0.5, 0.5, 0.2, 0)
        assert again.best == found.best and again.method == method
        assert LambdaSearch.from_json(data).to_json() == data


def test_a_diverged_warm_start_is_trained_again_from_zero(monkeypatch):
    exploded = []

    def broken_start(previous, n_classes, width):
        if previous is None:
            return np.zeros((n_classes, width), np.float32), np.zeros(n_classes, np.float32)
        exploded.append(True)
        return np.full((n_classes, width), 1e30, np.float32), np.zeros(n_classes, np.float32)

    monkeypatch.setattr(lambda_path, "warm_start", broken_start)
    grid = lambda_grid((0, 3e-2))
    found = search("path", grid=grid)
    assert exploded
    restarted = [p for p in found.points if p.restarted]
    assert restarted and all(p.start is None for p in restarted)
    assert all(np.isfinite([p.top, p.bottom, p.all, p.score]).all() for p in found.points)
    assert np.isfinite(found.best_probe[0]).all()
    # a restarted setting is the setting trained from zero by the same rule
    X, y, _, _ = planted()
    pair = (restarted[0].l1, restarted[0].l2)
    cold = lambda_path.train_until_settled(X, y, 4, [pair], SETTINGS, None, None)[pair]
    assert restarted[0].epochs == len(cold[2])


def test_diverged_rule():
    assert lambda_path.diverged([1.0, 0.9], finite=False)
    assert lambda_path.diverged([1.0, float("nan")], finite=True)
    assert lambda_path.diverged([1.0, 0.9, 1.2], finite=True)
    assert not lambda_path.diverged([1.0, 1.04, 0.9], finite=True)
    assert lambda_path.diverged([5.0, 4.9], finite=True, cross_entropy=1.5, n_classes=4)  # ln 4 = 1.39
    assert not lambda_path.diverged([5.0, 4.9], finite=True, cross_entropy=1.3, n_classes=4)


def test_the_search_option_is_validated_before_anything_loads():
    base = dict(model="m", task="t", data_dir="/d")
    assert "search_method" not in RunConfig(**base).to_json()  # config.json of a grid run as it was
    assert RunConfig(**base, search_method="halving").to_json()["search_method"] == "halving"
    with pytest.raises(ValidationError, match="--search halving: needs a number of --epochs"):
        RunConfig(**base, search_method="halving", epochs="auto").validate()
    with pytest.raises(ValidationError, match="--search path: the lambdas are fixed"):
        RunConfig(**base, search_method="path", l1=0.0, l2=0.0).validate()
    with pytest.raises(ValidationError, match="only the elastic-net probe"):
        RunConfig(**base, search_method="path", probe="lbfgs").validate()
    # the default, --search auto: halving where it applies, the grid elsewhere; config.json records it
    from neuroscope.planning import settings_name
    from neuroscope.settings import request_from_kwargs

    assert request_from_kwargs(**base).configs()[0].search_method == "halving"
    auto = dict(base, search_method="auto")
    assert RunConfig(**auto).to_json()["search_method"] == "halving" and settings_name(RunConfig(**auto)) == ""
    for other in ({"epochs": "auto"}, {"l1": 1e-3, "l2": 0.0}, {"probe": "lbfgs"}):
        config = RunConfig(**auto, **other)
        assert config.search_method == "grid" and "search_method" not in config.to_json(), other
        assert "search" not in settings_name(config)
    assert settings_name(RunConfig(**base, search_method="grid")) == "-searchmethod-grid"
    X, y, Xd, yd = planted()
    with pytest.raises(ValidationError, match="needs the elastic-net probe's trainer"):
        search_lambdas("halving", X, y, Xd, yd, 4, GRID, SETTINGS, weight_mass_ranking, {"stride": 100},
                       trainer=lambda *a, **k: None)


def test_halving_and_a_warm_scan_run_through_the_command_line_and_resume(tmp_path):
    """--search halving and --scan-start previous through `neuroscope run` (a toy task, the
    small ELMo fixture): results.json records both, config.json names them, and --resume
    reads the finished steps back as they are."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_hardening import ELMO, column_task, toy_corpus

    from neuroscope.cli import main

    column_task(tmp_path, toy_corpus(40))
    args = ["run", "--model", f"elmo:{ELMO}", "--task", "toy", "--data-dir", str(tmp_path), "--seeds", "1",
            "--grid", "0,1e-3,1e-5", "--epochs", "3", "--search", "halving", "--scan-start", "previous",
            "--scan-epochs", "1", "--scan-block", "2", "--deltas", "0.5", "--no-control", "--quiet",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["lambda_search"]["method"] == "halving"
    scan = results["per_seed"][0]["minimal"]
    assert (scan["start"], scan["epochs"]) == ("previous", 1)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["search_method"], config["scan_start"], config["scan_epochs"]) == ("halving", "previous", 1)
    before = (tmp_path / "run" / "results.json").read_bytes()
    (tmp_path / "run" / "results.json").unlink()
    assert main([*args, "--resume"]) == 0
    assert (tmp_path / "run" / "results.json").read_bytes() == before
