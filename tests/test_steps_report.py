"""Steps and report functions on hand-built inputs whose answers are known."""

import json

import numpy as np
import pytest

from neuroscope import Corpus, NeuronIndex, Sentence, TaskData
from neuroscope.report import render_report, rerender, run_tables
from neuroscope.analyses import layer_distribution
from neuroscope.steps.data import data_summary, majority_baseline
from neuroscope.errors import NeuroscopeError


def small_task():
    train = Corpus("train", [Sentence(["a", "b", "c"], ["N", "N", "V"]), Sentence(["d"], ["N"])])
    dev = Corpus("dev", [Sentence(["a", "x"], ["N", "Q"])])
    test = Corpus("test", [Sentence(["d"], ["N"]), Sentence(["e", "f"], ["V", "V"])])
    return TaskData("toy", train, dev, test)


def test_majority_baseline():
    base = majority_baseline(small_task())
    assert base == {"label": "N", "dev": 50.0, "test": pytest.approx(100 / 3)}


def test_data_summary_counts_unseen_and_overlap():
    summary = data_summary(small_task())
    assert summary["labels"] == ["N", "V"]
    assert summary["splits"]["dev"]["unseen_labels"] == {"Q": 1}
    assert summary["splits"]["test"]["also_in_train"] == 1  # "d"
    assert summary["splits"]["train"]["tokens"] == 4


def test_layer_distribution():
    index = NeuronIndex(("emb", "1", "2"), 4)
    assert layer_distribution(np.array([0, 1, 5, 11, 10]), index) == [2, 1, 2]


def stat(m):
    return {"mean": m, "std": 0.5, "values": [m - 0.5, m + 0.5]}


def fake_results():
    ablation = {"all": stat(95.0), "top": stat(90.0), "random": stat(60.0), "bottom": stat(20.0)}
    minimal = {"n_neurons": stat(2.0), "share": stat(25.0), "dev": {"all": stat(95.0), "selected": stat(94.8)},
               "test": {"all": stat(95.0), "selected": stat(94.6)}}
    selectivity = {"all": stat(20.0), "selected": stat(30.0), "control": {"all": stat(75.0), "selected": stat(64.6)}}
    scan = {"sizes": [1, 2], "dev_accuracies": [80.0, 94.8], "oracle_dev": 95.0, "sets": []}
    seed = {"seed": 0, "minimal": scan, "analyses": {"exclusivity": {"histogram": {"1": 1, "2": 1}}}}
    return {
        "model": "m", "task": "pos", "neurons": 8, "layers": ["emb", "1"], "hidden_size": 4,
        "lambdas": {"l1": 0.001, "l2": 0.01, "chosen_by": "search"}, "fraction": 0.25, "deltas": [0.5, 2.0],
        "seeds": [0, 1], "labels": ["A", "B"],
        "lambda_search": {"points": [{"l1": 0.0, "l2": 0.0, "top": 80.0, "bottom": 70.0, "all": 96.0, "score": 5.0},
                                     {"l1": 0.001, "l2": 0.01, "top": 90.0, "bottom": 20.0, "all": 95.0, "score": 34.5}],
                          "unregularised": 96.0, "best": [0.001, 0.01], "alpha": 0.5, "beta": 0.5, "fraction": 0.25,
                          "seed": 0},
        "data": {"train": {"sentences": 1, "tokens": 2, "unseen_labels": {}, "also_in_train": 0, "source": "s"},
                 "dev": {"sentences": 1, "tokens": 2, "unseen_labels": {"C": 1}, "also_in_train": 0, "source": "s"},
                 "test": {"sentences": 1, "tokens": 2, "unseen_labels": {}, "also_in_train": 1, "source": "s"}},
        "label_counts": {"train": {"A": 1, "B": 1}},
        "unseen_label_rule": "error", "majority_baseline": {"label": "A", "dev": 50.0, "test": 40.0},
        "per_seed": [seed],
        "summary": {"ablation": {"dev": ablation, "test": ablation},
                    "minimal": {"0.5": minimal, "2.0": minimal},
                    "selectivity": {"dev": selectivity, "test": selectivity},
                    "layer_distribution": {"mean": [1.5, 0.5], "std": [0.5, 0.5]},
                    "neurons_per_label": {"A": stat(1.0), "B": stat(2.0)},
                    "exclusivity": {"mean_labels_per_neuron": stat(1.5), "exclusive_percent": stat(50.0)},
                    "dominant_layer": {"A": {"layer": "emb", "share": 100.0, "per_layer": [2, 0]},
                                       "B": {"layer": "1", "share": 75.0, "per_layer": [1, 3]}},
                    "train_accuracy": stat(99.0)},
    }


