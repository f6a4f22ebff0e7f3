"""Corpora as parquet tables (reader = "parquet", issue 27): the Hugging Face hub's
CoNLL-2000 layout read as it is, integer labels named by the file's features, and bad
tables refused naming the file and row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neuroscope.errors import DataFormatError, NeuroscopeError, ValidationError
from neuroscope.loading import load_task
from neuroscope.registry import Registry
from neuroscope.cli import main
from neuroscope_plugins.conll2000 import read_conll2000

sys.path.insert(0, str(Path(__file__).parent))
from test_hardening import ELMO  # noqa: E402


def conll_rows(path: Path, limit: int) -> list[tuple[list[str], list[str], list[str]]]:
    """The first ``limit`` sentences of a CoNLL-2000 file: words, POS tags, chunk tags."""
    rows, words, pos, chunk = [], [], [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            if words:
                rows.append((words, pos, chunk))
                words, pos, chunk = [], [], []
            if len(rows) == limit:
                break
            continue
        w, p, c = line.split()
        words.append(w), pos.append(p), chunk.append(c)
    return rows


def hub_table(rows, pos_names: list[str], chunk_names: list[str]) -> pa.Table:
    """The hub's conll2000 parquet: id, tokens, pos_tags and chunk_tags (integers), the class
    names in the schema's huggingface metadata as `datasets` writes them."""
    features = {"id": {"dtype": "string", "_type": "Value"},
                "tokens": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                "pos_tags": {"feature": {"names": pos_names, "_type": "ClassLabel"}, "_type": "Sequence"},
                "chunk_tags": {"feature": {"names": chunk_names, "_type": "ClassLabel"}, "_type": "Sequence"}}
    table = pa.table({"id": [str(i) for i in range(len(rows))], "tokens": [r[0] for r in rows],
                      "pos_tags": [[pos_names.index(t) for t in r[1]] for r in rows],
                      "chunk_tags": [[chunk_names.index(t) for t in r[2]] for r in rows]})
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def test_the_hubs_conll2000_layout_is_a_task_with_no_code(data_dir, tmp_path, capsys):
    source = data_dir / "chunking" / "conll2000"
    train, test = conll_rows(source / "train.txt", 120), conll_rows(source / "test.txt", 60)
    pos_names = sorted({t for r in train + test for t in r[1]})
    chunk_names = sorted({t for r in train + test for t in r[2]})
    for name, rows in (("train", train[:90]), ("validation", train[90:]), ("test", test)):
        pq.write_table(hub_table(rows, pos_names, chunk_names), tmp_path / f"{name}.parquet")
    (tmp_path / "registry.toml").write_text(
        '[tasks.hubchunk]\nreader = "parquet"\ntrain = "train.parquet"\ndev = "validation.parquet"\n'
        'test = "test.parquet"\nwords = "tokens"\nlabels = "chunk_tags"\n'
        '[tasks.hubpos]\nreader = "parquet"\ntrain = "train.parquet"\ndev = "validation.parquet"\n'
        'test = "test.parquet"\nlabels = "pos_tags"\n')
    task = load_task(Registry(), "hubchunk", tmp_path)
    reference = read_conll2000(data_dir, train="chunking/conll2000/train.txt", test="chunking/conll2000/test.txt")
    assert list(task.train.sentences) == list(reference.train.sentences[:90])  # names, not integers
    assert list(task.test.sentences) == list(reference.test.sentences[:60])
    pos = load_task(Registry(), "hubpos", tmp_path)
    assert pos.train.sentences[0].labels[:3] == tuple(train[0][1][:3])
    # and through a run, configured in registry.toml alone
    assert main(["run", "--model", f"elmo:{ELMO}", "--task", "hubchunk", "--data-dir", str(tmp_path), "--seeds", "1",
                 "--l1", "0", "--l2", "0", "--epochs", "2", "--no-control", "--quiet", "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data"]["train"]["sentences"] == 90 and "B-NP" in results["labels"]


def test_bad_tables_are_refused_naming_the_file_and_row(tmp_path):
    from neuroscope_plugins.parquet import read_parquet

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"tokens": [["a", "b"], ["c"]], "tags": [["X", "Y"], ["X", "Y"]]}), path)
    with pytest.raises(DataFormatError, match=r"t.parquet, row 1: 1 words but 2 labels"):
        read_parquet(path, "tokens", "tags")
    with pytest.raises(DataFormatError, match=r"no column 'labels'; its columns: tokens, tags"):
        read_parquet(path, "tokens", "labels")
    pq.write_table(pa.table({"tokens": [["a", "b"]], "tags": [[0, 1]]}), path)
    with pytest.raises(DataFormatError, match="integer labels but neither label_names nor the file's Hugging Face"):
        read_parquet(path, "tokens", "tags")
    assert read_parquet(path, "tokens", "tags", ["X", "Y"])[0].labels == ("X", "Y")
    with pytest.raises(DataFormatError, match="row 0: label 1 is outside the 1 label names"):
        read_parquet(path, "tokens", "tags", ["X"])
    pq.write_table(pa.table({"tokens": [["a", None]], "tags": [["X", "Y"]]}), path)
    with pytest.raises(DataFormatError, match="row 0: an empty or null word or label"):
        read_parquet(path, "tokens", "tags")
    path.write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="t.parquet: not a readable parquet file"):
        read_parquet(path, "tokens", "tags")
    from neuroscope_plugins.parquet import read_parquet_task
    with pytest.raises(NeuroscopeError, match="label_names must be a list of names"):
        read_parquet_task(tmp_path, train="t", dev="t", test="t", labels="tags", label_names="X")


