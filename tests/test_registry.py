"""The plugin registry: built-ins, entry points, filtering, failures, collisions, names."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import neuroscope
from neuroscope.errors import RegistryError
from neuroscope.registry import Registry

FIXTURE = Path(__file__).parent / "plugin_fixture"


def install_plugin(site: Path, module_source: Path, name: str = "neuroscope-charmodel",
                   entry: str = "charmodel = neuroscope_charmodel") -> Path:
    """Install a plugin the way pip leaves it: the module plus a dist-info with an entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / module_source.name).write_text(module_source.read_text())
    dist = site / f"{name.replace('-', '_')}-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[neuroscope]\n{entry}\n")
    return site


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = install_plugin(tmp_path / "site", FIXTURE / "neuroscope_charmodel.py")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_load_through_registry_toml():
    registry = Registry()
    names = {p.name for p in registry.plugins}
    assert {"transformers_models", "elmo", "telmo", "ptb", "conll2000", "conllu", "pmb", "ccgbank", "columns",
            "probes"} <= names
    assert all(p.origin == "builtin" and p.version == neuroscope.__version__ for p in registry.plugins)
    assert registry.get("probes", "elastic-net").plugin == "probes"
    assert registry.get("rankers", "weight-mass").plugin == "probes"
    assert registry.resolve_model("minilm").options["checkpoint"].startswith("package:")
    assert registry.resolve_model("hf:/some/dir").options == {"location": "/some/dir"}
    assert registry.resolve_model("elmo:/models/elmo").entry.name == "elmo"
    assert registry.resolve_model("telmo").options["archive"].endswith(".tar.gz")
    assert registry.resolve_task("pos").entry.name == "ptb"


def test_unknown_names_suggest_close_matches():
    registry = Registry()
    with pytest.raises(RegistryError, match=r"unknown model 'minlm'; did you mean 'minilm'"):
        registry.resolve_model("minlm")
    with pytest.raises(RegistryError, match=r"unknown task 'chunks'; did you mean 'chunk'"):
        registry.resolve_task("chunks")


def test_entry_point_plugin_loads_with_version(plugin_site):
    registry = Registry()
    info = {p.name: p for p in registry.plugins}["charmodel"]
    assert info.origin == "entry point"
    assert (info.distribution, info.version) == ("neuroscope-charmodel", "0.3")
    assert info.hooks == ("register_models", "register_tasks")
    assert info.provides == {"models": ("charstats",), "tasks": ("vowels",)}
    assert registry.resolve_model("cs").entry.name == "charstats"


def test_load_plugins_env_limits_entry_points(plugin_site):
    assert "charmodel" not in {p.name for p in Registry(env={"NEUROSCOPE_LOAD_PLUGINS": ""}).plugins}
    assert "charmodel" in {p.name for p in Registry(env={"NEUROSCOPE_LOAD_PLUGINS": "charmodel"}).plugins}
    assert "charmodel" in {p.name for p in Registry(env={"NEUROSCOPE_LOAD_PLUGINS": "neuroscope-charmodel"}).plugins}


def test_deferred_references_load_on_first_use_and_name_the_plugin():
    """A plugin may register ``"module:attribute"`` instead of the object: the module is
    imported when the entry is first used (the built-in models and probes register so,
    which keeps `neuroscope plugins` free of torch); a reference that does not load is an
    error naming the plugin and the reference, and a string that is no reference
    fails its plugin at load."""
    import types

    from neuroscope.hookspecs import hookimpl

    good = types.SimpleNamespace(register_rankers=hookimpl(lambda register: (
        register("later", "neuroscope.rankers.iou:iou"), register("missing", "neuroscope_nowhere.mod:thing"))))
    bad = types.SimpleNamespace(register_rankers=hookimpl(lambda register: register("odd", "not a reference")))
    registry = Registry(extra_plugins={"lazy": good, "odd": bad})
    from neuroscope.rankers.iou import iou

    assert registry.get("rankers", "later").obj is iou
    with pytest.raises(RegistryError, match=r"plugin 'lazy' registered ranker 'missing' as "
                                            r"'neuroscope_nowhere.mod:thing', which cannot be loaded: "
                                            r"ModuleNotFoundError"):
        registry.get("rankers", "missing").obj
    assert [f.name for f in registry.failures] == ["odd"]
    assert "must read 'package.module:attribute'" in registry.failures[0].error
    assert registry.get("probes", "elastic-net").target == "neuroscope.plugin:ElasticNetProbe"


