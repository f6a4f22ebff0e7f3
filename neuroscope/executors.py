"""Executors: what runs a plan's units of work (``neuroscope run --executor``).

A run of several models x tasks x probes is planned as a graph of units
(:func:`plan_units`):

* one **extract** unit per (model, task, data slice): the activations of every split
  written to the activation store (``--cache-dir``). Cells over the same corpus and
  model (e.g. two probes) share it, so the corpus is extracted once;
* one **cell** unit per run directory, after its extract unit: the protocol (lambda
  search, then per seed the oracle, rankings, ablations, minimal sets, control task,
  then the report), reading the activations from the store.

A unit is plain data (:class:`Unit`: the run's settings as JSON, the run directory's
name, resources) and :func:`run_unit` runs one anywhere: it limits torch's and the
BLAS's threads to the CPUs the unit was given, and returns one :class:`UnitOutcome`.
A cell unit run away from the driver works in a private directory seeded with the run
directory's finished steps and returns every file it wrote; the driver alone writes the
run directory (:func:`write_files`), so workers need shared storage only for the
activation cache (docs/distributed.md).

Built-in executors (``plugins/executors.py``, registered through ``register_executors``
like a third-party one): ``local`` runs the units in order in this process; ``ray`` runs
independent units in parallel on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs

from neuroscope.errors import NeuroscopeError

log = logging.getLogger(__name__)

KINDS = ("extract", "cell")


@attrs.frozen
class Unit:
    """One unit of work. ``config`` is ``RunConfig.to_json()``; ``run_dir`` the cell's run
    directory (empty for an extract unit); ``after`` the ids it waits for; ``cpus`` and
    ``gpus`` the resources it declares."""

    id: str
    kind: str
    config: dict
    run_dir: str = ""
    resume: bool = False
    after: tuple[str, ...] = ()
    cpus: int = 0
    gpus: float = 0.0
    argv: tuple[str, ...] = ()

    @property
    def cell(self) -> str:
        return f"{self.config['model']} x {self.config['task']}" + (
            f" ({self.config['probe']})" if self.kind == "cell" else "")


@attrs.frozen
class UnitOutcome:
    """What a unit did: ``ok``; ``message``, the one-line error of a failed unit;
    ``files``, the run directory's files a cell unit wrote away from the driver
    (relative path -> bytes); ``seconds`` of wall time; ``timings`` of its steps."""

    unit: str
    ok: bool
    message: str | None = None
    files: dict | None = None
    seconds: float = 0.0
    timings: dict | None = None
    error: Exception | None = attrs.field(default=None, eq=False, repr=False)


def extraction_key(config: Mapping[str, Any]) -> tuple:
    """Cells whose activations are the same entries of the store (same model, settings,
    corpus and slice) share one extract unit."""
    return tuple(str(config.get(k)) for k in ("model", "task", "data_dir", "max_sentences", "aggregation", "device",
                                              "extract_batch_size", "layers", "dtype", "cache_dir"))


def plan_units(plan: Sequence[tuple[Any, Path]], resume: bool = False, cpus_per_unit: int = 0,
               argv: Sequence[str] = ()) -> list[Unit]:
    """The graph of a planned run (``plan``: (RunConfig, run directory) per cell), in an
    order that runs every unit after the units it depends on. ``cpus_per_unit`` 0: the
    units take the whole machine's threads (one at a time, as ``local`` runs them)."""
    units: list[Unit] = []
    extracts: dict[tuple, str] = {}
    for config, run_dir in plan:
        data = config.to_json()
        gpus = 1.0 if str(config.device).startswith("cuda") else 0.0
        key = extraction_key(data)
        if key not in extracts:
            extracts[key] = f"extract {config.model} x {config.task}"
            units.append(Unit(extracts[key], "extract", data, cpus=cpus_per_unit, gpus=gpus, argv=tuple(argv)))
        units.append(Unit(f"cell {Path(run_dir).name}", "cell", data, str(run_dir), resume, (extracts[key],),
                          cpus_per_unit, gpus, tuple(argv)))
    return units


@contextlib.contextmanager
def limit_threads(cpus: int) -> Iterator[None]:
    """torch's intra-op threads and the BLAS / OpenMP pools (through threadpoolctl when it
    is installed) limited to ``cpus`` while a unit runs: units sharing a machine then
    share its cores instead of each starting one thread per core (oversubscription).
    ``cpus`` 0: no limit."""
    import torch

    if not cpus:
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))
    limiter: Any = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=max(1, int(cpus)))
    except ImportError:
        pass
    try:
        with limiter:
            yield
    finally:
        torch.set_num_threads(before)


