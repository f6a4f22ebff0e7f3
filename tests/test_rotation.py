"""The rotation baseline (--baseline rotation, issue 25): random orthonormal bases, the
rotated store, the gap it measures, and the run through the command line (with --ksparse,
whose curves it also recomputes in the random basis)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroscope.ablation import ablation_sets, evaluate_ablations
from neuroscope.cli import main
from neuroscope.probe import ElasticNetProbe
from neuroscope.ranking import weight_mass_ranking
from neuroscope.rotation import random_rotation, rotated
from neuroscope.store import MemoryActivations
from neuroscope.types import NeuronIndex

sys.path.insert(0, str(Path(__file__).parent))
from test_composition import results, toy  # noqa: E402
from test_hardening import column_task, toy_corpus  # noqa: E402


def memory_set(X: np.ndarray, layers: int) -> MemoryActivations:
    index = NeuronIndex(tuple(f"l{k}" for k in range(layers)), X.shape[1] // layers)
    manifest = {"key": "planted", "neuron_index": index.to_json(), "n_tokens": len(X)}
    return MemoryActivations(manifest, X.astype(np.float16), np.array([0, len(X)]))


def test_random_rotations_are_orthonormal_seeded_and_differ_by_layer():
    q = random_rotation(16, 3, 0)
    np.testing.assert_allclose(q @ q.T, np.eye(16), atol=1e-12)
    np.testing.assert_array_equal(q, random_rotation(16, 3, 0))
    assert not np.allclose(q, random_rotation(16, 3, 1)) and not np.allclose(q, random_rotation(16, 4, 0))


def test_the_rotated_store_is_each_layer_times_its_rotation():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 12)).astype(np.float32)
    turned = rotated(memory_set(X, 3), seed=5)
    stored = X.astype(np.float16).astype(np.float32)
    assert turned.key == "planted-rotation-5" and turned.index.n_layers == 3 and turned.n_tokens == 300
    for layer in range(3):
        cols = slice(4 * layer, 4 * layer + 4)
        expected = stored[:, cols] @ random_rotation(4, 5, layer).astype(np.float32)
        np.testing.assert_allclose(turned.rows(slice(0, 300))[:, cols], expected, atol=2e-3)
        np.testing.assert_allclose(np.linalg.norm(turned.rows(slice(0, 300))[:, cols], axis=1),
                                   np.linalg.norm(stored[:, cols], axis=1), rtol=2e-3)


def test_axis_aligned_information_gives_a_gap_and_rotation_keeps_the_information():
    """Planted: each label shifts its own neuron. Keeping the top 20 % of neurons keeps the
    labels; the top 20 % of random directions does not, though all directions together
    predict as well as all neurons."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1200)
    X = rng.standard_normal((1200, 20)).astype(np.float32)
    for c in range(4):
        X[:, 5 * c] += 3.0 * (y == c)
    gold = y
    accuracy = {}
    for basis, data in (("neuron", memory_set(X, 2)), ("rotated", rotated(memory_set(X, 2), seed=0))):
        probe = ElasticNetProbe(l1=1e-3, l2=1e-5, epochs=10, seed=0).fit(data, y)
        sets = {"all": None, **ablation_sets(weight_mass_ranking(probe.coef_), 0.2, 0)}
        accuracy[basis] = evaluate_ablations(probe, sets, data, gold, "error")
    assert accuracy["rotated"]["all"] == pytest.approx(accuracy["neuron"]["all"], abs=5.0)  # L1 is basis-bound
    assert accuracy["neuron"]["top"] - accuracy["rotated"]["top"] > 20.0, accuracy


