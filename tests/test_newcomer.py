"""A newcomer's first day (issue 29): run directories that do not collide, a non-editable
install used from the checkout, compare across tasks, notebooks that keep their plots."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from neuroscope.cli import main
from neuroscope.planning import plan_runs
from neuroscope.settings import request_from_kwargs

REPO = Path(__file__).resolve().parent.parent


def run_dir_of(tmp_path: Path, **settings) -> Path:
    plan = plan_runs(request_from_kwargs(model="minilm", task="pos", data_dir=str(tmp_path), runs_dir=str(tmp_path),
                                         **settings))
    (_, run_dir), = plan.cells
    return run_dir


def test_runs_with_other_settings_get_their_own_directory(tmp_path):
    """The README's main job keeps its name; the tour's variants of it each get another,
    named by what they change (or a short hash of it), so none collides with the first."""
    today = dt.date.today().isoformat()
    assert run_dir_of(tmp_path).name == f"{today}-minilm-pos"
    assert run_dir_of(tmp_path, cache_dir=str(tmp_path / "elsewhere")).name == f"{today}-minilm-pos"
    assert run_dir_of(tmp_path, precision="bfloat16").name == f"{today}-minilm-pos-precision-bfloat16"
    assert run_dir_of(tmp_path, epochs="auto", seeds=1).name == f"{today}-minilm-pos-epochs-auto-seeds-1"
    many = run_dir_of(tmp_path, seeds=1, l1=1e-4, l2=1e-4, fraction=0.1)
    assert many.name.startswith(f"{today}-minilm-pos-s") and len(many.name) == len(f"{today}-minilm-pos-s") + 8
    assert many != run_dir_of(tmp_path, seeds=1, l1=1e-4, l2=1e-4, fraction=0.3)
    assert run_dir_of(tmp_path, seeds=1, l1=1e-4, l2=1e-4, fraction=0.1) == many  # the same settings, the same name


def test_the_messages_about_a_taken_directory_give_a_command_that_works(tmp_path, capsys):
    from test_hardening import column_task, toy_corpus, toy_run

    column_task(tmp_path, toy_corpus())
    args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run"))
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "add --resume to continue it" in err and f"--out {tmp_path / 'run'}-2" in err
    assert main(args + ["--resume"]) == 0
    capsys.readouterr()
    assert main(args + ["--fraction", "0.3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "other settings (fraction: 0.2 in the run, 0.3 now)" in err and f"--out {tmp_path / 'run'}-2" in err
    assert main(args[:-2] + ["--out", f"{tmp_path / 'run'}-2", "--fraction", "0.3"]) == 0
    assert json.loads((tmp_path / "run-2" / "config.json").read_text())["fraction"] == 0.3


def test_every_package_of_the_source_is_installed():
    """setup.cfg lists each package directory (a subpackage left out installs a neuroscope
    that cannot import, though an editable install works)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = {p.strip() for p in cfg["options"]["packages"].split(",")}
    found = {".".join(("neuroscope_plugins",) + p.parent.relative_to(REPO / "plugins").parts) if p.is_relative_to(
        REPO / "plugins") else ".".join(p.parent.relative_to(REPO).parts)
        for p in [*(REPO / "neuroscope").rglob("__init__.py"), *(REPO / "plugins").rglob("__init__.py")]}
    assert found <= listed, sorted(found - listed)


