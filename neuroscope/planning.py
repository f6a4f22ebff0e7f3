"""One way in: plan a ``neuroscope run`` (its cells, their run directories and units),
hand the units to the executor, collect the finished cells' results.

The command line (:mod:`neuroscope.cli`) and the Python API (:func:`neuroscope.run`)
both build a :class:`~neuroscope.settings.RunRequest` and call :func:`execute`; neither
plans or executes anything itself. Every setting is validated and every name resolved
(:func:`plan_runs`) before a model or a corpus is loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs

from neuroscope.choices import auto_search
from neuroscope.errors import NeuroscopeError, RunDirectoryError
from neuroscope.executors import Unit, UnitOutcome, plan_units, write_files
from neuroscope.cell import resolve_rankers
from neuroscope.loading import check_model_options, check_model_site, check_probe_options
from neuroscope.probe import reset_unconverged_note
from neuroscope.progress import Reporter
from neuroscope.registry import Registry
from neuroscope.results import load_results
from neuroscope.rundir import (State, check_usable, claim, free_name, read_json, settings_difference, state_of,
                               write_json)
from neuroscope.settings import PlanOptions, RunConfig, RunRequest, runtime_env_of

log = logging.getLogger("neuroscope")


#: settings that name the cell, or say where files are, not what is computed: never in a run's name
NAMING_FIELDS = ("model", "task", "probe", "site", "data_dir", "cache_dir")
#: a name's settings part longer than this becomes a short hash of the settings
MAX_SETTINGS_NAME = 40


def settings_name(config: RunConfig) -> str:
    """What a run's directory name says about its settings (docs/cli.md, "Run directories"):
    empty at the defaults; else the settings that differ from them, ``-precision-bfloat16``
    or ``-epochs-auto-seeds-1``, or, when that would be long, ``-s`` and 8 hex digits of
    their hash. Runs with different settings thus never share a default directory."""
    default = RunConfig(model=config.model, task=config.task, data_dir=config.data_dir, probe=config.probe,
                        site=config.site, cache_dir=config.cache_dir, search_method="auto")
    mine, theirs = config.to_json(), default.to_json()
    changed = {k: mine.get(k) for k in sorted(set(mine) | set(theirs))
               if k not in NAMING_FIELDS and mine.get(k) != theirs.get(k)}
    # the method --search auto gives these settings is not a setting of its own
    if config.search_method == auto_search(config.search, config.probe, config.epochs):
        changed.pop("search_method", None)
    elif "search_method" in changed:
        changed["search_method"] = config.search_method
    if not changed:
        return ""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return "_".join(shown(v) for v in value) if value else "none"
        return f"{value:g}" if isinstance(value, float) else str(value)

    if changed.get("seeds") == list(range(len(changed.get("seeds") or []))):  # as typed: --seeds N
        changed["seeds"] = len(changed["seeds"])
    text = "-".join(f"{key.replace('_', '')}-{shown(value)}" for key, value in changed.items())
    if len(changed) > 2 or len(text) > MAX_SETTINGS_NAME:
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode("utf-8")).hexdigest()[:8]
        return f"-s{digest}"
    return f"-{text}"


def default_run_dir(root: Path, config: RunConfig, with_probe: bool = False) -> Path:
    """``ROOT/<date>-<model>-<task>`` and the settings that differ from the defaults
    (:func:`settings_name`); ``-<probe>`` after the task when a run compares probes, and
    ``-site-<site>`` for a site other than the hidden states (before the settings, so
    ``runs/minilm-pos-site-mlp`` names the MLP run of the defaults)."""
    task = config.task
    if ":" in task:  # READER:LOCATION (neuroscope.corpus): the reader and the location's last part
        reader, _, location = task.partition(":")
        task = f"{reader}-{Path(location).name}"
    name = (f"{config.model}-{task}" + (f"-{config.probe}" if with_probe else "")
            + (f"-site-{config.site}" if config.site != "hidden" else "") + settings_name(config))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return root / f"{dt.date.today().isoformat()}-{safe}"


@attrs.frozen
class Plan:
    """A planned run: the registry its names resolved in, its options, and (settings, run
    directory) per model x task x probe cell."""

    registry: Registry
    options: PlanOptions
    cells: list[tuple[RunConfig, Path]]


def plan_runs(request: RunRequest) -> Plan:
    """The cells of ``request`` with their run directories; every name (models, tasks,
    probes, rankers, the executor) resolved, nothing loaded."""
    options = request.plan
    configs = request.configs()
    registry = Registry()
    for config in configs:
        model = registry.resolve_model(config.model)
        check_model_options(model)
        check_model_site(model, config.site)
        registry.resolve_task(config.task)
        check_probe_options(registry.resolve_probe(config.probe))
    resolve_rankers(registry, configs[0])  # each ranker's registry.toml options checked against what it takes
    registry.get("executors", options.executor)
    several_probes = len(options.probe) > 1
    cells = [(config, Path(options.out) if options.out else default_run_dir(options.runs_dir, config, several_probes))
             for config in configs]
    return Plan(registry, options, cells)


def reuse_finished(plan: Plan) -> tuple[Plan, dict[str, Path]]:
    """For a request that says nothing about resuming (the Python API, a notebook cell run
    again): a cell whose run directory already holds a finished run of the same settings and
    data is not run again (returned, by directory), an unfinished one is continued, and one
    with other settings or data is refused naming what differs. The plan of what is left to
    run, with ``resume`` on."""
    from neuroscope.loading import load_task
    from neuroscope.steps.data import data_summary, split_checksums

    todo, finished = [], {}
    for config, run_dir in plan.cells:
        if state_of(run_dir) is not State.RUN:
            todo.append((config, run_dir))
            continue
        saved = read_json(run_dir / "config.json", "run configuration")
        if not isinstance(saved, dict) or saved != config.to_json():
            difference = settings_difference(saved, config.to_json()) if isinstance(saved, dict) else "unreadable"
            raise RunDirectoryError(f"{run_dir} holds a run with other settings ({difference}); pass out= with a new "
                                    f"directory (e.g. out={str(free_name(run_dir))!r}), or change the settings back")
        task = load_task(plan.registry, config.task, Path(config.data_dir)).head(*config.max_sentences)
        recorded = split_checksums(read_json(run_dir / "steps" / "data.json", "data summary"))
        if recorded is None or recorded != split_checksums(data_summary(task)):
            raise RunDirectoryError(f"{run_dir}: the data changed since this run; pass out= with a new directory "
                                    f"(e.g. out={str(free_name(run_dir))!r}) for a run on the new data")
        try:
            load_results(run_dir)
        except NeuroscopeError:  # unfinished (or its results damaged): continued, results written again
            todo.append((config, run_dir))
            continue
        finished[str(run_dir)] = run_dir
    return attrs.evolve(plan, cells=todo, options=attrs.evolve(plan.options, resume=True)), finished


def unit_name(unit: Unit) -> str:
    """A unit's name in its cell's timings.json: ``extract`` (``extract-shard-2`` for the
    second shard), ``search``, ``seed-N``, ``finish``."""
    if unit.kind == "extract":
        return "extract" if unit.shard is None else f"extract-shard-{unit.shard[0] + 1}"
    return f"seed-{unit.seed}" if unit.kind == "seed" else unit.kind


def record_driver_timings(run_dir: Path, extraction: dict[str, tuple[float, str | None]] | None,
                          resources: dict[str, dict[str, Any]], retries: dict[str, list[str]] | None) -> None:
    """Put into a finished cell's timings.json what only the driver knows, in one update:
    the extract unit the cell waited for (``extraction``: each unit's name, ``extract`` and
    with ``--extract-shards`` its shards ``extract-shard-N``, with its seconds and node; the
    cell's own units found the activations in the store) as ``extraction`` (their sum: the
    work, not the wall time), ``units`` and ``nodes``, added to ``total``; what each unit
    declared to the executor as ``resources`` (CPUs, GPUs, bytes of memory); and the
    retried units as ``retries``, per unit (as named under ``units``) why each earlier
    attempt ended (a worker or node that died). Cells sharing one extraction each show it."""
    path = run_dir / "timings.json"
    timings = read_json(path, "timings")
    if extraction:
        names = sorted(extraction, key=lambda n: (n == "extract", len(n), n))  # the shards in order, then extract
        timings["extraction"] = round(sum(seconds for seconds, _ in extraction.values()), 3)
        timings["units"] = {**{name: extraction[name][0] for name in names}, **timings["units"]}
        timings["nodes"] = {**{name: extraction[name][1] for name in names}, **timings.get("nodes", {})}
        timings["total"] = round(sum(timings["units"].values()), 3)
    timings["resources"] = resources
    if retries:
        timings["retries"] = retries
    write_json(path, timings)


def unit_memory(plan: Plan) -> Callable[[str, RunConfig], int | None]:
    """What each kind of unit of ``plan`` declares as memory (``--unit-memory``; estimated
    from the model's weight files for extraction and ``--causal``; None for the search
    and seed units whose estimate waits for the stored shapes)."""
    from neuroscope.resources import declared_memory, model_weight_bytes, parse_unit_memory

    overrides = parse_unit_memory(plan.options.unit_memory)
    weights: dict[str, int | None] = {}

    def memory(kind: str, config: RunConfig) -> int | None:
        if kind in ("search", "seed"):
            return overrides.get(kind)
        if kind not in overrides and config.model not in weights:
            weights[config.model] = model_weight_bytes(plan.registry, config.model)
        return declared_memory(kind, config.to_json(), overrides, weights.get(config.model))

    return memory


def execute(plan: Plan, reporter: Reporter, argv: Sequence[str] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Run ``plan``'s units through its executor; (run directory, results) per finished
    cell. The driver writes every run directory. With several cells, a failed one does not
    stop the others; the error at the end counts them. ``argv`` is the command recorded in
    each manifest (default: this process's). Each finished cell's summary goes to
    ``reporter`` (at once when units run one at a time, else after the live display)."""
    options = plan.options
    reset_unconverged_note()  # each run explains an unconverged probe once
    cores = os.cpu_count() or 1
    if options.executor == "local" and options.cpus and options.cpus > cores:
        log.warning("--cpus %d is more than this machine's %d cores: the units will share them", options.cpus, cores)
    extra: dict[str, Any] = {"runtime_env": runtime_env_of(options.runtime_env)} if options.runtime_env else {}
    if options.placement != "data":
        extra["placement"] = options.placement
    executor = plan.registry.get("executors", options.executor).obj(address=options.address, cpus=options.cpus,
                                                                    **extra)
    for _, run_dir in plan.cells:  # a directory that may not be used fails before anything runs
        check_usable(run_dir, options.resume)
    units = plan_units(plan.cells, options.resume, options.cpus_per_unit, sys.argv if argv is None else argv,
                       options.extract_shards, options.model_gpus, unit_memory(plan))
    by_dir = {str(run_dir): config for config, run_dir in plan.cells}
    failures: list[tuple[Unit, UnitOutcome]] = []
    done: list[tuple[Path, dict[str, Any]]] = []
    retried: dict[str, dict[str, list[str]]] = {}  # run directory -> unit -> why each earlier attempt ended
    extracted: dict[str, dict[str, tuple[float, str | None]]] = {}  # extract unit -> its (and its shards') seconds
    extract_of = {u.run_dir: u.after[0] for u in units if u.kind == "search"}  # run directory -> its extract unit
    shard_of = {shard: e.id for e in units if e.kind == "extract" for shard in e.after}  # shard -> its extract unit
    declared: dict[str, dict[str, dict[str, Any]]] = {}  # extract unit or run directory -> unit -> its resources
    # units in parallel drive a live progress display: summaries after it
    immediate = options.executor == "local" and (options.cpus or 1) // max(1, options.cpus_per_unit) <= 1

    def summarise(run_dir: Path, results: dict[str, Any]) -> None:
        config = by_dir[str(run_dir)]
        reporter.summary(f"{config.model} x {config.task}", config.deltas, results, run_dir)

    def report(unit: Unit, outcome: UnitOutcome) -> None:
        if outcome.ok and (outcome.timings or {}).get("re-extraction"):  # workers run quietly: the driver says it
            log.warning("%s extracted the activations again on node %s (%.0f s): that node's cache lacked them",
                        unit.id, outcome.node, outcome.timings["re-extraction"])
        if outcome.retries:  # by the cell's unit name in timings.json; an extract unit's in each of its cells
            extract = shard_of.get(unit.id, unit.id)
            for cell in ([d for d, e in extract_of.items() if e == extract] if unit.kind == "extract"
                         else [unit.run_dir]):
                retried.setdefault(cell, {})[unit_name(unit)] = list(outcome.retries)
        if outcome.ok and unit.kind != "extract" and outcome.files is not None:
            with claim(Path(unit.run_dir)):  # computed elsewhere: the driver writes the run directory
                write_files(Path(unit.run_dir), outcome.files)
        name = unit_name(unit)
        declared.setdefault(shard_of.get(unit.id, unit.id) if unit.kind == "extract" else unit.run_dir, {})[name] = {
            "cpus": unit.cpus, "gpus": unit.gpus, "memory": unit.memory or 0}
        if outcome.ok and unit.kind == "extract":
            extracted.setdefault(shard_of.get(unit.id, unit.id), {})[name] = (round(outcome.seconds, 3), outcome.node)
        if outcome.ok and unit.kind == "finish":
            run_dir = Path(unit.run_dir)
            extract = extract_of[unit.run_dir]
            with claim(run_dir):
                record_driver_timings(run_dir, extracted.get(extract),
                                      {**declared.get(extract, {}), **declared.get(unit.run_dir, {})},
                                      retried.get(unit.run_dir))
            results = load_results(run_dir)
            if immediate:
                summarise(run_dir, results)
            done.append((run_dir, results))
        elif not outcome.ok and not outcome.skipped:  # the units after a failed one are not run: one cause
            failures.append((unit, outcome))
            if len(plan.cells) > 1:
                log.error("%s: %s failed: %s", unit.cell, unit.id, outcome.message)

    executor.run(units, report, reporter)
    if not immediate:
        for run_dir, results in done:
            summarise(run_dir, results)
    if failures:
        unit, first = failures[0]  # the first failure is the cause of those that were not run after it
        if len(plan.cells) == 1:  # one cell: its error, as it always was
            raise first.error if isinstance(first.error, NeuroscopeError) else NeuroscopeError(first.message)
        raise NeuroscopeError(f"{len(failures)} of {len(units)} units failed ({', '.join(u.id for u, _ in failures)}; "
                              f"the units after them were not run); {len(done)} of {len(plan.cells)} run directories "
                              "finished")
    return done
