"""Rankers and probes composed in one run (issue 12): same oracle, same data, every ranker judged
by the same yardsticks; a third-party ranker through entry points; options from registry.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroscope.cli import main
from neuroscope.comparison import compare_rankings, jaccard_top, spearman

REPO = Path(__file__).resolve().parent.parent
ELMO = REPO / "tests" / "reference" / "fixtures" / "elmo"
sys.path.insert(0, str(Path(__file__).parent))
from test_hardening import column_task, toy_corpus  # noqa: E402
from test_registry import install_plugin  # noqa: E402


def toy(tmp_path: Path, out: str, *more: str) -> list[str]:
    return ["run", "--model", f"elmo:{ELMO}", "--task", "toy", "--data-dir", str(tmp_path), "--seeds", "2",
            "--grid", "0,1e-3", "--epochs", "3", "--batch-size", "64", "--quiet", "--cache-dir",
            str(tmp_path / "cache"), "--out", str(tmp_path / out), *more]


def results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def test_adding_rankers_leaves_each_rankers_numbers_unchanged(tmp_path):
    column_task(tmp_path, toy_corpus(120))
    assert main(toy(tmp_path, "alone")) == 0
    assert main(toy(tmp_path, "together", "--ranker", "weight-mass,probeless,random")) == 0
    alone, together = results(tmp_path / "alone"), results(tmp_path / "together")
    assert together["rankers"] == ["weight-mass", "probeless", "random"]
    mass = together["per_ranker"]["weight-mass"]
    for a, b in zip(alone["per_seed"], mass["per_seed"]):
        for key in ("ablation", "ranking", "minimal", "control", "curves", "train_accuracy"):
            assert a[key] == b[key], key
    assert together["per_seed"] == mass["per_seed"]  # the first ranker is the top level
    # every ranker is judged against the same oracle: the all-neuron accuracy is shared
    alls = {name: r["summary"]["ablation"]["test"]["all"]["mean"] for name, r in together["per_ranker"].items()}
    assert len(set(alls.values())) == 1
    pairs = {(p["a"], p["b"]) for p in together["ranking_comparison"]["pairs"]}
    assert pairs == {("weight-mass", "probeless"), ("weight-mass", "random"), ("probeless", "random")}
    report = (tmp_path / "together" / "tables.md").read_text()
    assert "Do the rankings agree?" in report and (tmp_path / "together" / "rankers.png").is_file()
    # resumable per ranker: only the missing ranker's step is computed again
    for name in ("seed-1-probeless-minimal.json", "results.json"):
        (tmp_path / "together" / ("steps" if name.startswith("seed") else "") / name).unlink()
    assert main(toy(tmp_path, "together", "--ranker", "weight-mass,probeless,random", "--resume")) == 0
    timings = json.loads((tmp_path / "together" / "timings.json").read_text())
    assert timings["seed-1-probeless-minimal"] is not None and timings["seed-1-weight-mass-minimal"] is None
    assert results(tmp_path / "together")["per_ranker"] == together["per_ranker"]


def test_rankers_that_need_no_probe_skip_the_lambda_search(tmp_path):
    column_task(tmp_path, toy_corpus(80))
    assert main(toy(tmp_path, "run", "--ranker", "probeless,random", "--no-control")) == 0
    r = results(tmp_path / "run")
    assert r["lambdas"] == {"l1": 0.0, "l2": 0.0, "chosen_by": "unregularised (no probe-based ranker)"}
    assert not (tmp_path / "run" / "steps" / "lambda-search.json").exists()


def test_ranker_options_from_registry_toml(tmp_path, capsys):
    column_task(tmp_path, toy_corpus(80), extra='\n[rankers.gaussian]\nmax_neurons = 3\nfit_tokens = 500\n'
                '\n[rankers.iou-strict]\nranker = "iou"\nthreshold = 0.5\n')
    assert main(toy(tmp_path, "run", "--ranker", "gaussian,iou-strict", "--seeds", "1", "--no-control")) == 0
    r = results(tmp_path / "run")
    assert r["rankers"] == ["gaussian", "iou-strict"] and r["per_seed"][0]["ranking"]["method"] == "gaussian"
    capsys.readouterr()
    with open(tmp_path / "registry.toml", "a") as fh:
        fh.write('\n[rankers.probeless]\nstrid = 3\n')
    assert main(toy(tmp_path, "run2", "--ranker", "probeless")) == 2
    assert "unknown option(s) strid" in capsys.readouterr().err
    assert main(toy(tmp_path, "run3", "--ranker", "probles")) == 2
    assert "did you mean 'probeless'" in capsys.readouterr().err


def test_a_third_party_ranker_runs_through_the_whole_protocol(tmp_path, monkeypatch):
    site = install_plugin(tmp_path / "site", REPO / "tests" / "plugin_fixture" / "neuroscope_varranker.py",
                          name="neuroscope-varranker", entry="varranker = neuroscope_varranker")
    column_task(tmp_path, toy_corpus(80))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "neuroscope.cli", "rankers"], env=env, capture_output=True,
                            text=True, cwd=tmp_path)
    assert listed.returncode == 0 and "variance" in listed.stdout and "a test fixture" in listed.stdout
    done = subprocess.run([sys.executable, "-m", "neuroscope.cli", *toy(tmp_path, "run", "--ranker", "var,random")],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    r = results(tmp_path / "run")
    var = r["per_ranker"]["var"]
    assert var["per_seed"][0]["ranking"]["method"] == "variance"
    assert var["summary"]["minimal"]["0.5"]["n_neurons"]["mean"] >= 1 and var["summary"]["selectivity"]
    # NeuronBench takes every registered ranker: the installed one is on both boards
    monkeypatch.syspath_prepend(str(site))  # installed here too: the bench runs in this process
    monkeypatch.chdir(tmp_path)
    assert main(["bench-rankers", "--ranker", "var,f-stat,random", "--setting", "clean,distractors", "--seeds", "1",
                 "--runs", str(tmp_path / "run"), "--out", str(tmp_path / "bench")]) == 0
    board = json.loads((tmp_path / "bench" / "leaderboard.json").read_text())
    assert {row["ranker"] for row in board["planted"]["leaderboard"]} == {"var", "f-stat", "random"}
    # variance ranks the loud distractors first: it finds planted neurons only where nothing else is loud
    results_of = board["planted"]["results"]
    assert results_of["distractors"]["var"]["ap"]["mean"] < results_of["distractors"]["f-stat"]["ap"]["mean"]
    assert set(board["runs"]["runs"][0]["rankers"]) == {"var", "random"}
    assert "<td>var</td>" in (tmp_path / "bench" / "leaderboard.html").read_text()


def test_the_lbfgs_probe_runs_the_protocol(tmp_path, capsys):
    column_task(tmp_path, toy_corpus(80))
    assert main(toy(tmp_path, "run", "--probe", "lbfgs", "--seeds", "1", "--no-control")) == 0
    r = results(tmp_path / "run")
    assert r["probe"] == "lbfgs" and r["lambdas"]["l1"] == 0.0
    assert {p["l1"] for p in r["lambda_search"]["points"]} == {0.0}  # L2 alone is searched
    assert main(toy(tmp_path, "run2", "--probe", "lbfgs", "--l1", "1e-3", "--l2", "0")) == 2
    assert "takes no L1" in capsys.readouterr().err


def test_comparison_measures():
    a, b = np.arange(100), np.arange(100)[::-1].copy()
    assert jaccard_top(a, a, 10) == 1.0 and jaccard_top(a, b, 10) == 0.0
    assert spearman(a, a) == 1.0 and spearman(a, b) == pytest.approx(-1.0)
    c = a.copy()
    c[[0, 1]] = c[[1, 0]]
    assert 0.99 < spearman(a, c) < 1.0
    out = compare_rankings({"x": [a, a], "y": [a, b]})
    (pair,) = out["pairs"]
    assert pair["jaccard"]["1"]["values"] == [100.0, 0.0] and pair["spearman"]["mean"] == pytest.approx(0.0)


def test_lbfgs_probe_converges_where_ten_epochs_of_adam_do_not():
    from neuroscope.errors import ValidationError
    from neuroscope.lbfgs import LbfgsProbe, train_lbfgs
    from neuroscope.probe import ElasticNetProbe, TrainSettings

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 20)).astype(np.float32)
    y = np.argmax(X @ rng.standard_normal((20, 3)) + 0.5 * rng.standard_normal((3000, 3)), axis=1)
    lbfgs = LbfgsProbe(l2=1e-4).fit(X, y)
    assert lbfgs.score(X, y) > ElasticNetProbe(epochs=10).fit(X, y).score(X, y) + 0.05
    report: list = []
    coef, _ = train_lbfgs(X, y, 3, [(0, 1e-3)] * 2, TrainSettings(), masks=np.array([[True] * 20, [True] * 5 + [False] * 15]),
                          report=report)
    alone, _ = train_lbfgs(X, y, 3, [(0, 1e-3)], TrainSettings(), neurons=np.arange(5))
    np.testing.assert_allclose(coef[1][:, :5], alone[0], atol=1e-5)
    assert (coef[1][:, 5:] == 0).all() and all(converged for converged, _, _ in report)
    with pytest.raises(ValidationError, match="l1 = 0"):
        train_lbfgs(X, y, 3, [(1e-3, 0)])


def test_several_probes_make_one_run_directory_each(tmp_path):
    column_task(tmp_path, toy_corpus(60))
    args = toy(tmp_path, "unused", "--probe", "elastic-net,lbfgs", "--seeds", "1", "--l1", "0", "--l2", "1e-4",
               "--no-control")
    args = args[: args.index("--out")] + args[args.index("--out") + 2 :] + ["--runs-dir", str(tmp_path / "runs")]
    assert main(args) == 0
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(made) == 2 and "-toy-elastic-net-" in made[0] and "-toy-lbfgs-" in made[1], made
    probes = sorted(results(p)["probe"] for p in (tmp_path / "runs").iterdir())
    assert probes == ["elastic-net", "lbfgs"]