def read_files(run_dir: Path) -> dict[str, bytes]:
    """Every regular file of a run directory (the lock file aside), by relative path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and not p.name.endswith((".lock", ".tmp"))}


def write_files(run_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write a cell's files into its run directory, each under a temporary name then
    renamed (never half-written), ``results.json`` last: a directory with results.json is
    a finished run."""
    run_dir = Path(run_dir)
    for name in sorted(files, key=lambda n: (n == "results.json", n)):
        target = run_dir / name
        if not target.resolve().is_relative_to(run_dir.resolve()):
            raise NeuroscopeError(f"{run_dir}: a unit returned a file outside the run directory: {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(files[name])
        os.replace(tmp, target)


def run_unit(unit: Unit, files: Mapping[str, bytes] | None = None, quiet: bool = True,
             reporter: Any = None) -> UnitOutcome:
    """Run one unit here. ``files`` None: a cell writes its run directory in place (the
    driver's own process); a mapping (possibly empty): the cell works in a private
    directory seeded with those files and returns what it wrote. A user error (bad data,
    a missing checkpoint, ...) is a failed outcome with its one-line message; anything
    else (a bug, a dying machine) propagates, so that the executor may retry."""
    from neuroscope.orchestrator import Orchestrator, RunConfig, check_causal_support
    from neuroscope.progress import Reporter
    from neuroscope.registry import Registry
    from neuroscope.steps import extract, load_model, load_task

    start = time.perf_counter()
    config = RunConfig.from_json(unit.config)
    reporter = reporter or Reporter(quiet=quiet)
    try:
        with limit_threads(unit.cpus):
            registry = Registry()
            if unit.kind == "extract":
                from neuroscope.store import ActivationStore

                task = load_task(registry, config.task, Path(config.data_dir)).head(*config.max_sentences)
                adapter = load_model(registry, config.model, config.device, config.aggregation,
                                     config.extract_batch_size, config.layers, config.dtype)
                check_causal_support(config, adapter)
                with reporter.running():
                    extract(ActivationStore(Path(config.cache_dir) / "activations"), adapter, task, reporter.task)
                return UnitOutcome(unit.id, True, seconds=time.perf_counter() - start)
            orchestrator = Orchestrator(registry, reporter, list(unit.argv))
            if files is None:
                with reporter.running():
                    orchestrator.run(config, Path(unit.run_dir), resume=unit.resume)
                return UnitOutcome(unit.id, True, seconds=time.perf_counter() - start,
                                   timings=dict(orchestrator.timings))
            work = Path(tempfile.mkdtemp(prefix="neuroscope-unit-"))
            try:
                run_dir = work / Path(unit.run_dir).name
                if files:
                    run_dir.mkdir()
                    write_files(run_dir, files)
                orchestrator.run(config, run_dir, resume=bool(files))
                written = {name: data for name, data in read_files(run_dir).items() if files.get(name) != data}
                return UnitOutcome(unit.id, True, files=written, seconds=time.perf_counter() - start,
                                   timings=dict(orchestrator.timings))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    except NeuroscopeError as exc:
        return UnitOutcome(unit.id, False, message=str(exc), seconds=time.perf_counter() - start, error=exc)


Report = Callable[[Unit, UnitOutcome], None]


def not_run(unit: Unit, outcomes: Mapping[str, UnitOutcome]) -> UnitOutcome | None:
    """The failed outcome of ``unit`` when a unit it waits for failed (naming it and its
    message), else None: the unit may run."""
    failed = next((a for a in unit.after if a in outcomes and not outcomes[a].ok), None)
    if failed is None:
        return None
    return UnitOutcome(unit.id, False, f"not run: {failed} failed ({outcomes[failed].message})")


class LocalExecutor:
    """Runs the units in order, in this process, cells writing their run directories in
    place (today's loop, as a graph): the reference every other executor must equal."""

    def __init__(self, **options: Any):
        self.options = options

    def run(self, units: Sequence[Unit], report: Report, reporter: Any = None) -> dict[str, UnitOutcome]:
        outcomes: dict[str, UnitOutcome] = {}
        for unit in units:
            outcome = not_run(unit, outcomes) or run_unit(unit, None, reporter=reporter)
            outcomes[unit.id] = outcome
            report(unit, outcome)
        return outcomes