def test_ablation_table_in_paper_layout():
    table = run_tables(fake_results())[0].markdown()
    assert table.splitlines()[2:] == [
        "| POS | m |", "|---|---|", "| All | 95.00 ± 0.50 |", "| Top 25% | 90.00 ± 0.50 |",
        "| Random 25% | 60.00 ± 0.50 |", "| Bottom 25% | 20.00 ± 0.50 |",
    ]
    md = "".join(t.markdown() for t in run_tables(fake_results()))
    assert "| emb | 1.5 | 75.0% |" in md and "C (1)" in md
    assert "| Neu_t | 2 ± 0 / 25.0 ± 0.5% |" in md and "| Sel_t | 30.00 ± 0.50 |" in md
    assert "| 0.001 | 0.01 | 90.00 | 20.00 | 95.00 | 34.50 |" in md
    assert "| B (rare) | 2.0 ± 0.5 | 1 | 75% | 1 | 0 | 0 |" in md  # 1 train token: flagged


def test_render_and_rerender(tmp_path):
    written = render_report(fake_results(), tmp_path)
    assert [p.name for p in written] == ["tables.md", "layers.png", "neurons_per_label.png", "exclusivity.png",
                                         "label_layers.png", "lambda_grid.png", "minimal_scan.png", "report.html"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "<td>Sel_t</td>" in html
    # rerender validates results.json against its schema first: this hand-made one lacks fields
    # (a real run's is re-rendered in test_cli_integration.py)
    (tmp_path / "results.json").write_text(json.dumps(fake_results()))
    with pytest.raises(NeuroscopeError, match="incomplete or damaged results .*schema_version|schema version"):
        rerender(tmp_path)
    with pytest.raises(NeuroscopeError, match="no such run directory"):
        rerender(tmp_path / "nothing")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(NeuroscopeError, match="no results.json"):
        rerender(tmp_path / "elsewhere")


def test_markup_in_results_strings_stays_text(tmp_path):
    """Labels, layer names, the model's and task's names and the causal mode from a crafted
    results.json reach report.html escaped and tables.md as entities, never as markup."""
    evil = "<script>alert(1)</script>"
    results = fake_results()
    results["model"], results["task"] = evil, evil
    results["layers"] = [evil, "1"]
    results["labels"] = [evil, "B"]
    results["label_counts"] = {"train": {evil: 1, "B": 1}}
    results["summary"]["neurons_per_label"] = {evil: stat(1.0), "B": stat(2.0)}
    results["summary"]["dominant_layer"] = {evil: {"layer": evil, "share": 100.0, "per_layer": [2, 0]},
                                            "B": {"layer": "1", "share": 75.0, "per_layer": [1, 3]}}
    results["causal"] = {"mode": evil, "fraction": 0.25, "objective": None, "per_ranker": {}, "none": {}}
    from neuroscope.report import summary_html

    card = summary_html({**results, "causal": None})
    assert "<script>" not in card
    with pytest.raises(Exception):
        summary_html(results)  # an empty causal section is refused, not rendered
    render_report(fake_results() | {"model": evil, "task": evil, "layers": [evil, "1"]}, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in (tmp_path / "tables.md").read_text()