def test_broken_plugin_is_reported_and_others_work(tmp_path, monkeypatch):
    broken = tmp_path / "src" / "neuroscope_broken.py"
    broken.parent.mkdir()
    broken.write_text("import neuroscope\nraise ImportError('needs libfoo')\n")
    site = install_plugin(tmp_path / "site", broken, name="neuroscope-broken", entry="broken = neuroscope_broken")
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    assert [(f.name, f.error) for f in registry.failures] == [("broken", "ImportError: needs libfoo")]
    assert registry.resolve_task("pos").entry.name == "ptb"


def test_name_collision_names_both_plugins(tmp_path, monkeypatch):
    clash = tmp_path / "src" / "neuroscope_clash.py"
    clash.parent.mkdir()
    clash.write_text("import neuroscope\n\n@neuroscope.hookimpl\ndef register_tasks(register):\n"
                     "    register('ptb', lambda data_dir: None)\n")
    site = install_plugin(tmp_path / "site", clash, name="neuroscope-clash", entry="clash = neuroscope_clash")
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    message = r"task name 'ptb' is registered by plugins 'ptb' and 'clash', so it cannot be used"
    with pytest.raises(RegistryError, match=message):
        registry.resolve_task("ptb")
    with pytest.raises(RegistryError, match=message):  # the alias pos uses the reader ptb
        registry.resolve_task("pos")
    assert registry.resolve_task("chunk").entry.name == "conll2000"  # other names keep working
    assert any("'ptb'" in p and "'clash'" in p for p in registry.problems())
    # the diagnosing command lists everything and shows the conflict
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    shown = subprocess.run([sys.executable, "-m", "neuroscope.cli", "plugins"], env=env, capture_output=True,
                           text=True, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "clash" in shown.stdout and "conflict" in shown.stdout and "transformers_models" in shown.stdout


def test_plugin_name_shadowed_by_an_alias_is_warned(tmp_path, monkeypatch, caplog):
    shadow = tmp_path / "src" / "neuroscope_shadow.py"
    shadow.parent.mkdir()
    shadow.write_text("import neuroscope\n\n@neuroscope.hookimpl\ndef register_models(register):\n"
                      "    register('minilm', lambda **kw: None)\n")
    site = install_plugin(tmp_path / "site", shadow, name="neuroscope-shadow", entry="shadow = neuroscope_shadow")
    monkeypatch.syspath_prepend(str(site))
    with caplog.at_level("WARNING"):
        registry = Registry()
    text = " ".join(registry.problems())
    assert "plugin 'shadow' registers model 'minilm'" in text and "[models.minilm]" in text
    assert "unreachable" in caplog.text


def test_user_registry_toml_adds_and_overrides(tmp_path):
    (tmp_path / "registry.toml").write_text(
        '[models.mybert]\nadapter = "transformers"\ncheckpoint = "/models/mybert"\n\n'
        '[tasks.pos]\nreader = "conllu"\ntrain = "a"\ndev = "b"\ntest = "c"\n'
    )
    registry = Registry()
    assert registry.resolve_model("mybert").options == {"checkpoint": "/models/mybert"}
    resolved = registry.resolve_task("pos")
    assert resolved.entry.name == "conllu" and resolved.origin == str(tmp_path / "registry.toml")


def test_bad_user_registry_is_a_clear_error(tmp_path):
    (tmp_path / "registry.toml").write_text('[models.x]\ncheckpoint = "y"\n')
    with pytest.raises(RegistryError, match=r"\[models.x\] needs a 'adapter' key"):
        Registry()
    (tmp_path / "registry.toml").write_text('[plugins]\nbuiltin = []\n')
    with pytest.raises(RegistryError, match=r"unknown section \[plugins\]"):
        Registry()


def test_third_party_plugin_runs_through_the_cli(tmp_path):
    site = install_plugin(tmp_path / "site", FIXTURE / "neuroscope_charmodel.py")
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = []
    for _ in range(400):
        for _ in range(rng.randint(3, 8)):
            word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 7)))
            lines.append(f"{word} {'V' if word[0] in 'aeiou' else 'C'}")
        lines.append("")
    (tmp_path / "words.txt").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "neuroscope.cli", "plugins"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "charmodel" in listed.stdout and "0.3" in listed.stdout
    run = subprocess.run(
        [sys.executable, "-m", "neuroscope.cli", "run", "--model", "charstats", "--task", "vowels", "--data-dir",
         str(tmp_path), "--seeds", "1", "--epochs", "30", "--batch-size", "64", "--l1", "0", "--l2", "0", "--out", str(tmp_path / "run"),
         "--cache-dir", str(tmp_path / "cache"), "--quiet"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["neurons"] == 54
    assert results["summary"]["ablation"]["test"]["all"]["mean"] > 95.0
    # the adapter's own site, declared on its class: the whole protocol on its one layer
    own = subprocess.run(
        [sys.executable, "-m", "neuroscope.cli", "run", "--model", "charstats", "--task", "vowels", "--site", "last",
         "--data-dir", str(tmp_path), "--seeds", "1", "--epochs", "10", "--batch-size", "64", "--l1", "0", "--l2", "0",
         "--no-control", "--out", str(tmp_path / "last"), "--cache-dir", str(tmp_path / "cache"), "--quiet"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert own.returncode == 0, own.stderr
    last = json.loads((tmp_path / "last" / "results.json").read_text())
    assert (last["site"], last["layers"], last["neurons"]) == ("last", ["last"], 27)
    wrong = subprocess.run([sys.executable, "-m", "neuroscope.cli", "run", "--model", "charstats", "--task", "vowels",
                            "--site", "mlp", "--data-dir", str(tmp_path), "--out", str(tmp_path / "wrong")],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "offers the sites hidden, last" in wrong.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {"name": "charmodel", "version": "0.3"}.items() <= {
        k: v for p in manifest["plugins"] if p["name"] == "charmodel" for k, v in p.items()}.items()
    # an adapter without intervene(): --causal is refused in one line, before anything is extracted or trained
    causal = subprocess.run(
        [sys.executable, "-m", "neuroscope.cli", "run", "--model", "charstats", "--task", "vowels", "--data-dir",
         str(tmp_path), "--seeds", "1", "--causal", "--out", str(tmp_path / "causal"), "--cache-dir",
         str(tmp_path / "cache2"), "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert causal.returncode == 2 and "cannot remove neurons inside its forward pass" in causal.stderr
    assert "Traceback" not in causal.stderr and not (tmp_path / "cache2").exists()


def test_every_hook_is_documented_with_its_signature_and_tested():
    import inspect
    import re

    from neuroscope import hookspecs

    docs = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_registry.py")
    tests += (FIXTURE / "neuroscope_charmodel.py").read_text()
    for name in hookspecs.HOOK_KINDS:
        # pluggy matches hook arguments by name, so the names are the signature
        signature = f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
        assert f"### `{signature}`" in docs, f"docs/plugins.md does not document {signature}"
        kind = hookspecs.HOOK_KINDS[name]
        assert re.search(rf"def {name}\(|get\(\"{kind}\"", tests + Path(__file__).read_text()), name


def test_wheel_ships_plugins_and_registry(tmp_path):
    import zipfile

    repo = Path(__file__).parent.parent
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(repo)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("neuroscope_nlp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for plugin in ("ptb", "conll2000", "conllu", "transformers_models", "probes", "hub"):
        assert f"neuroscope_plugins/{plugin}.py" in names
    assert any(n.endswith(".data/data/share/neuroscope/registry.toml") for n in names)
    assert "neuroscope/cli.py" in names