def test_a_non_editable_install_works_from_inside_the_checkout(tmp_path):
    """`pip install .` (not editable), then the README's commands run in the checkout: its
    registry.toml is the packaged one of a checkout, not a user overlay, and the installed
    package is complete. Installed into a fresh prefix without dependencies (they are this
    interpreter's, on PYTHONPATH, whose .pth files, and so the editable install's finder,
    are not run); `-P` keeps the checkout off the import path, as for the console script."""
    import os
    import shutil
    import site
    import subprocess
    import sys

    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "__pycache__",
                                                                 ".pytest_cache", "data"))
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--ignore-installed",  # never uninstall this interpreter's own (editable) neuroscope
                    "--prefix", str(prefix), str(source)], check=True, timeout=300, capture_output=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    env.pop("NEUROSCOPE_REGISTRY", None)
    for argv in (["plugins"],):  # reads the registry and imports every built-in plugin
        done = subprocess.run([str(prefix / "bin" / "python"), "-P", "-c",
                               "import sys, neuroscope; from neuroscope.cli import main; print(neuroscope.__file__); "
                               f"sys.exit(main({argv!r}))"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
        assert str(prefix) in done.stdout.splitlines()[0], done.stdout[:300]  # the installed copy, not the checkout


def test_compare_gives_one_model_one_column_across_tasks(tmp_path, capsys):
    """The README's `compare RUN_POS RUN_CHUNK` of one model: one column (the model), a block
    per task, one panel per task in compare_layers.png; no `#1` / `#2` split."""
    from test_hardening import column_task, toy_corpus, toy_run

    column_task(tmp_path, toy_corpus(), extra='[tasks.toy2]\nreader = "columns"\ntrain = "train.txt"\n'
                'dev = "dev.txt"\ntest = "test.txt"\ncolumns = 2\nword = 1\nlabel = 2\nseparator = "whitespace"\n')
    for task in ("toy", "toy2"):
        args = toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / task))
        args[args.index("--task") + 1] = task
        assert main(args) == 0
    assert main(["compare", str(tmp_path / "toy"), str(tmp_path / "toy2"), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    model = json.loads((tmp_path / "toy" / "results.json").read_text())["model"]
    header = next(line for line in md.splitlines() if line.startswith("|  |"))
    assert header.strip() == f"|  | {model} |", header
    assert "#1" not in md and "| TOY |  |" in md and "| TOY2 |  |" in md
    from PIL import Image

    width, height = Image.open(tmp_path / "cmp" / "compare_layers.png").size
    assert height > width  # two task rows, one model column


def test_every_commands_help_shows_each_default_once():
    """No `(default: None)` and no help that states its default twice (issue 29, item 8)."""
    import argparse

    from neuroscope.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        text = " ".join(sub.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.help and action.option_strings:
                shown = formatter._get_help_string(action)
                assert shown.count("(default") <= 1 and (shown == action.help or "default" not in action.help), \
                    (name, action.option_strings, shown)


NO_TORCH = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError("this command must not import " + name)
sys.meta_path.insert(0, Refuse())
from neuroscope.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules and "transformers" not in sys.modules
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"], ["cache", "list"],
                                  ["cache", "verify"], ["plugins"], ["data", "list"]])
def test_help_plugins_data_and_the_cache_answer_without_torch(argv, tmp_path):
    """The first feedback comes at once: help, `plugins`, `data list` and `cache` import
    neither torch nor transformers (each takes seconds to import on a busy machine), and
    every built-in plugin still loads (a plugin that needed torch to register would be
    listed as failed)."""
    import subprocess
    import sys

    (tmp_path / "activations").mkdir()  # an empty store
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *argv, *(["--cache-dir", str(tmp_path)] if
                                                                   argv[0] == "cache" else [])],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed" not in done.stdout + done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    expected = {"plugins": "transformers_models", "data": "conll2000", "cache": ""}.get(argv[0], "usage:")
    assert expected in done.stdout