def test_a_dataframe_or_a_dataset_in_memory_is_a_task(tmp_path, monkeypatch):
    import datasets
    import pandas as pd

    import neuroscope as ns

    monkeypatch.setenv("NEUROSCOPE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(60):
        words = ["".join(rng.choice(list("abcdeiou"), 3)) for _ in range(4)]
        rows.append((words, ["V" if w[0] in "aeiou" else "C" for w in words]))
    frame = pd.DataFrame({"tokens": [r[0] for r in rows], "tags": [r[1] for r in rows], "id": range(60)})
    task = ns.corpus(frame[:40], frame[40:50], frame[50:], labels="tags", name="vowels")
    assert task.startswith("parquet:") and Path(task.split(":", 1)[1]).name.startswith("vowels-")
    assert ns.corpus(frame[:40], frame[40:50], frame[50:], labels="tags", name="vowels") == task  # the same data
    options = dict(model=f"elmo:{ELMO}", seeds=1, l1=0, l2=0, epochs=2, no_control=True, quiet=True,
                   runs_dir=str(tmp_path / "runs"))
    run = ns.run(task=task, **options)
    assert run.results["data"]["train"]["sentences"] == 40 and run.labels == ("C", "V")
    assert "-parquet-vowels-" in run.path.name
    # the same corpus as a datasets.Dataset with integer labels, named by its ClassLabel feature
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=["C", "V"]))})
    encoded = datasets.Dataset.from_dict({"tokens": [r[0] for r in rows],
                                          "tags": [[["C", "V"].index(t) for t in r[1]] for r in rows]},
                                         features=features)
    from_dataset = ns.corpus(encoded.select(range(40)), encoded.select(range(40, 50)), encoded.select(range(50, 60)),
                             labels="tags", name="vowels")
    other = ns.run(task=from_dataset, **options)
    assert other.results["per_seed"][0]["ablation"] == run.results["per_seed"][0]["ablation"]
    # the corpus object itself as the task: a DataFrame with a split column, a DatasetDict of splits
    split = frame.assign(split=["train"] * 40 + ["dev"] * 10 + ["test"] * 10)
    direct = ns.run(task=split, labels="tags", **options)
    assert direct.results["per_seed"][0]["ablation"] == run.results["per_seed"][0]["ablation"]
    splits = datasets.DatasetDict(train=encoded.select(range(40)), validation=encoded.select(range(40, 50)),
                                  test=encoded.select(range(50, 60)))
    assert ns.run(task=splits, labels="tags", **options).results["per_seed"][0]["ablation"] == \
        run.results["per_seed"][0]["ablation"]
    assert ns.run(task=split, labels="tags", **options).path == direct.path  # the cell again: the finished run
    with pytest.raises(ValidationError, match="a corpus object needs labels="):
        ns.run(task=split, **options)
    with pytest.raises(ValidationError, match="split column holds dev, test, train, valid"):
        ns.run(task=split.assign(split=["valid"] + ["train"] * 39 + ["dev"] * 10 + ["test"] * 10), labels="tags",
               **options)
    with pytest.raises(ValidationError, match="none is test"):
        ns.run(task={"train": frame, "dev": frame}, labels="tags", **options)
    with pytest.raises(ValidationError, match="the dev data has no column 'tags'"):
        ns.corpus(frame, frame[["tokens"]], frame, labels="tags")
