"""The Python API (neuroscope.run / open / Run / Neuron / protocol), heat maps and the
`neuroscope neurons` / `neuroscope show` commands, on the real MiniLM model and PTB."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import neuroscope as ns
from neuroscope.api import extreme_rows, run_request
from neuroscope.cli import main, run_parser
from neuroscope.settings import request_from_values
from neuroscope.errors import RunDirectoryError, StoreError, ValidationError
from neuroscope.heatmap import heat_map

sys.path.insert(0, str(Path(__file__).parent))
from test_hardening import ELMO, column_task, toy_corpus  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, data_dir, minilm_dir, cache_dir):
    out = tmp_path_factory.mktemp("api") / "run"
    return ns.run(model="minilm", task="pos", data_dir=data_dir, max_sentences=(300, 100, 100), seeds=1,
                  l1=1e-4, l2=1e-4, out=out, cache_dir=cache_dir, quiet=True)


#: run in the notebook's kernel after the page's cells: what they left behind
NOTEBOOK_CHECKS = """
import json
assert isinstance(run, ns.Run) and (run.path / "report.html").is_file()
assert len(words) == 10 and all(w.word in w.words for w in words)
assert heat.values.shape == (3, 6)
assert len(board["quantiles"]) == 10 and len(board["correlated"]) == 5
assert result["ablation"]["test"]["top"] > result["ablation"]["test"]["bottom"]
assert search.best_params_["l1"] in (1e-5, 1e-4)
assert task.startswith("parquet:") and "corpora" in task
print(json.dumps({"run": str(run.path), "stamp": (run.path / "results.json").stat().st_mtime_ns}))
"""


def test_docs_python_md_runs_as_a_notebook_twice(data_dir, minilm_dir, cache_dir, tmp_path):
    """docs/python.md as a real Jupyter notebook (a code cell per ``python`` block, run by
    nbclient in an IPython kernel), executed twice in a row in one kernel, as a user runs
    all cells again: no cell raises either time, and the second time the first cell
    returns the finished run without computing anything (results.json untouched)."""
    import os

    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    text = (REPO / "docs" / "python.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8
    cells = [nbformat.v4.new_code_cell(b.replace('"../shared/data"', repr(str(data_dir))).rstrip()) for b in blocks]
    kernel = KernelManager(kernel_name="python3")
    kernel.start_kernel(env={**os.environ, "NEUROSCOPE_CACHE": str(cache_dir), "MPLBACKEND": "agg"}, cwd=str(tmp_path))
    seen = []
    try:
        for _ in range(2):
            nb = nbformat.v4.new_notebook(cells=[*cells, nbformat.v4.new_code_cell(NOTEBOOK_CHECKS)])
            NotebookClient(nb, km=kernel, timeout=600, allow_errors=True).execute()
            errors = [(i, o.get("ename"), o.get("evalue", "")[:300]) for i, c in enumerate(nb.cells)
                      for o in c.outputs if o.output_type == "error"]
            assert not errors, errors
            assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.outputs), "no cell showed a figure"
            printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
            seen.append(json.loads(printed.strip().splitlines()[-1]))
    finally:
        kernel.shutdown_kernel(now=True)
    assert seen[1] == seen[0]  # the same run, its results.json not rewritten


def test_run_again_returns_the_finished_run_continues_an_unfinished_one_refuses_other_settings(tmp_path):
    column_task(tmp_path, toy_corpus(40))
    options = dict(model=f"elmo:{ELMO}", task="toy", data_dir=str(tmp_path), seeds=2, l1=0, l2=0, epochs=2,
                   no_control=True, quiet=True, cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"))
    first = ns.run(**options)
    results = first.path / "results.json"
    stamp, before = results.stat().st_mtime_ns, results.read_bytes()
    again = ns.run(**options)
    assert again.path == first.path and results.stat().st_mtime_ns == stamp
    (first.path / "steps" / "seed-1-weight-mass.json").unlink()  # an interrupted run: continued, not refused
    results.unlink()
    assert ns.run(**options).path == first.path and results.read_bytes() == before
    with pytest.raises(RunDirectoryError, match=r"other settings \(seeds: \[0, 1\] in the run, \[0\] now\)"):
        ns.run(**{**options, "seeds": 1})
    with pytest.raises(RunDirectoryError, match="already holds a run; add --resume"):
        ns.run(**options, resume=False)
    (tmp_path / "train.txt").write_text(toy_corpus(41))  # the corpus edited since
    with pytest.raises(RunDirectoryError, match="the data changed since this run"):
        ns.run(**options)


def test_the_api_takes_the_command_line_options_and_nothing_else(tmp_path):
    cli = request_from_values(vars(run_parser().parse_args(["--model", "minilm,elmo", "--max-sentences", "5",
                                                            "--epochs", "auto", "--deltas", "1,2", "--no-control"])))
    api = run_request(model=["minilm", "elmo"], max_sentences=5, epochs="auto", deltas=[1, 2], no_control=True)
    assert api == cli and api.cell["control"] is False and api.cell["max_sentences"] == (5, 5, 5)
    assert run_request(model="minilm,elmo", deltas="1,2", max_sentences="5", epochs="auto", no_control=True) == cli
    with pytest.raises(ValidationError, match="unknown option 'max_sentence'.*max_sentences"):
        ns.run(max_sentence=5)
    with pytest.raises(ValidationError, match="aggregation='sum'"):
        ns.run(aggregation="sum")
    with pytest.raises(ValidationError, match="epochs='many'"):
        ns.run(epochs="many")
    with pytest.raises(ValidationError, match="--fraction"):  # RunConfig's own checks, before anything loads
        ns.run(fraction=2.0, data_dir=tmp_path / "nowhere")


def test_a_run_opens_and_shows_its_neurons(small_run):
    run = ns.open(small_run.path)
    assert run.results == small_run.results and run.labels == tuple(run.results["labels"])
    tops = run.top_neurons(label="DT", k=5)
    assert len(tops) == 5 and all(t.label == "DT" and t.score > 0 for t in tops)
    assert [t.score for t in tops] == sorted((t.score for t in tops), reverse=True)
    order = run.ranking()
    assert [t.neuron for t in run.top_neurons(k=3)] == order[:3].tolist()
    assert all(order[t.rank - 1] == t.neuron for t in tops)
    # the top DT neurons fire on determiners: most of their extreme tokens are DT
    precision = np.mean([np.mean([w.label == "DT" for w in run.neuron(t).top_words(20)]) for t in tops])
    assert precision > 0.3
    # by="precision": of the 50 largest contributions, those whose top 20 words are most often DT
    pool = {t.neuron for t in run.top_neurons(label="DT", k=50)}
    clear = run.top_neurons(label="DT", k=5, by="precision")
    assert {t.neuron for t in clear} <= pool and [t.score for t in clear] == sorted((t.score for t in clear),
                                                                                      reverse=True)
    best = run.neuron(clear[0], label="DT")
    assert clear[0].score == pytest.approx(np.mean([w.label == "DT" for w in best.top_words(20)]))
    assert clear[0].score > 0.5 and np.mean([t.score for t in clear]) >= precision
    neuron = run.neuron(tops[0])
    column = neuron.activations("train")
    assert column.shape == (run.results["data"]["train"]["tokens"],)
    words = neuron.top_words(5)
    side = -1 if neuron.weights["DT"] < 0 else 1
    assert [w.value for w in words] == sorted((w.value for w in words), key=lambda v: -side * v)
    assert words[0].value == pytest.approx(side * np.max(side * column))
    stats = neuron.label_stats()
    assert sum(s["count"] for s in stats.values()) == len(column)
    assert stats["DT"]["mean"] == pytest.approx(float(column[np.array(run.task().train.labels()) == "DT"].mean()),
                                                rel=1e-5)
    assert neuron.ranks == {"weight-mass": tops[0].rank}
    assert neuron.histogram().axes[0].get_xlabel() == "activation"

    same = run.neuron(tops[0].layer, tops[0].unit)
    assert same.neuron == neuron.neuron and run.neuron(run.index.layer_names[tops[0].layer], tops[0].unit).neuron == neuron.neuron


def test_show_colours_each_word_by_the_value_the_probe_saw(small_run):
    run = small_run
    sentence = run.task().train.sentences[0]
    ids = [int(j) for j in run.ranking()[:4]]
    heat = run.show(list(sentence.words), ids)
    stored = run.activations("train").rows(slice(0, len(sentence)), np.array(ids))  # float16 in the store
    np.testing.assert_allclose(heat.values, stored.T, atol=2e-2, rtol=1e-2)
    assert heat.words == sentence.words and heat.scale == pytest.approx(np.abs(heat.values).max())
    assert "<table" in heat._repr_html_() and "full colour at" in heat.to_html()
    # sub-tokens: the run aggregates with the last sub-token, so each word's last piece is the word's value
    words = ["The", "unbelievably", "old", "man", "the", "boats", "."]
    pieces = run.show(words, ids, subwords=True)
    whole = run.show(words, ids)
    assert len(pieces.words) > len(words) and "##bly" in pieces.words
    last = [k for k in range(len(pieces.words)) if k + 1 == len(pieces.words) or not pieces.words[k + 1].startswith("##")]
    np.testing.assert_allclose(pieces.values[:, last], whole.values, atol=1e-4)


def test_heat_map_renderings(tmp_path):
    heat = heat_map(["a", "<b>"], ["1:2", "3:4"], np.array([[1.0, -2.0], [0.0, 0.5]]), "t")
    html = heat.to_html()
    assert "&lt;b&gt;" in html and "rgb(0, 0, 255)" in html  # escaped; -2 is full blue
    assert heat.save(tmp_path / "m.svg").read_text().startswith("<svg")
    assert heat.save(tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert "<table" in heat.save(tmp_path / "m.html").read_text()
    with pytest.raises(ValidationError, match=".pdf"):
        heat.save(tmp_path / "m.pdf")
    with pytest.raises(ValidationError, match="do not fit"):
        heat_map(["a"], ["1:2"], np.zeros((2, 1)))


def test_bad_requests_get_one_clear_error(small_run, tmp_path, capsys):
    run = small_run
    with pytest.raises(ValidationError, match="unknown label 'dt' \\(did you mean 'DT'\\?\\)"):
        run.top_neurons(label="dt")
    with pytest.raises(ValidationError, match="layer 7 is out of range: the model has layers 0 .. 6"):
        run.neuron(7, 0)
    with pytest.raises(ValidationError, match="unit 384 is out of range"):
        run.neuron(1, 384)
    with pytest.raises(ValidationError, match="LAYER:UNIT"):
        run.show("a b", ["five"])
    assert main(["neurons", str(run.path), "--label", "XX"]) == 2
    assert "unknown label 'XX'" in capsys.readouterr().err
    assert main(["show", str(run.path), "--sentence", "a b", "--neurons", "9:1"]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err
    # a run whose activations were removed from the store
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    manifest = (copy / "manifest.json").read_text().replace(run.manifest["activations"]["train"]["path"],
                                                            str(tmp_path / "gone"))
    (copy / "manifest.json").write_text(manifest)
    with pytest.raises(StoreError, match="no longer in the store"):
        ns.open(copy).neuron(1, 1).top_words()
    assert main(["neurons", str(copy), "--label", "DT"]) == 2
    assert "no longer in the store" in capsys.readouterr().err
    assert main(["neurons", str(tmp_path / "nothing")]) == 2


def test_the_cli_lists_neurons_and_draws_heat_maps(small_run, tmp_path, capsys):
    assert main(["neurons", str(small_run.path), "--label", "DT", "-k", "3", "--words", "2"]) == 0
    out = capsys.readouterr().out
    assert "top neurons of DT" in out and out.count("(DT)") >= 1
    assert main(["neurons", str(small_run.path), "--label", "DT", "-k", "2", "--by", "precision"]) == 0
    assert "top 20 of the label" in capsys.readouterr().out
    assert main(["neurons", str(small_run.path), "--label", "DT", "-k", "2", "--words", "0", "--dashboard"]) == 0
    out = capsys.readouterr().out
    assert out.count("most correlated: ") == 2 and out.count(" % [") >= 2 * 9 and "promoted tokens" not in out
    # a dashboard's correlated neurons: the most correlated of its whole layer, as numpy computes them
    top = small_run.top_neurons("DT", 1)[0]
    board = small_run.dashboards([top])[0]
    hidden = small_run.index.hidden_size
    layer = np.concatenate([b for _, b in small_run.activations("train").chunks(
        np.arange(top.layer * hidden, (top.layer + 1) * hidden))]).astype(np.float64)
    r = np.corrcoef(layer.T)[top.unit]
    r[top.unit] = -np.inf
    expected = np.argsort(-r, kind="stable")[:5] + top.layer * hidden
    assert [c["neuron"] for c in board["correlated"]] == expected.tolist()
    np.testing.assert_allclose([c["r"] for c in board["correlated"]], r[expected - top.layer * hidden], atol=1e-9)
    assert board["output"] is None and board["name"] == f"{top.layer}:{top.unit}"  # the hidden site: no output tokens
    target = tmp_path / "map.svg"
    assert main(["show", str(small_run.path), "--sentence", "The old man the boats .", "--label", "DT", "-k", "2",
                 "--out", str(target)]) == 0
    assert target.read_text().count("<rect") == 2 * 6
    capsys.readouterr()
    assert main(["show", str(small_run.path), "--sentence", "The old man the boats .", "--label", "DT", "-k", "2"]) == 0
    piped = capsys.readouterr().out.splitlines()[1:]  # after the title: the numbers the colours stand for
    assert piped[0].split() == ["The", "old", "man", "the", "boats", "."] and len(piped) == 3
    assert all(len(line.split()) == 7 and float(line.split()[-1]) == float(line.split()[-1]) for line in piped[1:])
    heat = small_run.show("The old man the boats .", small_run.top_neurons("DT", 2))
    assert repr(heat).startswith("HeatMap(2 neurons x 6 words: 'The old man the boats .'") and "\n" not in repr(heat)


def test_extreme_rows_match_a_stable_sort_over_any_chunking():
    class Chunked:
        def __init__(self, a, step):
            self.a, self.n_tokens, self.shape, self.step = a, len(a), a.shape, step

        def chunks(self):
            for start in range(0, len(self.a), self.step):
                yield start, self.a[start:start + self.step]

    a = np.random.default_rng(0).integers(0, 5, (103, 7)).astype(np.float32)  # many ties
    for step in (1, 3, 10, 200):
        top, bottom = extreme_rows(Chunked(a, step), 8)
        assert (top == np.argsort(-a, axis=0, kind="stable")[:8].T).all()
        assert (bottom == np.argsort(a, axis=0, kind="stable")[:8].T).all()


def test_protocol_on_user_arrays_finds_the_planted_neurons():
    rng = np.random.default_rng(0)
    n, layers, hidden = 6000, 3, 8
    y = rng.integers(0, 3, size=n)
    X = rng.normal(size=(n, layers * hidden)).astype(np.float32)
    planted = [3, 12, 21]
    for c, j in enumerate(planted):
        X[:, j] += 3.0 * (y == c)
    labels = np.array(["A", "B", "C"])[y]
    control = np.array(["x", "y"])[rng.integers(0, 2, size=n)]
    parts = [slice(0, 4000), slice(4000, 5000), slice(5000, 6000)]
    result = ns.protocol(*[a for s in parts for a in (X[s], labels[s])], l1=1e-4, l2=1e-4, epochs=5, lr=1e-2,
                         layers=["emb", "1", "2"], control=tuple(control[s] for s in parts))
    assert set(result["ranking"]["order"][:3]) == set(planted)
    test = result["ablation"]["test"]
    assert test["all"] > 95 and test["top"] > test["bottom"] + 20
    assert result["minimal"]["sets"][0]["n_neurons"] <= 6
    assert sum(result["layer_distribution"]) == result["minimal"]["sets"][0]["n_neurons"]
    assert result["selectivity"]["test"]["selectivity"]["all"] > 30  # control labels are noise
    with pytest.raises(ValidationError, match="X_dev has 5 columns"):
        ns.protocol(X[:10], labels[:10], X[:10, :5], labels[:10], X[:10], labels[:10], l1=0, l2=0)


@pytest.mark.parametrize("call, message", [
    (lambda run: run.neuron(1.7, 2.9), "layer 1.7: expected an integer index"),
    (lambda run: run.neuron(1, 2.9), "unit 2.9: expected an integer index"),
    (lambda run: run.neuron(True, 3), "layer True: expected an integer index"),
    (lambda run: run.column(10**6), "neuron 1000000 is out of range: the run has neurons 0 .. 2687"),
    (lambda run: run.column(-1), "neuron -1 is out of range"),
    (lambda run: run.token("train", 10**6), "row 1000000 is out of range: train has rows 0 .."),
])
def test_the_explorer_refuses_indices_that_name_no_neuron_or_row(small_run, call, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        call(ns.open(small_run.path))


def test_figures_leave_the_users_matplotlib_backend_alone(small_run):
    """Neuron.histogram(), HeatMap.figure() and the report draw without pyplot: the
    backend a notebook (or user) chose stays, no figure joins pyplot's state, and a figure
    returned to a notebook displays (PNG)."""
    import matplotlib

    from neuroscope.report import render_report

    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        top = small_run.top_neurons(k=1)[0]
        figure = small_run.neuron(top).histogram()
        heat = small_run.show("The dog runs .", [top.neuron]).figure()
        render_report(small_run.results, small_run.path)
        assert matplotlib.get_backend() == "svg"
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
        for fig in (figure, heat):
            assert fig._repr_png_().startswith(b"\x89PNG")
    finally:
        matplotlib.use(before)


def test_records_convert_to_rows_and_data_frames(small_run):
    """`run.top_neurons(...)` and `neuron.top_words(...)` are lists of records that become
    dicts or a DataFrame with one column per field (not one column of "4:63" strings)."""
    top = small_run.top_neurons("NN", 5)
    frame = top.to_pandas()
    assert list(frame["id"]) == [str(t) for t in top] and len(frame) == 5
    assert {"layer", "unit", "rank", "weight", "label", "score", "weight_NN"} <= set(frame.columns)
    assert frame["layer"].dtype.kind == "i" and frame.loc[0, "weight"] == top[0].weight
    words = small_run.neuron(top[0]).top_words(4)
    rows = words.to_dicts()
    assert [r["word"] for r in rows] == [w.word for w in words] and "[" in rows[0]["context"]
    assert list(words.to_pandas().columns) == list(rows[0])


def test_a_runs_probes_export_as_safetensors_and_load_with_identical_predictions(small_run, tmp_path, capsys):
    from safetensors.numpy import load_file

    from neuroscope.probe import ElasticNetProbe

    out = tmp_path / "probes"
    assert main(["export", str(small_run.path), str(out), "--to", "safetensors"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "minilm" and config["layers"] == small_run.results["layers"]
    tensors = load_file(str(out / config["files"]["seed-0"]))  # any safetensors reader takes it
    coef, intercept = small_run.probe_weights(0)
    assert np.array_equal(tensors["coef"], coef.astype(np.float32)) and tensors["coef"].shape == (len(small_run.labels),
                                                                                                small_run.index.n_neurons)
    probe = ElasticNetProbe.load(out / "probe-seed-0.safetensors")
    assert list(probe.classes_) == list(small_run.labels) and probe.metadata_["site"] == "hidden"
    test = small_run.activations("test")
    gold = small_run.task().test.labels()
    assert probe.accuracy(test, gold) == pytest.approx(small_run.results["per_seed"][0]["ablation"]["test"]["all"])
    again = ElasticNetProbe(l1=probe.l1, l2=probe.l2).set_fitted(small_run.labels, coef, intercept)
    assert np.array_equal(probe.predict(test), again.predict(test))
    assert main(["export", str(small_run.path), str(out), "--to", "safetensors"]) == 2
    assert "must be new or empty" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValidationError, match="junk.safetensors: not a readable safetensors file"):
        ElasticNetProbe.load(tmp_path / "junk.safetensors")


def test_a_loaded_model_object_runs_as_its_checkpoint_and_a_changed_one_gets_a_new_store_entry(
        small_run, data_dir, minilm_dir, cache_dir, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from neuroscope.errors import ModelLoadError
    from neuroscope.loaded import loaded_model

    model, tokenizer = AutoModel.from_pretrained(minilm_dir), AutoTokenizer.from_pretrained(minilm_dir)
    options = dict(task="pos", data_dir=data_dir, max_sentences=(60, 20, 100), seeds=1, l1=1e-4, l2=1e-4,
                   scan_step=0.25, no_control=True, runs_dir=tmp_path / "runs", cache_dir=cache_dir, quiet=True)
    run = ns.run(model=model, tokenizer=tokenizer, **options)
    assert run.config["model"].startswith("hf:loaded:") and run.results["summary"]["ablation"]["test"]["all"]["mean"] > 60
    # the same words through the object and through its checkpoint's files: the same values
    assert np.array_equal(run.activations("test").array, small_run.activations("test").array)
    keys = {entry["key"] for entry in run.manifest["activations"].values()}
    assert ns.run(model=model, tokenizer=tokenizer, **options).path == run.path  # the notebook cell again
    with torch.no_grad():
        model.encoder.layer[5].output.dense.bias[0] += 0.5
    changed = ns.run(model=model, tokenizer=tokenizer, **options)
    assert changed.path != run.path and changed.config["model"] != run.config["model"]
    assert not keys & {entry["key"] for entry in changed.manifest["activations"].values()}
    assert not np.array_equal(changed.activations("test").array, run.activations("test").array)
    with pytest.raises(ModelLoadError, match="needs its tokenizer"):
        ns.run(model=model, **options)
    with pytest.raises(ValidationError, match="lives in this Python process, and --executor ray"):
        ns.run(model=model, tokenizer=tokenizer, executor="ray", **options)
    with pytest.raises(ModelLoadError, match="not in this one or no longer alive"):
        loaded_model("loaded:0123456789abcdef")


def test_a_runs_activations_export_as_parquet_that_other_readers_and_the_store_read_back(small_run, tmp_path, capsys):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from neuroscope.store import ActivationSet

    out = tmp_path / "acts"
    assert main(["export", str(small_run.path), str(out), "--to", "parquet"]) == 0
    test, corpus = small_run.activations("test"), small_run.task().test
    table = datasets.load_dataset("parquet", data_files=str(out / "test.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf")).with_format("numpy")
    assert table.column_names == ["split", "sentence", "word", "token", "label"] + [
        f"layer_{name}" for name in small_run.index.layer_names]
    assert list(table["token"]) == [w for s in corpus.words() for w in s] and list(table["label"]) == corpus.labels()
    hidden = small_run.index.hidden_size
    values = test.raw_rows(slice(0, test.shape[0]))
    for layer, name in enumerate(small_run.index.layer_names):
        column = np.asarray(table[f"layer_{name}"])  # datasets' numpy format widens float16 to float32, exactly
        assert table.features[f"layer_{name}"].feature.dtype == "float16" and column.shape == (test.shape[0], hidden)
        assert np.array_equal(column, values[:, layer * hidden:(layer + 1) * hidden].astype(np.float32))
    # read back as the very store entries, every checksum checked
    assert main(["cache", "import", *(str(out / f"{s}.parquet") for s in ("train", "dev", "test")),
                 "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    for split in ("train", "dev", "test"):
        key = small_run.manifest["activations"][split]["key"]
        back = ActivationSet(tmp_path / "elsewhere" / "activations" / key)
        original = small_run.activations(split)
        assert back.manifest == original.manifest and np.array_equal(back.offsets, original.offsets)
        assert np.array_equal(back.raw_rows(slice(0, back.shape[0])).view(np.uint16),
                              original.raw_rows(slice(0, original.shape[0])).view(np.uint16))
    # one value changed: refused, nothing stored
    arrow = pq.read_table(out / "test.parquet")
    column = np.stack(arrow.column("layer_3").to_numpy(zero_copy_only=False)).astype(np.float16)
    column[7, 5] += np.float16(0.25)
    arrow = arrow.set_column(arrow.column_names.index("layer_3"), "layer_3",
                             pa.FixedSizeListArray.from_arrays(pa.array(column.reshape(-1), pa.float16()), hidden))
    pq.write_table(arrow, tmp_path / "changed.parquet")
    capsys.readouterr()
    assert main(["cache", "import", str(tmp_path / "changed.parquet"), "--cache-dir", str(tmp_path / "third")]) == 2
    assert "changed.parquet: its values are not those its checksums were taken of" in capsys.readouterr().err
    assert not list((tmp_path / "third" / "activations").glob("[0-9a-f]*[0-9a-f]"))
    pq.write_table(pa.table({"tokens": ["a"]}), tmp_path / "foreign.parquet")
    assert main(["cache", "import", str(tmp_path / "foreign.parquet")]) == 2
    assert "no neuroscope metadata" in capsys.readouterr().err


#: Neuronpedia's record schemas, written from the dataclasses of its neuronpedia_utils.db_models
#: (SourceRelease, Model, SourceSet, Source, Feature, Activation; as SAEDashboard's converter
#: inlines them) and the Explanation columns its export-data.py writes: field -> allowed JSON types
S, I, F, B, L, N = str, int, (int, float), bool, list, type(None)
NEURONPEDIA_SCHEMA = {
    "release": {"name": S, "description": S, "creatorName": S, "creatorId": S, "visibility": S, "isNewUi": B,
                "featured": B, "descriptionShort": (S, N), "urls": L, "creatorEmail": (S, N),
                "creatorNameShort": (S, N), "defaultSourceSetName": (S, N), "defaultSourceId": (S, N),
                "defaultUmapSourceIds": L, "createdAt": S},
    "model": {"id": S, "instruct": B, "creatorId": S, "displayNameShort": S, "displayName": S, "tlensId": (S, N),
              "dimension": (I, N), "visibility": S, "defaultSourceSetName": (S, N), "defaultSourceId": (S, N),
              "inferenceEnabled": B, "layers": I, "neuronsPerLayer": I, "createdAt": S, "owner": S, "updatedAt": S,
              "website": (S, N)},
    "sourceset": {"modelId": S, "name": S, "creatorId": S, "hasDashboards": B, "visibility": S, "description": S,
                  "type": S, "creatorName": S, "urls": L, "creatorEmail": (S, N), "releaseName": (S, N),
                  "defaultOfModelId": (S, N), "defaultRange": I, "defaultShowBreaks": B, "showDfa": B,
                  "showCorrelated": B, "showHeadAttribution": B, "showUmap": B, "createdAt": S},
    "source": {"id": S, "modelId": S, "setName": S, "creatorId": S, "hasDashboards": B, "inferenceEnabled": B,
               "inferenceHosts": L, "saelensConfig": (S, N), "saelensRelease": (S, N), "saelensSaeId": (S, N),
               "hfRepoId": (S, N), "hfFolderId": (S, N), "visibility": S, "defaultOfModelId": (S, N), "hasUmap": B,
               "hasUmapLogSparsity": B, "hasUmapClusters": B, "num_prompts": (I, N), "num_tokens_in_prompt": (I, N),
               "dataset": (S, N), "notes": (S, N), "createdAt": S},
    "features": {"modelId": S, "layer": S, "index": S, "creatorId": (S, N), "createdAt": S, "maxActApprox": (F, N),
                 "hasVector": B, "vector": L, "vectorLabel": (S, N), "vectorDefaultSteerStrength": (F, N),
                 "hookName": (S, N), **{k: L for k in (
                     "topkCosSimIndices topkCosSimValues neuron_alignment_indices neuron_alignment_values "
                     "neuron_alignment_l1 correlated_neurons_indices correlated_neurons_pearson correlated_neurons_l1 "
                     "correlated_features_indices correlated_features_pearson correlated_features_l1 neg_str "
                     "neg_values pos_str pos_values freq_hist_data_bar_heights freq_hist_data_bar_values "
                     "logits_hist_data_bar_heights logits_hist_data_bar_values decoder_weights_dist").split()},
                 "frac_nonzero": F, "sourceSetName": (S, N)},
    "activations": {"id": S, "tokens": L, "index": S, "layer": S, "modelId": S, "maxValue": F,
                    "maxValueTokenIndex": I, "minValue": F, "values": L, "creatorId": S, "dataSource": (S, N),
                    "dataIndex": (S, N), "dfaValues": L, "dfaTargetIndex": (I, N), "dfaMaxValue": (F, N),
                    "createdAt": S, "lossValues": L, "logitContributions": (S, N), "binMin": (F, N),
                    "binMax": (F, N), "binContains": (F, N), "qualifyingTokenIndex": (I, N), "zIndices": (L, N),
                    "zValues": (L, N)},
    "explanations": {"id": S, "modelId": S, "layer": S, "index": S, "authorId": S, "description": S,
                     "embedding": (L, N), "typeName": S, "explanationModelName": S, "umap_x": (F, N),
                     "umap_y": (F, N), "umap_cluster": (I, N), "umap_log_feature_sparsity": (F, N)},
}


def neuronpedia_records(model) -> dict:
    """Every record of a Neuronpedia export's model folder by kind, each checked against
    :data:`NEURONPEDIA_SCHEMA` (its keys exactly, and each value's type)."""
    import gzip

    by_kind: dict = {}
    for folder in model.iterdir():
        for kind in ("release", "model", "sourceset", "source"):
            by_kind.setdefault(kind, []).extend(json.loads(line) for line in (folder / f"{kind}.jsonl").open())
        for kind in ("features", "activations", "explanations"):
            for path in sorted((folder / kind).glob("batch-*.jsonl.gz")) if (folder / kind).is_dir() else []:
                records = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
                assert records, path
                by_kind.setdefault(kind, []).extend(records)
    for kind, records in by_kind.items():
        schema = NEURONPEDIA_SCHEMA[kind]
        for record in records:
            assert set(record) == set(schema), (kind, set(record) ^ set(schema))
            for key, allowed in schema.items():
                assert isinstance(record[key], allowed) and not (allowed is I and isinstance(record[key], bool)), \
                    (kind, key, record[key])
    return by_kind


def test_a_run_exports_in_neuronpedias_layout_and_every_record_validates(small_run, tmp_path):
    out = tmp_path / "np"
    small_run.export("neuronpedia", out, features="top")
    model = out / "minilm"
    sources = sorted(p.name for p in model.iterdir())
    layers = small_run.index.layer_names
    assert sources == sorted([f"{k}-neuroscope-hidden" for k in range(len(layers))]
                             + [f"{k}-neuroscope-probe" for k in range(len(layers))])
    top = set(small_run.ranking()[:round(0.2 * small_run.index.n_neurons)].tolist())
    seen, by_kind = set(), neuronpedia_records(model)
    hidden = [f for f in by_kind["features"] if f["sourceSetName"] == "neuroscope-hidden"]
    for f in hidden:
        layer = int(f["layer"].split("-")[0])
        seen.add(layer * small_run.index.hidden_size + int(f["index"]))
        assert 0 <= f["frac_nonzero"] <= 1 and sum(f["freq_hist_data_bar_heights"]) == small_run.results["data"][
            "train"]["tokens"]
    assert seen == top  # one feature per neuron of the top set
    X = small_run.activations("train")
    acts = [a for a in by_kind["activations"] if a["layer"].endswith("-hidden")]
    assert len(acts) == len(hidden) * 40  # 20 top words and 2 at each of 10 quantile ranges
    for a in acts[:200]:  # each record's values are the store's, over its whole sentence
        layer = int(a["layer"].split("-")[0])
        column = layer * small_run.index.hidden_size + int(a["index"])
        s = int(a["dataIndex"])
        values = X.rows(slice(int(X.offsets[s]), int(X.offsets[s + 1])), np.array([column]))[:, 0]
        assert np.allclose(a["values"], values, atol=1e-4) and len(a["tokens"]) == len(values)
        if a["binMin"] is not None:
            assert a["binMin"] - 1e-3 <= values[a["qualifyingTokenIndex"]] <= a["binMax"] + 1e-3
    coef, _ = small_run.probe_weights(0)
    probe = {(f["layer"], f["vectorLabel"]): f["vector"] for f in by_kind["features"]
             if f["sourceSetName"] == "neuroscope-probe"}
    assert len(probe) == len(layers) * len(small_run.labels)
    hidden_size = small_run.index.hidden_size
    assert np.allclose(probe[("2-neuroscope-probe", "NN")],
                       coef[small_run.label_id("NN"), 2 * hidden_size:3 * hidden_size], atol=1e-6)
