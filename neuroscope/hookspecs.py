"""The plugin contract (DESIGN.md, layer 4).

Every hook is a register-callback hook: neuroscope calls it with a
``register(name, obj, aliases=())`` function and the plugin calls ``register``
once per thing it provides. Built-in plugins (``plugins/``) use exactly these
hooks, through the same loader as third-party packages.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("neuroscope")
hookimpl = pluggy.HookimplMarker("neuroscope")

Register = Callable[..., None]


@hookspec
def register_models(register: Register) -> None:
    """Register model adapters.

    ``register(name, factory, aliases=())``: ``factory(*, device, aggregation,
    batch_size, **options)`` returns a :class:`neuroscope.model.ModelAdapter`.
    ``device`` is ``auto``, ``cpu`` or ``cuda[:N]``; ``aggregation`` is how
    sub-words make a word (``last``, ``first``, ``mean``); ``batch_size`` is
    sentences per forward pass; ``options`` come from a ``[models.NAME]``
    table of registry.toml (e.g. ``checkpoint``).
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register task readers.

    ``register(name, reader, aliases=())``: ``reader(data_dir, **options)``
    returns a :class:`neuroscope.types.TaskData`. ``data_dir`` is a
    :class:`pathlib.Path`; ``options`` come from a ``[tasks.NAME]`` table of
    registry.toml (file paths relative to ``data_dir``, columns, ...).
    """


@hookspec
def register_probes(register: Register) -> None:
    """Register probes.

    ``register(name, probe_class, aliases=())``: a scikit-learn style estimator
    class whose ``fit(X, y)`` accepts an activation reader and a label array and
    which exposes ``coef_`` of shape (labels, neurons) after fitting.
    """


@hookspec
def register_rankers(register: Register) -> None:
    """Register neuron rankers.

    ``register(name, ranker, aliases=())``: ``ranker(inputs, **options)``, marked with
    :func:`neuroscope.rankers.ranker` (what it needs: the probe, the activations), takes
    a :class:`neuroscope.rankers.RankerInputs` and returns a
    :class:`neuroscope.ranking.Ranking`; a plain ``f(coef, **options)`` on the probe's
    (labels, neurons) weights still works.
    """


@hookspec
def register_executors(register: Register) -> None:
    """Register executors: what runs a plan's units of work.

    ``register(name, executor_class, aliases=())``: ``executor_class(**options)`` (the
    options from the command line: ``address``, ``cpus``, ``cpus_per_unit``) has
    ``run(units, run_unit, report) -> dict[str, UnitOutcome]``: it runs every
    :class:`neuroscope.executors.Unit` after the units it depends on, calling
    ``run_unit(unit, files)`` wherever it places it, and reports each outcome to the
    driver with ``report(unit, outcome)`` (docs/plugins.md, docs/distributed.md).
    """


HOOK_KINDS: dict[str, str] = {
    "register_models": "models",
    "register_tasks": "tasks",
    "register_probes": "probes",
    "register_rankers": "rankers",
    "register_executors": "executors",
}
