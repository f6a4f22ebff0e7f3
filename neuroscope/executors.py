"""Executors: what runs a plan's units of work (``neuroscope run --executor``).

A run of several models x tasks x probes is planned as a graph of units
(:func:`plan_units`):

* one **extract** unit per (model, task, data slice): the activations of every split
  written to the activation store (``--cache-dir``). Cells over the same corpus and
  model (e.g. two probes) share it, so the corpus is extracted once;
* per run directory (cell), after its extract unit: a **search** unit (the cell's
  settings, data and activations' handles, then the lambda search), one **seed** unit
  per seed after it (the oracle, rankings, ablations, minimal sets and control task of
  that seed; the seeds are independent of each other), then a **finish** unit after
  every seed (results, causal ablation, report): the orchestrator's steps
  (:func:`neuroscope.orchestrator.cell_steps`).

A unit is plain data (:class:`Unit`: the run's settings as JSON, the run directory's
name, the seed, resources) and :func:`run_unit` runs one anywhere: it limits torch's and
the BLAS's threads to the CPUs the unit was given, and returns one :class:`UnitOutcome`.
A cell's unit run away from the driver works in a private directory seeded with the run
directory's files (the steps of the units before it) and returns every file it wrote;
the driver alone writes the run directory (:func:`write_files`), so workers need shared
storage only for the activation cache (docs/distributed.md).

Built-in executors (``plugins/executors.py``, registered through ``register_executors``
like a third-party one): ``local`` runs the units in order in this process, or with
``--cpus`` several at once in worker processes; ``ray`` runs independent units in
parallel on a Ray cluster.
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
from neuroscope.rundir import atomic_path, node_name

log = logging.getLogger(__name__)

#: the kinds of unit: a model's extraction of a corpus, then a cell's search, seeds and finish
KINDS = ("extract", "search", "seed", "finish")


@attrs.frozen
class Unit:
    """One unit of work. ``config`` is ``RunConfig.to_json()``; ``run_dir`` the cell's run
    directory (empty for an extract unit); ``seed`` the seed of a seed unit; ``after`` the
    ids it waits for; ``cpus`` and ``gpus`` the resources it declares; ``resume``: the
    cell's first unit may continue a run directory that holds finished steps."""

    id: str
    kind: str
    config: dict
    run_dir: str = ""
    resume: bool = False
    after: tuple[str, ...] = ()
    cpus: int = 0
    gpus: float = 0.0
    argv: tuple[str, ...] = ()
    seed: int | None = None
    #: a cell's first unit: what its extract unit stored (each split's store entry and the
    #: device), handed on by the executor so the unit opens those entries without loading
    #: the model or hashing its checkpoint again (None: it extracts what it needs itself);
    #: an extract unit after shards: the shards' records (``{"shards": [...]}``)
    activations: dict | None = None
    #: an extraction shard (``--extract-shards``): (shard, shards), 0-based
    shard: tuple[int, int] | None = None
    #: bytes of memory it declares (0: none); None: estimated once its cell's stored shapes are
    #: known (:func:`sized`, :mod:`neuroscope.resources`)
    memory: int | None = 0

    @property
    def cell(self) -> str:
        return f"{self.config['model']} x {self.config['task']}" + (
            f" ({self.config['probe']})" if self.kind != "extract" else "")


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
    #: not run because a unit it waits for failed
    skipped: bool = False
    #: an extract unit's record of what it stored (:func:`neuroscope.orchestrator.activation_record`)
    activations: dict | None = None
    #: the node the unit ran on (:func:`node_name`)
    node: str | None = None
    #: why each earlier attempt of the unit ended (a worker or node that died), oldest first
    retries: tuple[str, ...] = ()
    #: the executor's own id of where the unit ran (Ray's node id), for placing the units after it
    placement: str | None = None


def handed_activations(unit: Unit, outcomes: Mapping[str, UnitOutcome]) -> dict | None:
    """What a cell's first (search) unit is handed: the record of the extract unit it waits
    for, when that unit ran in this plan and returned one; what an extract unit after
    shards is handed: every shard's record, when all returned one."""
    if unit.kind == "extract" and unit.shard is None and unit.after:
        shards = [outcomes[a].activations for a in unit.after if a in outcomes]
        if len(shards) == len(unit.after) and all(r is not None and "keys" in r for r in shards):
            return {"shards": shards}
        return unit.activations
    if unit.kind != "search":
        return unit.activations
    for before in unit.after:
        outcome = outcomes.get(before)
        if outcome is not None and outcome.activations is not None:
            return outcome.activations
    return unit.activations


