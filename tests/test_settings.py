"""One definition of a run's settings (neuroscope/settings.py): ``neuroscope run --help``,
docs/cli.md, the validation and ``neuroscope.run``'s keywords all come from it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import neuroscope as ns
from neuroscope.cli import build_parser, run_parser
from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.settings import (PlanOptions, RunConfig, options_markdown, request_from_kwargs, request_from_values,
                                 run_defaults, run_options, with_options_table)

REPO = Path(__file__).resolve().parent.parent


def run_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[-1]: a for a in parser._actions if a.option_strings and a.dest != "help"}


def test_the_parser_has_exactly_the_defined_options_with_their_help():
    actions = run_actions(run_parser())
    assert set(actions) == {opt.flag for _, _, opt in run_options()}
    for cls, name, opt in run_options():
        action = actions[opt.flag]
        assert action.dest == opt.dest
        assert action.help.startswith(opt.help.replace("`", "").replace("%", "%%")), opt.flag
        if opt.choices:
            assert tuple(action.choices) == opt.choices
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(run_actions(sub.choices["run"])) == set(actions)  # `neuroscope run` is the same parser


def test_run_help_shows_every_option_with_default_and_range(capsys):
    with pytest.raises(SystemExit):
        run_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for _, _, opt in run_options():
        assert opt.flag in out
    assert "--fraction FRACTION M, the share of neurons" in out
    assert "(default: 0.2; allowed: a finite number > 0 and < 1)" in out


def test_docs_cli_md_holds_the_generated_table():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert with_options_table(text) == text, ("docs/cli.md's option table is out of date: run python -c "
                                              "\"from neuroscope.settings import write_options_table; "
                                              "write_options_table('docs/cli.md')\"")
    assert options_markdown() in text
    for _, _, opt in run_options():
        assert f"| `{opt.flag}` |" in text


def test_the_python_keywords_are_the_options_names():
    dests = {opt.dest for _, _, opt in run_options()}
    assert set(run_defaults()) == dests
    assert request_from_kwargs() == request_from_values(vars(run_parser().parse_args([])))
    for name, value in run_defaults().items():  # every keyword is accepted at its default
        request_from_kwargs(**{name: value})
    with pytest.raises(ValidationError, match="unknown option 'rankers'.*ranker"):
        request_from_kwargs(rankers=["probeless"])


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": 2.5}, "--seeds"),
    ({"seeds": "two"}, "seeds='two'"),
    ({"seeds": True}, "seeds=True"),
    ({"model": 3}, "model=3"),
    ({"model": []}, "model=\\[\\]"),
    ({"layers": [1.5]}, "layers=\\[1.5\\]"),
    ({"layers": [2, 2]}, "layers=\\[2, 2\\]: expected different layer indices"),
    ({"quiet": "yes"}, "quiet='yes'"),
    ({"no_control": 1}, "no_control=1"),
    ({"grid": [0.1, float("nan")]}, "--grid"),
    ({"grid": []}, "grid=\\[\\]"),
    ({"max_sentences": (5, 0, 5)}, "--max-sentences \\(dev\\)"),
    ({"max_sentences": (5, 5)}, "max_sentences=\\(5, 5\\)"),
    ({"epochs": 2.5}, "--epochs"),
    ({"aggregation": "sum"}, "aggregation='sum'"),
    ({"cpus": 0}, "--cpus"),
    ({"out": 5}, "out=5"),
    ({"ranker": ["weight-mass", "weight-mass"]}, "--ranker"),
])
def test_ill_typed_or_out_of_range_keywords_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        request_from_kwargs(**kwargs)


def test_python_values_convert_as_the_command_line_does():
    request = request_from_kwargs(model="minilm,elmo", task=["pos"], seeds=2, grid=[0, 1e-3], max_sentences=10,
                                  layers=[0, 3], epochs="auto", no_control=True, grid_memory=1)
    assert request.plan.model == ("minilm", "elmo") and request.plan.task == ("pos",)
    cell = request.cell
    assert cell["seeds"] == (0, 1) and cell["grid"] == (0.0, 1e-3) and cell["max_sentences"] == (10, 10, 10)
    assert cell["layers"] == (0, 3) and cell["epochs"] == "auto" and cell["control"] is False
    assert cell["grid_memory"] == 2**30
    configs = request.configs()
    assert [(c.model, c.task, c.probe) for c in configs] == [("minilm", "pos", "elastic-net"),
                                                            ("elmo", "pos", "elastic-net")]


def test_out_with_several_cells_is_refused():
    with pytest.raises(NeuroscopeError, match="--out names one run directory"):
        PlanOptions(model=("a", "b"), out=Path("x"))


def test_config_json_keeps_its_layout():
    """Settings newer than the first runs stay out of config.json at their defaults, so an
    older run directory can be resumed."""
    config = RunConfig(model="m", task="t", data_dir="/d")
    data = config.to_json()
    for key in ("causal", "causal_mode", "causal_positions", "layers", "dtype"):
        assert key not in data
    assert data["seeds"] == [0, 1, 2] and data["grid_memory"] == 2 * 2**30 and data["control"] is True
    assert RunConfig.from_json(data) == config
    causal = RunConfig(model="m", task="t", data_dir="/d", causal=True, layers=(1, 2), dtype="bfloat16")
    data = causal.to_json()
    assert data["causal_mode"] == "zero" and data["layers"] == [1, 2] and data["dtype"] == "bfloat16"
    assert RunConfig.from_json(data) == causal


def test_api_run_validates_before_anything_loads(tmp_path):
    with pytest.raises(ValidationError, match="--fraction"):
        ns.run(fraction=2.0, data_dir=tmp_path / "nowhere")
