"""A cell (one model x task x probe) as its units of work see it: the typed inputs of the
protocol's steps.

Every unit of a cell (:mod:`neuroscope.orchestrator`) rebuilds a :class:`CellContext`
from the run's settings and its run directory, so a unit can run in any process; the
steps (:mod:`neuroscope.steps`) are functions of it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import attrs
import numpy as np

from neuroscope.errors import RegistryError, ValidationError
from neuroscope.rankers import RankerInputs, check_options, info_of
from neuroscope.registry import Registry
from neuroscope.search import LambdaSearch
from neuroscope.settings import RunConfig
from neuroscope.types import NeuronIndex, TaskData

#: the lambda search's chosen probe, in the run's steps/ directory
SEARCH_PROBE = "lambda-search-probe.npz"
#: the cell's activation store handles and device, in steps/ (written by its first unit)
ACTIVATIONS = "activations.json"
#: each unit's step timings, merged into timings.json by the cell's last unit
TIMINGS_DIR = "timings"


@attrs.frozen
class Lambdas:
    """The cell's lambdas: the search that chose them (None when not searched) and how."""

    searched: LambdaSearch | None
    l1: float
    l2: float
    chosen_by: str


@attrs.frozen
class CellContext:
    """What every unit of a cell works from, rebuilt in the unit's process from the run's
    settings and its run directory (the activations by their store handles in
    ``steps/activations.json``): settings, data, activations, gold labels, neuron index,
    probe and rankers."""

    config: RunConfig
    run_dir: Path
    steps_dir: Path
    task: TaskData
    data: dict[str, Any]
    #: split -> {"path", "key", "shape", "identity"} of its activation store entry
    activations: dict[str, dict[str, Any]]
    device: str
    acts: dict[str, Any]
    gold: dict[str, np.ndarray]
    index: NeuronIndex
    probe_cls: Any
    probe_options: dict[str, Any]
    trainer: Callable[..., tuple[np.ndarray, np.ndarray]]
    rankers: dict[str, tuple[Callable, dict[str, Any]]]
    #: the ranker whose ranking of each grid probe scores the lambda search (one that reads the probe)
    searcher: str | None
    shared: dict = attrs.field(factory=dict)

    def params(self, lambdas: Lambdas) -> dict[str, Any]:
        return {**self.config.probe_params(lambdas.l1, lambdas.l2), **self.probe_options}

    def ranker_inputs(self, seed: int, probe: Any = None, model: Callable[[], Any] | None = None) -> RankerInputs:
        """What a ranker reads for ``seed``: the train activations and labels, the neuron
        index, ``probe`` (for rankers that read one), the cell's shared statistics, and for
        rankers that need the live model its loader ``model`` and the train sentences."""
        return RankerInputs(self.acts["train"], self.gold["train"], self.task.labels, self.index, seed, probe,
                            self.shared, self.config.fraction, model=model,
                            sentences=self.task.train.words() if model is not None else None)


def slug(name: str) -> str:
    """A ranker's name as a file name part."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def resolve_rankers(registry: Registry, config: RunConfig) -> dict[str, tuple[Callable, dict[str, Any]]]:
    """Each ranker of the run with its options (registry.toml, and --stride where it takes one)."""
    return {name: resolve_ranker(registry, name, config.stride) for name in config.rankers}


def resolve_ranker(registry: Registry, name: str, stride: int | None = 100) -> tuple[Callable, dict[str, Any]]:
    """A ranker and its options (its registry.toml table, and ``stride`` where it takes one);
    an option it does not take, or a value it refuses, is refused naming where it came from,
    before anything is loaded (:func:`neuroscope.rankers.check_options`)."""
    resolved = registry.resolve_ranker(name)
    fn = resolved.entry.obj
    options = dict(resolved.options)
    parameters = inspect.signature(fn).parameters
    if "stride" in parameters and "stride" not in options:
        options["stride"] = stride
    accepted = [p for p in parameters if p not in ("inputs", "coef")]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise RegistryError(f"ranker {name!r} (options from {resolved.origin}): unknown option(s) "
                            f"{', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}")
    try:
        check_options(fn, options)
    except ValidationError as exc:
        raise ValidationError(f"ranker {name!r} (options from {resolved.origin}): {exc}") from None
    return fn, options


def searching_ranker(rankers: dict[str, tuple[Callable, dict[str, Any]]]) -> str | None:
    """The search scores lambdas by the ranking they give (S): the first ranker that reads the probe."""
    return next((name for name, (fn, _) in rankers.items() if "probe" in info_of(fn).needs), None)