def sized(unit: Unit, units: Mapping[str, Unit], outcomes: Mapping[str, UnitOutcome]) -> Unit:
    """``unit`` with the memory it declares where that waited for its cell's stored shapes
    (``memory`` None): estimated from the record of the extract unit before it
    (:func:`neuroscope.resources.estimate_memory`), or none where that is not known."""
    if unit.memory is not None:
        return unit
    from neuroscope.resources import estimate_memory

    before = unit
    while before.kind != "extract" and before.after and before.after[0] in units:
        before = units[before.after[0]]
    outcome = outcomes.get(before.id)
    record = outcome.activations if outcome is not None and before.kind == "extract" else None
    return attrs.evolve(unit, memory=estimate_memory(unit.kind, unit.config, record=record) if record else 0)


def extraction_key(config: Mapping[str, Any]) -> tuple:
    """Cells whose activations are the same entries of the store (same model, settings,
    corpus and slice) share one extract unit."""
    return tuple(str(config.get(k)) for k in ("model", "task", "data_dir", "max_sentences", "aggregation", "device",
                                              "extract_batch_size", "extract_batch_tokens", "layers", "dtype", "site",
                                              "screen", "store_budget", "keep", "cache_dir"))


def plan_units(plan: Sequence[tuple[Any, Path]], resume: bool = False, cpus_per_unit: int = 0,
               argv: Sequence[str] = (), shards: int = 1, model_gpus: float = 1.0,
               memory: Callable[[str, Any], int | None] | None = None) -> list[Unit]:
    """The graph of a planned run (``plan``: (RunConfig, run directory) per cell), in an
    order that runs every unit after the units it depends on: a cell's units together, as
    the local executor runs them. ``cpus_per_unit`` 0: the units take the whole machine's
    threads (one at a time). With a CUDA ``--device`` the units that run the model (the
    extraction, the finish unit with ``--causal``) ask for ``model_gpus`` GPUs, the probes'
    units (search, seeds) for one, the finish unit otherwise for none (it reads steps and
    renders the report). ``shards`` > 1 (``--extract-shards``): each extraction is that
    many shard units, then an extract unit that seals the store entries they wrote (no
    model, no GPU). ``memory(kind, config)``: the bytes a unit declares, or None for
    search and seed units whose estimate waits for the stored shapes (:func:`sized`)."""
    from neuroscope.orchestrator import cell_steps

    declare = memory or (lambda kind, config: 0)
    units: list[Unit] = []
    extracts: dict[tuple, str] = {}
    for config, run_dir in plan:
        data = config.to_json()
        cuda = str(config.device).startswith("cuda")
        gpus, model = (1.0, float(model_gpus)) if cuda else (0.0, 0.0)
        key = extraction_key(data)
        if key not in extracts:
            extracts[key] = f"extract {config.model} x {config.task}"
            mem = declare("extract", config)
            parts = [Unit(f"{extracts[key]} shard {i + 1}/{shards}", "extract", data, cpus=cpus_per_unit, gpus=model,
                          argv=tuple(argv), shard=(i, shards), memory=mem) for i in range(shards)] if shards > 1 else []
            units += parts
            units.append(Unit(extracts[key], "extract", data, after=tuple(u.id for u in parts), cpus=cpus_per_unit,
                              gpus=0.0 if parts else model, argv=tuple(argv), memory=0 if parts else mem))
        name = Path(run_dir).name
        search = Unit(f"search {name}", "search", data, str(run_dir), resume, (extracts[key],), cpus_per_unit, gpus,
                      tuple(argv), memory=declare("search", config))
        seeds = [Unit(f"seed {seed} {name}", "seed", data, str(run_dir), True, (search.id,), cpus_per_unit, gpus,
                      tuple(argv), seed, memory=declare("seed", config))
                 for kind, seed in cell_steps(config) if kind == "seed"]
        finish = Unit(f"finish {name}", "finish", data, str(run_dir), True, tuple(u.id for u in seeds), cpus_per_unit,
                      model if config.causal else 0.0, tuple(argv),  # results and report: no GPU unless --causal
                      memory=declare("finish", config))
        units += [search, *seeds, finish]
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
        with atomic_path(target) as tmp:
            tmp.write_bytes(files[name])