@pytest.mark.parametrize("model", ["hf:/no/such/model", "elmo:~/no-such-elmo", "telmo:./no/model.tar.gz"])
def test_a_wrong_model_path_is_reported_before_any_corpus_is_read(model, tmp_path, capsys):
    """A checkpoint path that does not exist is named at planning, in a second, not after
    the corpus has been read (the data directory here does not even exist)."""
    code = main(["run", "--model", model, "--task", "pos", "--data-dir", str(tmp_path / "no-data"),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--model {model}: " in err and "no such file or directory" in err and "no-data" not in err
    assert not (tmp_path / "run").exists()


def test_progress_outside_a_terminal_is_lines_with_units(monkeypatch):
    """A log file (CI, a batch system, nohup) or a notebook gets a line when a step starts,
    periodic lines with count, share and time, and one when it ends; a terminal gets bars
    that name their unit."""
    import io

    from rich.console import Console

    from neuroscope.progress import Reporter

    monkeypatch.setenv("NEUROSCOPE_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    reporter = Reporter(console=Console(file=out, force_terminal=False, force_jupyter=False, width=200))
    with reporter.running(), reporter.task("lambda grid (4 pairs)", 1000) as advance:
        for _ in range(4):
            advance(250)
    with reporter.running(), reporter.task("minimal set weight-mass seed 0", None) as advance:
        advance(7000)
    text = out.getvalue()
    assert "lambda grid (4 pairs): started (1,000 rows)" in text and "250/1,000 rows (25%)" in text
    assert "lambda grid (4 pairs): done in" in text and "minimal set weight-mass seed 0: 7,000 rows" in text
    out = io.StringIO()
    reporter = Reporter(console=Console(file=out, force_terminal=True, force_jupyter=False, width=200))
    with reporter.running(), reporter.task("extract train", 3, "sentences") as advance:
        advance(3)
    assert "3/3 sentences" in out.getvalue()
    quiet = Reporter(quiet=True, console=Console(file=io.StringIO(), force_terminal=False))
    with quiet.running(), quiet.task("x", 3) as advance:
        advance(3)
    assert quiet.console.file.getvalue() == ""


def test_a_run_in_a_log_file_reports_every_step(tmp_path, capsys, monkeypatch):
    from test_hardening import column_task, toy_corpus, toy_run

    monkeypatch.setenv("NEUROSCOPE_PROGRESS_SECONDS", "0")
    column_task(tmp_path, toy_corpus())
    args = [a for a in toy_run(tmp_path, "--deltas", "50", "--out", str(tmp_path / "run")) if a != "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for step in ("extract train: started", "oracle seed 0: started", "minimal set weight-mass seed 0: done in"):
        assert step in out, (step, out[:3000])


def test_a_run_named_without_its_date_is_the_newest_of_that_name(tmp_path):
    """`neuroscope neurons runs/minilm-pos` (and report, show, compare, ns.open) keep working
    the day after: the newest dated directory with exactly that rest of the name."""
    from neuroscope.rundir import find_run

    for name in ("2026-11-01-minilm-pos", "2026-12-01-minilm-pos", "2026-12-02-minilm-pos-seeds-1", "minilm-chunk"):
        (tmp_path / name).mkdir()
    assert find_run(tmp_path / "minilm-pos") == tmp_path / "2026-12-01-minilm-pos"
    assert find_run(tmp_path / "minilm-pos-seeds-1") == tmp_path / "2026-12-02-minilm-pos-seeds-1"
    assert find_run(tmp_path / "minilm-chunk") == tmp_path / "minilm-chunk"  # an existing path is itself
    assert find_run(tmp_path / "minilm-sem") == tmp_path / "minilm-sem"  # nothing matches: the reader says so
    assert find_run(tmp_path / "2026-12-03-minilm-pos") == tmp_path / "2026-12-03-minilm-pos"


def test_every_readme_tour_line_parses_and_its_runs_plan_into_distinct_directories():
    """Each line of the README's tour is a valid command (both blocks), and the runs of the
    block that runs in a checkout plan (names resolve, options pass, data found) into
    directories of their own, none colliding with the main job's or another line's
    (bench/tour.py executes them all)."""
    import re
    import shlex

    from neuroscope.cli import build_parser
    from neuroscope.settings import request_from_values

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    tour = text[text.index("## A short tour"):text.index("In Python (a notebook tour")]
    blocks = [[re.sub(r"\s{2,}#.*$", "", line.strip()) for line in block.splitlines()
               if line.strip().startswith("neuroscope ")]
              for block in re.split(r"\n(?=\S)", tour)]
    here, elsewhere = [b for b in blocks if b][:2]
    assert len(here) >= 15 and len(elsewhere) >= 5
    parser = build_parser()
    planned: dict[str, str] = {}
    repo = Path(__file__).resolve().parent.parent
    for line in here + elsewhere:
        args = parser.parse_args(shlex.split(line)[1:])
        if line in here and args.command == "run":
            values = vars(args)
            values["data_dir"] = str(repo.parent / "shared" / "data")
            for _, run_dir in plan_runs(request_from_values(values)).cells:
                assert run_dir.name not in planned, (line, planned.get(run_dir.name))
                planned[run_dir.name] = line
    today = dt.date.today().isoformat()
    assert {f"{today}-minilm-pos", f"{today}-minilm-chunk"} <= set(planned)


def test_plugins_at_80_columns_never_breaks_a_name():
    """`neuroscope plugins` in an 80-column terminal: every plugin, model and task name is
    on one line (cells wrap between words only)."""
    import argparse
    import io

    from rich.console import Console

    from neuroscope.cli import cmd_plugins
    from neuroscope.registry import Registry

    out = io.StringIO()
    assert cmd_plugins(argparse.Namespace(), Console(file=out, width=80)) == 0
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    registry = Registry()
    names = [p.name for p in registry.plugins] + list(registry.file["models"]) + list(registry.file["tasks"])
    names += [n for p in registry.plugins for v in p.provides.values() for n in v]
    words = set(text.replace(",", " ").replace(";", " ").split())
    assert [n for n in names if n not in words] == []