def test_baseline_rotation_and_ksparse_run_through_the_command_line(tmp_path, capsys):
    column_task(tmp_path, toy_corpus(80))
    rankers = ["weight-mass", "probeless", "mi", "lape", "random"]  # the newer rankers through the protocol too
    args = toy(tmp_path, "run", "--seeds", "1", "--no-control", "--l1", "1e-3", "--l2", "0", "--baseline",
               "rotation", "--ranker", ",".join(rankers), "--ksparse", "--ksparse-k", "1,2,4", "--ksparse-pool", "6")
    assert main(args) == 0
    r = results(tmp_path / "run")
    rotation = r["rotation"]
    assert set(rotation["per_ranker"]) == set(rankers) and rotation["not_rotated"] == {}
    assert all(r["per_ranker"][name]["summary"]["minimal"] for name in rankers)
    for name, table in rotation["per_ranker"].items():
        seed = r["per_ranker"][name]["per_seed"][0]
        assert table["neuron"]["test"]["top"]["mean"] == seed["ablation"]["test"]["top"]
        assert table["gap"]["mean"] == pytest.approx(seed["ablation"]["test"]["top"]
                                                     - seed["rotation"]["ablation"]["test"]["top"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["baseline"] == "rotation" and config["ksparse"] is True and config["ksparse_k"] == [1, 2, 4]
    tables = (tmp_path / "run" / "tables.md").read_text()
    assert "Rotation baseline, test" in tables and "k-sparse probing, test" in tables
    assert (tmp_path / "run" / "steps" / "seed-0-rotation.json").is_file()
    assert (tmp_path / "run" / "ksparse.png").is_file()

    # k-sparse curves per ranker, in the neuron basis and the random one, and the ceiling
    sparse = r["ksparse"]
    assert sparse["labels"] == ["C", "V"] and sparse["ceiling"]["ks"] == [1, 2, 3]
    for name in rankers:
        record, seed = sparse["per_ranker"][name], r["per_ranker"][name]["per_seed"][0]
        assert record["ks"] == [1, 2, 4] and [v["mean"] for v in record["mean_f1"]] == seed["ksparse"]["mean_f1"]
        assert [v["mean"] for v in record["rotated"]["mean_f1"]] == seed["rotation"]["ksparse"]["mean_f1"]
    assert sparse["per_ranker"]["random"]["label_orders"] == "overall"
    assert sparse["per_ranker"]["probeless"]["label_orders"] == "per label"
    assert main(["bench-rankers", "--no-planted", "--runs", str(tmp_path / "run"), "--out", str(tmp_path / "bench")]) == 0
    row = json.loads((tmp_path / "bench" / "leaderboard.json").read_text())["runs"]["runs"][0]["rankers"]["mi"]
    seed = r["per_ranker"]["mi"]["per_seed"][0]
    assert row["ksparse_f1"]["mean"] == pytest.approx(np.mean(seed["ksparse"]["mean_f1"]))
    assert row["ksparse_rotation_gap"]["mean"] == pytest.approx(np.mean(seed["ksparse"]["mean_f1"])
                                                                - np.mean(seed["rotation"]["ksparse"]["mean_f1"]))

    # a finished run read back: the checked step files make the same results.json
    before = (tmp_path / "run" / "results.json").read_bytes()
    (tmp_path / "run" / "results.json").unlink()
    assert main([*args, "--resume"]) == 0
    assert (tmp_path / "run" / "results.json").read_bytes() == before
    assert json.loads((tmp_path / "run" / "timings.json").read_text())["ksparse"] is None  # reused, not rerun
    path = tmp_path / "run" / "steps" / "ksparse.json"
    data = json.loads(path.read_text())
    data["ceiling"]["per_label"]["C"]["f1"][0] = 140.0
    path.write_text(json.dumps(data))
    assert main([*args, "--resume"]) == 2
    assert "ksparse.json: damaged step file (ceiling.per_label.C.f1: 140.0 is not a percentage" in \
        capsys.readouterr().err

    assert main(toy(tmp_path, "screened", "--baseline", "rotation", "--screen", "50%")) == 2
    assert "--baseline rotation rotates whole layers" in capsys.readouterr().err
    assert main(toy(tmp_path, "bad", "--ksparse", "--ksparse-k", "4,2")) == 2
    assert "--ksparse-k: expected increasing different sizes" in capsys.readouterr().err