def run_unit(unit: Unit, files: Mapping[str, bytes] | None = None, quiet: bool = True,
             reporter: Any = None, orchestrator: Any = None, name_node: bool = False) -> UnitOutcome:
    """Run one unit here. ``files`` None: a cell's unit writes its run directory in place
    (the driver's own process); a mapping (possibly empty): it works in a private directory
    seeded with those files (the run directory's, at the time the unit was submitted) and
    returns what it wrote. A user error (bad data, a missing checkpoint, ...) is a failed
    outcome with its one-line message; anything else (a bug, a dying machine) propagates,
    so that the executor may retry. ``orchestrator``: one shared by the units an executor
    runs in this process (it keeps the last corpus read), else a new one. ``name_node``: a
    failed unit's message ends with the node it ran on (units run on a cluster's nodes)."""
    from neuroscope.orchestrator import Orchestrator, activation_record
    from neuroscope.settings import RunConfig
    from neuroscope.progress import Reporter
    from neuroscope.registry import Registry

    start = time.perf_counter()
    config = RunConfig.from_json(unit.config)
    reporter = reporter or Reporter(quiet=quiet)
    try:
        with limit_threads(unit.cpus):
            orchestrator = orchestrator or Orchestrator(Registry(), reporter, list(unit.argv))
            if unit.kind == "extract":
                task, _ = orchestrator.task_of(config)
                with reporter.running():
                    if unit.shard is not None:
                        record = orchestrator.extract_shard(config, task, *unit.shard)
                    elif unit.activations and "shards" in unit.activations:
                        record = orchestrator.seal_shards(config, task, unit.activations["shards"])
                    else:
                        adapter, acts = orchestrator.extract_activations(config, task)
                        record = activation_record(adapter, acts, task)
                return UnitOutcome(unit.id, True, seconds=time.perf_counter() - start, activations=record,
                                   node=node_name())
            if files is None:
                with reporter.running():
                    orchestrator.run_step(config, Path(unit.run_dir), unit.kind, unit.seed, resume=unit.resume,
                                          activations=unit.activations)
                return UnitOutcome(unit.id, True, seconds=time.perf_counter() - start,
                                   timings=dict(orchestrator.timings), node=node_name())
            work = Path(tempfile.mkdtemp(prefix="neuroscope-unit-"))
            try:
                run_dir = work / Path(unit.run_dir).name
                if files:
                    run_dir.mkdir()
                    write_files(run_dir, files)
                orchestrator.run_step(config, run_dir, unit.kind, unit.seed, resume=unit.resume or bool(files),
                                      activations=unit.activations)
                written = {name: data for name, data in read_files(run_dir).items() if files.get(name) != data}
                return UnitOutcome(unit.id, True, files=written, seconds=time.perf_counter() - start,
                                   timings=dict(orchestrator.timings), node=node_name())
            finally:
                shutil.rmtree(work, ignore_errors=True)
    except NeuroscopeError as exc:
        message = f"{exc} (on node {node_name()})" if name_node else str(exc)
        return UnitOutcome(unit.id, False, message=message, seconds=time.perf_counter() - start, error=exc,
                           node=node_name())


Report = Callable[[Unit, UnitOutcome], None]


def not_run(unit: Unit, outcomes: Mapping[str, UnitOutcome]) -> UnitOutcome | None:
    """The failed outcome of ``unit`` when a unit it waits for failed (naming it and its
    message), else None: the unit may run."""
    failed = next((a for a in unit.after if a in outcomes and not outcomes[a].ok), None)
    if failed is None:
        return None
    cause = outcomes[failed]
    message = cause.message if cause.skipped else f"not run: {failed} failed ({cause.message})"
    return UnitOutcome(unit.id, False, message, skipped=True)


