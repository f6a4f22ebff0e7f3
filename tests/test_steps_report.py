"""Steps and report functions on hand-built inputs whose answers are known."""

import json

import numpy as np
import pytest

from neuroscope import Corpus, NeuronIndex, Sentence, TaskData
from neuroscope.report import ablation_table, render_report, rerender, tables_markdown
from neuroscope.steps import data_summary, layer_distribution, majority_baseline
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


def fake_results():
    stat = lambda m: {"mean": m, "std": 0.5, "values": [m - 0.5, m + 0.5]}  # noqa: E731
    ablation = {"all": stat(95.0), "top": stat(90.0), "random": stat(60.0), "bottom": stat(20.0)}
    return {
        "model": "m", "task": "pos", "neurons": 8, "layers": ["emb", "1"], "hidden_size": 4,
        "lambdas": {"l1": 0.001, "l2": 0.01}, "fraction": 0.25, "seeds": [0, 1], "labels": ["A", "B"],
        "data": {"train": {"sentences": 1, "tokens": 2, "unseen_labels": {}, "also_in_train": 0, "source": "s"},
                 "dev": {"sentences": 1, "tokens": 2, "unseen_labels": {"C": 1}, "also_in_train": 0, "source": "s"},
                 "test": {"sentences": 1, "tokens": 2, "unseen_labels": {}, "also_in_train": 1, "source": "s"}},
        "unseen_label_rule": "error", "majority_baseline": {"label": "A", "dev": 50.0, "test": 40.0},
        "summary": {"ablation": {"dev": ablation, "test": ablation},
                    "top_layer_distribution": {"mean": [1.5, 0.5], "std": [0.5, 0.5]},
                    "train_accuracy": stat(99.0)},
    }


def test_ablation_table_in_paper_layout():
    table = ablation_table(fake_results(), "test")
    assert table.splitlines() == [
        "| POS | m |", "|---|---|", "| All | 95.00 ± 0.50 |", "| Top 25% | 90.00 ± 0.50 |",
        "| Random 25% | 60.00 ± 0.50 |", "| Bottom 25% | 20.00 ± 0.50 |",
    ]
    md = tables_markdown(fake_results())
    assert "| emb | 1.5 | 75.0% |" in md and "C (1)" in md


def test_render_and_rerender(tmp_path):
    written = render_report(fake_results(), tmp_path)
    assert [p.name for p in written] == ["tables.md", "layers.png"]
    (tmp_path / "results.json").write_text(json.dumps(fake_results()))
    (tmp_path / "tables.md").unlink()
    rerender(tmp_path)
    assert (tmp_path / "tables.md").is_file()
    with pytest.raises(NeuroscopeError, match="no results.json"):
        rerender(tmp_path / "nothing")