class GraphProgress:
    """What an executor running units in parallel shows: a line when a unit starts and when
    it ends, with the units done / running / waiting / failed in all and of its cell."""

    def __init__(self, units: Sequence[Unit], reporter: Any):
        self.reporter = reporter
        self.total = len(units)
        self.per_cell: dict[str, int] = {}
        for unit in units:
            self.per_cell[unit.run_dir] = self.per_cell.get(unit.run_dir, 0) + 1
        self.done: dict[str, int] = {}
        self.failed = 0

    def started(self, unit: Unit) -> None:
        if self.reporter is not None:
            self.reporter.log(f"started: {unit.id} ({unit.cpus} CPU{'s' if unit.cpus > 1 else ''}"
                              + (f", {unit.gpus:g} GPU" if unit.gpus else "")
                              + (f", {unit.memory / 1e9:.1f} GB" if unit.memory else "") + ")")

    def retried(self, unit: Unit, cause: str, attempt: int) -> None:
        """A unit submitted again after its worker or node died: one warning naming the
        unit, the attempt and the cause (shown by a --quiet run too)."""
        log.warning("retrying %s (attempt %d): %s", unit.id, attempt, cause)

    def finished(self, unit: Unit, outcome: UnitOutcome, running: int, waiting: int) -> None:
        self.done[unit.run_dir] = self.done.get(unit.run_dir, 0) + 1
        self.failed += not outcome.ok
        if self.reporter is None:
            return
        status = "done" if outcome.ok else ("not run" if outcome.skipped else "FAILED")
        cell = (f"; its cell {self.done[unit.run_dir]} of {self.per_cell[unit.run_dir]}"
                if unit.kind != "extract" else "")
        self.reporter.log(f"{status}: {unit.id} ({outcome.seconds:.0f} s){cell}; units done "
                          f"{sum(self.done.values())} of {self.total}, running {running}, waiting {waiting}, "
                          f"failed {self.failed}")


def cell_files(unit: Unit) -> dict[str, bytes] | None:
    """What a unit run away from the driver starts from: for a cell's unit the run
    directory's files (the steps of the units before it; none for a new run's first unit),
    for an extract unit None (it writes the shared store itself)."""
    if unit.kind == "extract":
        return None
    return read_files(Path(unit.run_dir)) if unit.resume else {}


class LocalExecutor:
    """Runs the units on this machine. By default in order, in this process, cells writing
    their run directories in place (today's loop, as a graph): the reference every other
    executor must equal. With ``cpus`` (``--cpus N``): up to N / ``--cpus-per-unit``
    (default 1) independent units at once in worker processes, each with its threads
    limited to its CPUs, the driver writing what they return."""

    def __init__(self, *, cpus: int | None = None, **options: Any):
        self.cpus = cpus
        self.options = options

    def run(self, units: Sequence[Unit], report: Report, reporter: Any = None) -> dict[str, UnitOutcome]:
        per_unit = max([u.cpus for u in units] + [1])
        if self.cpus and self.cpus // per_unit > 1:
            if reporter is None:
                return self._parallel(units, report, None, self.cpus // per_unit, lambda n: None)
            with reporter.running(), reporter.task(f"units ({len(units)})", len(units), "units") as advance:
                return self._parallel(units, report, reporter, self.cpus // per_unit, advance)
        from neuroscope.orchestrator import Orchestrator
        from neuroscope.progress import Reporter
        from neuroscope.registry import Registry

        outcomes: dict[str, UnitOutcome] = {}
        by_id = {u.id: u for u in units}
        shared = None  # one orchestrator for every unit: a cell's units read its corpus once
        for unit in units:
            if shared is None:
                try:
                    shared = Orchestrator(Registry(), reporter or Reporter(quiet=True), list(unit.argv))
                except NeuroscopeError:
                    pass  # run_unit reports it as the unit's failure
            unit = sized(attrs.evolve(unit, activations=handed_activations(unit, outcomes)), by_id, outcomes)
            outcome = not_run(unit, outcomes) or run_unit(unit, None, reporter=reporter, orchestrator=shared)
            outcomes[unit.id] = outcome
            report(unit, outcome)
        return outcomes

    def _parallel(self, units: Sequence[Unit], report: Report, reporter: Any, workers: int,
                  advance: Callable[[int], None]) -> dict[str, UnitOutcome]:
        """Each unit in a worker process once the units it waits for are done."""
        import concurrent.futures as cf
        import multiprocessing

        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=worker_dies_with, initargs=(os.getpid(),))

        def submit(unit: Unit) -> cf.Future:
            return pool.submit(run_unit, unit, cell_files(unit))

        def wait(futures: list) -> tuple[Any, UnitOutcome | Exception]:
            done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
            future = next(iter(done))
            try:
                return future, future.result()
            except Exception as exc:  # a worker that died (BrokenProcessPool) or a bug in the unit
                return future, exc

        try:
            outcomes = run_graph(units, report, submit, wait, GraphProgress(units, reporter), advance)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return outcomes


#: seconds a worker whose driver is gone has to unwind its unit before it exits
LEAVE_SECONDS = 5.0


def _leave(signum: int, frame: Any) -> None:
    """Unwind once, quietly: a second signal (Ctrl-C reaches the whole process group, the
    parent-death signal and the watcher each send one) must not interrupt the clean-up the
    first one started, and SystemExit prints no traceback."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def worker_dies_with(parent: int) -> None:
    """Initializer of the local executor's worker processes: they leave when the driver
    ``parent`` is gone (killed, even by SIGKILL) instead of running on, and leave cleanly:
    SIGTERM and Ctrl-C's SIGINT unwind the running unit (its private directory is removed)
    without a traceback of their own; the driver prints the one line."""
    import signal
    import threading

    signal.signal(signal.SIGINT, _leave)
    signal.signal(signal.SIGTERM, _leave)
    try:  # Linux: the kernel sends SIGTERM when the parent dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # elsewhere, if the parent died before prctl took effect, and to end for good
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # unwinds a running unit (its private directory is removed)
        time.sleep(LEAVE_SECONDS)  # the pool's worker loop catches that SystemExit and would wait on
        os._exit(143)  # its queue forever: the process ends once the unit has unwound

    threading.Thread(target=watch, daemon=True, name="neuroscope-parent-watch").start()


def error_line(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}"


@attrs.frozen
class Retried:
    """What an executor's ``wait`` gives for a unit whose worker or node died and that it
    submitted again: the new handle, why the attempt ended, and the attempt now running
    (2 for the first retry). :func:`run_graph` reports it and waits on the new handle."""

    handle: Any
    cause: str
    attempt: int


def run_graph(units: Sequence[Unit], report: Report, submit: Callable[[Unit], Any],
              wait: Callable[[list], tuple[Any, "UnitOutcome | Exception"]], progress: GraphProgress,
              advance: Callable[[int], None] = lambda n: None) -> dict[str, UnitOutcome]:
    """The scheduling loop of an executor running units in parallel: each unit is submitted
    (``submit(unit)`` -> a handle; units declaring no CPUs get 1, so that no unit takes a
    whole machine's threads) once the units it waits for have been reported, or reported
    not run when one of them failed; ``wait(handles)`` blocks until one has ended and gives
    (its handle, its outcome, the exception it ended with, or :class:`Retried` when the
    executor submitted it again). Returns every outcome, each with the causes of its
    retries."""
    outcomes: dict[str, UnitOutcome] = {}
    pending = list(units)
    by_id = {u.id: u for u in units}
    running: dict[Any, Unit] = {}
    retries: dict[str, list[str]] = {}
    while pending or running:
        for unit in list(pending):
            if any(a not in outcomes for a in unit.after):
                continue
            pending.remove(unit)
            skipped = not_run(unit, outcomes)
            if skipped:
                outcomes[unit.id] = skipped
                report(unit, skipped)
                progress.finished(unit, skipped, len(running), len(pending))
                advance(1)
                continue
            unit = sized(attrs.evolve(unit, cpus=unit.cpus or 1, activations=handed_activations(unit, outcomes)),
                         by_id, outcomes)
            running[submit(unit)] = unit
            progress.started(unit)
        if not running:
            if pending:  # only a unit waiting for one that is not in the plan
                raise NeuroscopeError(f"units wait for units not in the plan: {[u.id for u in pending]}")
            continue
        handle, ended = wait(list(running))
        unit = running.pop(handle)
        if isinstance(ended, Retried):
            retries.setdefault(unit.id, []).append(ended.cause)
            running[ended.handle] = unit
            progress.retried(unit, ended.cause, ended.attempt)
            continue
        if not isinstance(ended, UnitOutcome):
            ended = UnitOutcome(unit.id, False, error_line(ended))
        outcome = attrs.evolve(ended, retries=tuple(retries[unit.id])) if unit.id in retries else ended
        outcomes[unit.id] = outcome
        report(unit, outcome)
        progress.finished(unit, outcome, len(running), len(pending))
        advance(1)
    return outcomes
