"""The orchestrator: resolves names, runs the protocol's steps for one model x
task cell and writes its run directory (DESIGN.md, layer 2). It knows steps,
not models.

Steps, each written to ``RUN_DIR/steps/`` when finished so that ``--resume``
continues an interrupted run from the last finished one:

1. ``data.json`` - the task's splits, checksums and label statistics;
2. activations - in the shared activation store (resumable on their own), their
   store handles in ``activations.json``;
3. ``lambda-search.json`` - the (l1, l2) grid scored by S on dev (section 2,
   "Search"), with the first seed; skipped when lambdas are given or no ranker
   reads the probe;
4. per seed: ``seed-N.json`` + ``seed-N-probe.npz`` (the oracle probe); per
   ranker R ``seed-N-R.json`` (ranking, ablations: Table 1; keep/remove-top
   curves) and ``seed-N-R-minimal.json`` (minimal neuron sets per delta: Tables
   2, 3); ``seed-N-control.json`` (control task, selectivity of every ranker);
5. ``results.json``, ``manifest.json``, ``tables.md``, figures, ``report.html``.

The steps after the extraction are the cell's units of work (:func:`cell_steps`):
``search`` (1-3), one ``seed`` unit per seed (4; independent of each other), and
``finish`` (5). Each takes the run's settings and directory, rebuilds its
:class:`CellContext` from them, and leaves its results as files there, so an
executor may run the seeds of a cell on different machines
(:mod:`neuroscope.executors`); :meth:`Orchestrator.run` runs them in order.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import numpy as np

from neuroscope.ablation import UNSEEN_RULES
from neuroscope.analyses import analyse
from neuroscope.causal import MODES as CAUSAL_MODES
from neuroscope.causal import POSITIONS as CAUSAL_POSITIONS
from neuroscope.causal import InterventionUnsupported, causal_ablation, removal_sets, summarise_causal
from neuroscope.comparison import compare_rankings
from neuroscope.errors import NeuroscopeError, RegistryError, RunDirectoryError, ValidationError
from neuroscope.manifest import build_manifest
from neuroscope.minimal import MinimalScan, minimal_neuron_scan
from neuroscope.model import AGGREGATIONS, ModelAdapter, parse_layers, resolve_device
from neuroscope.probe import L2_FORMS, PRECISIONS, TrainSettings
from neuroscope.progress import Reporter
from neuroscope.rankers import RankerInputs, call_ranker, info_of
from neuroscope.ranking import Ranking
from neuroscope.registry import Registry
from neuroscope.report import render_report
from neuroscope.results import NEURON_ID_LAYOUT, RESULTS_SCHEMA_VERSION, mean_std
from neuroscope.rundir import State, check_usable, claim, read_arrays, read_json
from neuroscope.search import DEFAULT_MEMORY, PAPER_VALUES, LambdaSearch, group_size, lambda_grid, lambda_search
from neuroscope.steps import (SeedResult, check_task, control_step, data_summary, extract, fit_oracle, load_model,
                              load_task, majority_baseline, rank_and_ablate, restore_probe)
from neuroscope.store import ActivationStore, labels_to_ids
from neuroscope.types import NeuronIndex, TaskData
from neuroscope.validation import check_choice, check_number

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("NEUROSCOPE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neuroscope"


def default_data_dir() -> Path:
    env = os.environ.get("NEUROSCOPE_DATA")
    return Path(env) if env else default_cache_dir() / "data"


#: the largest lambda accepted: the paper's grid tops out at 0.1, and at 1 the penalty
#: on a few thousand weights already dwarfs the mean cross-entropy
MAX_LAMBDA = 1.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_bytes(value: Any) -> Any:
    """Byte counts may arrive as floats (GiB x 2**30); non-finite values pass through to validation."""
    return int(value) if _is_number(value) else value


@attrs.frozen
class RunConfig:
    """The fully resolved settings of one model x task cell (written to config.json).

    Defaults are the paper's: lambdas chosen by the 8 x 8 grid search with
    alpha = beta = 0.5 and M = 20 %, deltas 0.5 and 2, 3 seeds, 1 % scan steps.
    ``l1``/``l2`` set both fix the lambdas and skip the search.
    """

    model: str
    task: str
    data_dir: str
    seeds: tuple[int, ...] = (0, 1, 2)
    l1: float | None = None
    l2: float | None = None
    grid: tuple[float, ...] = PAPER_VALUES
    alpha: float = 0.5
    beta: float = 0.5
    fraction: float = 0.2
    deltas: tuple[float, ...] = (0.5, 2.0)
    scan_step: float = 0.01
    scan_block: int = 8
    control: bool = True
    aggregation: str = "last"
    device: str = "auto"
    epochs: int | str = 10
    lr: float = 1e-3
    batch_size: int = 512
    extract_batch_size: int = 32
    probe: str = "elastic-net"
    rankers: tuple[str, ...] = ("weight-mass",)
    stride: int = 100
    unseen_labels: str = "error"
    max_sentences: tuple[int | None, int | None, int | None] = (None, None, None)
    grid_memory: int = attrs.field(default=DEFAULT_MEMORY, converter=lambda v: _as_bytes(v))
    shuffle: bool = True
    l2_form: str = "squared"
    precision: str = "float32"
    cache_dir: str = ""
    causal: bool = False
    causal_mode: str = "zero"
    causal_positions: str = "words"
    layers: tuple[int, ...] = ()
    dtype: str = "float32"

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse every value the protocol cannot use, naming the command-line option,
        before anything is loaded (docs/cli.md, "Allowed values")."""
        check_choice("--aggregation", self.aggregation, AGGREGATIONS)
        check_choice("--unseen-labels", self.unseen_labels, UNSEEN_RULES)
        check_choice("--l2-form", self.l2_form, L2_FORMS)
        check_choice("--precision", self.precision, tuple(PRECISIONS))
        check_choice("--causal-mode", self.causal_mode, CAUSAL_MODES)
        check_choice("--causal-positions", self.causal_positions, CAUSAL_POSITIONS)
        check_choice("--dtype", self.dtype, ("float32", "bfloat16", "float16"))
        try:
            parse_layers(self.layers)
        except NeuroscopeError as exc:
            raise ValidationError(str(exc)) from None
        try:
            resolve_device(self.device)
        except NeuroscopeError as exc:
            raise ValidationError(f"--device: {exc}") from None
        if not self.seeds:
            raise ValidationError("--seeds: expected an integer >= 1 (the number of seeds)")
        if not self.rankers or len(set(self.rankers)) != len(self.rankers):
            raise ValidationError(f"--ranker: expected one or more different ranker names, got {list(self.rankers)}")
        for seed in self.seeds:
            check_number("seed", seed, low=0, integer=True)
        if (self.l1 is None) != (self.l2 is None):
            raise ValidationError("give both --l1 and --l2 to fix the lambdas, or neither to search them")
        for name, value in (("--l1", self.l1), ("--l2", self.l2)):
            if value is not None:
                check_number(name, value, low=0, high=MAX_LAMBDA)
        if not self.grid:
            raise ValidationError("--grid: expected one or more lambda values")
        for value in self.grid:
            check_number("--grid", value, low=0, high=MAX_LAMBDA)
        check_number("--alpha", self.alpha, low=0)
        check_number("--beta", self.beta, low=0)
        if self.alpha == 0 and self.beta == 0:
            raise ValidationError("--alpha and --beta are both 0, so the lambda search's score S is always 0; "
                                  "give at least one of them a positive weight")
        check_number("--fraction", self.fraction, low=0, high=1, low_open=True, high_open=True)
        if not self.deltas:
            raise ValidationError("--deltas: expected one or more accuracy margins")
        for value in self.deltas:
            check_number("--deltas", value, low=0, high=100)
        check_number("--scan-step", self.scan_step, low=0, high=1, low_open=True)
        check_number("--scan-block", self.scan_block, low=1, integer=True)
        if self.epochs != "auto":
            check_number("--epochs", self.epochs, low=1, integer=True)
        check_number("--lr", self.lr, low=0, high=1, low_open=True)
        check_number("--batch-size", self.batch_size, low=1, integer=True)
        check_number("--extract-batch-size", self.extract_batch_size, low=1, integer=True)
        check_number("--stride", self.stride, low=1, integer=True)
        check_number("--grid-memory", self.grid_memory / 2**30 if _is_number(self.grid_memory) else self.grid_memory,
                     low=1 / 1024)
        if len(self.max_sentences) != 3:
            raise ValidationError("--max-sentences: expected N or TRAIN,DEV,TEST")
        for split, value in zip(("train", "dev", "test"), self.max_sentences):
            if value is not None:
                check_number(f"--max-sentences ({split})", value, low=1, integer=True)

    @property
    def search(self) -> bool:
        return self.l1 is None

    def rows_trained(self, n_train: int, trainings: int = 1) -> int | None:
        """Rows a progress bar counts for ``trainings`` probe trainings (unknown with --epochs auto)."""
        return None if self.epochs == "auto" else self.epochs * n_train * trainings

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        for key in ("seeds", "max_sentences", "grid", "deltas", "rankers"):
            data[key] = list(getattr(self, key))
        # settings at their defaults that older neuroscope did not have stay out of config.json, so
        # a run without them keeps the config.json (and resumability) it always had
        if not self.causal:
            for key in ("causal", "causal_mode", "causal_positions"):
                del data[key]
        if not self.layers:
            del data["layers"]
        else:
            data["layers"] = list(self.layers)
        if self.dtype == "float32":
            del data["dtype"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunConfig":
        """The settings :meth:`to_json` wrote (settings it leaves out take their defaults)."""
        data = dict(data)
        for key in ("seeds", "max_sentences", "grid", "deltas", "rankers", "layers"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def probe_params(self, l1: float, l2: float) -> dict[str, Any]:
        return {"l1": l1, "l2": l2, "lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs,
                "device": self.device, "shuffle": self.shuffle, "l2_form": self.l2_form, "precision": self.precision}

    def settings(self, seed: int) -> TrainSettings:
        return TrainSettings(self.lr, self.batch_size, self.epochs, seed, self.device, self.shuffle, self.l2_form,
                             self.precision)


@attrs.frozen
class _Weights:
    """A probe as far as a probe-based ranker sees it, for the lambda search's grid probes."""

    coef_: np.ndarray


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


#: a cell's units after its extraction, in the order the local executor runs them
STEP_KINDS = ("search", "seed", "finish")


def cell_steps(config: RunConfig) -> list[tuple[str, int | None]]:
    """The units of one cell after the extraction, in order: the lambda search, one unit per
    seed (independent of each other), then the results and report (docs/distributed.md)."""
    return [("search", None), *(("seed", seed) for seed in config.seeds), ("finish", None)]


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


#: the lambda search's chosen probe, in the run's steps/ directory
SEARCH_PROBE = "lambda-search-probe.npz"
#: the cell's activation store handles and device, in steps/ (written by its first unit)
ACTIVATIONS = "activations.json"
#: each unit's step timings, merged into timings.json by the cell's last unit
TIMINGS_DIR = "timings"


def check_causal_support(config: "RunConfig", adapter: ModelAdapter) -> None:
    """Refuse --causal, before anything is extracted or trained, for an adapter that
    cannot intervene in its forward pass."""
    if config.causal and getattr(type(adapter), "intervene", None) is ModelAdapter.intervene:
        raise InterventionUnsupported(f"--causal: model adapter {adapter.name!r} cannot remove neurons inside its "
                                      "forward pass (it does not implement intervene(); docs/plugins.md)")


def default_run_dir(root: Path, model: str, task: str, probe: str | None = None) -> Path:
    """``ROOT/<date>-<model>-<task>`` (``-<probe>`` appended when a run compares probes)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}-{task}" + (f"-{probe}" if probe else ""))
    return root / f"{dt.date.today().isoformat()}-{safe}"


def write_json(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, then rename: never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


class Orchestrator:
    """Runs cells of the plan; one Registry, one activation store, one reporter."""

    def __init__(self, registry: Registry, reporter: Reporter, argv: list[str] | None = None):
        self.registry = registry
        self.reporter = reporter
        self.argv = list(sys.argv if argv is None else argv)
        #: wall seconds per step of the current unit (None: reused from an earlier run), for timings.json
        self.timings: dict[str, float | None] = {}
        self._tasks: dict[tuple, tuple[TaskData, dict[str, Any]]] = {}

    def _step(self, path: Path, compute: Callable[[], Any], label: str, quiet: bool = False) -> Any:
        """Load a finished step, or compute and write it. ``quiet``: a unit reading the steps
        of the units before it (no log line, no timing)."""
        if path.is_file():
            if not quiet:
                self.reporter.log(f"{label}: reusing finished step {path.name}")
                self.timings[path.stem] = None
            return read_json(path, "step file")
        start = time.perf_counter()
        data = compute()
        self.timings[path.stem] = round(time.perf_counter() - start, 3)
        write_json(path, data)
        return data

    def _prepare(self, config: RunConfig, run_dir: Path, resume: bool, data: dict[str, Any], write: bool = True
                 ) -> Path:
        """Write config.json and steps/data.json into the claimed ``run_dir`` (``write``: the
        cell's first unit; the others find them there); a resumed run must have the same
        settings and data."""
        steps_dir = run_dir / "steps"
        config_path = run_dir / "config.json"
        if check_usable(run_dir, resume) is State.RUN or not write:
            saved = read_json(config_path, "run configuration")
            if saved != config.to_json():
                diff = sorted(k for k in set(saved) | set(config.to_json())
                              if saved.get(k) != config.to_json().get(k))
                raise RunDirectoryError(f"{run_dir}: cannot resume with different settings ({', '.join(diff)})")
            saved = read_json(steps_dir / "data.json", "data summary")
            if {k: v["sha256"] for k, v in saved["splits"].items()} != \
                    {k: v["sha256"] for k, v in data["splits"].items()}:
                raise RunDirectoryError(f"{run_dir}: the data changed since this run started; start a new run")
        if write:
            steps_dir.mkdir(parents=True, exist_ok=True)
            write_json(config_path, config.to_json())
            write_json(steps_dir / "data.json", data)
        return steps_dir

    def run(self, config: RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
        """Run one model x task cell into ``run_dir``: its units (:func:`cell_steps`) in
        order, as the local executor runs them. The directory is created once the data is
        read and locked while a unit writes it."""
        results: dict[str, Any] = {}
        for kind, seed in cell_steps(config):
            results = self.run_step(config, run_dir, kind, seed, resume=resume or kind != "search")
        return results

    def run_step(self, config: RunConfig, run_dir: Path, kind: str, seed: int | None = None,
                 resume: bool = False) -> dict[str, Any]:
        """One unit of a cell (``kind`` of :data:`STEP_KINDS`; ``seed`` for a seed unit), with
        ``run_dir`` claimed while it writes; the units before it must have finished (their
        files are in ``run_dir``). Returns the results for ``finish``, else {}."""
        run_dir = Path(run_dir)
        check_choice("unit", kind, STEP_KINDS)
        started = time.perf_counter()
        self.timings = {}
        check_usable(run_dir, resume)
        task, data = self.task_of(config)
        with claim(run_dir):
            cell = self.open_cell(config, run_dir, task, data, first=kind == "search", resume=resume)
            if kind == "search":
                self.search(cell)
                self._write_timings(cell, "search", started)
                return {}
            if kind == "seed":
                self.seed(cell, self.lambdas(cell), int(seed))  # type: ignore[arg-type]
                self._write_timings(cell, f"seed-{seed}", started)
                return {}
            results = self.finish(cell)
            self._write_timings(cell, "finish", started, merged=True)
            return results

    def task_of(self, config: RunConfig) -> tuple[TaskData, dict[str, Any]]:
        """The cell's task (its slice, checked) and data summary; the units of a cell run by
        this orchestrator read the corpus once (the last one read is kept)."""
        key = (config.task, config.data_dir, config.max_sentences)
        if key not in self._tasks:
            task = load_task(self.registry, config.task, Path(config.data_dir)).head(*config.max_sentences)
            check_task(task)
            self._tasks = {key: (task, data_summary(task))}
        return self._tasks[key]

    def open_cell(self, config: RunConfig, run_dir: Path, task: TaskData, data: dict[str, Any], first: bool,
                  resume: bool) -> CellContext:
        """The cell's context. The first unit writes config.json, steps/data.json and the
        activations' handles (extracting what the store lacks); the others check that the
        settings and data are the run's and open the activations by those handles."""
        steps_dir = self._prepare(config, run_dir, resume, data, write=first)
        if first:
            for split, stats in data["splits"].items():
                if stats["unseen_labels"]:
                    log.warning("%s: %d %s tokens carry labels unseen in train %s (rule: %s)", config.task,
                                sum(stats["unseen_labels"].values()), split, sorted(stats["unseen_labels"]),
                                config.unseen_labels)
            adapter, acts = self.extract_activations(config, task)
            handles = {name: {"path": str(a.path), "key": a.manifest["key"], "shape": list(a.shape),
                              "identity": a.manifest["identity"]} for name, a in acts.items()}
            device = adapter.device_name()
            write_json(steps_dir / ACTIVATIONS, {"device": device, "splits": handles})
        else:
            saved = read_json(steps_dir / ACTIVATIONS, "record of the run's activations")
            handles, device = saved["splits"], saved["device"]
            acts = self._open_activations(config, task, handles)

        probe_resolved = self.registry.resolve_probe(config.probe)
        probe_cls = probe_resolved.entry.obj
        if getattr(probe_cls, "train_many", None) is None:
            raise NeuroscopeError(f"probe {config.probe!r} has no train_many(); the protocol's lambda search, "
                                  "minimal-set scan and control task need it (docs/plugins.md)")
        template = probe_cls(**{**config.probe_params(0.0, 0.0), **probe_resolved.options})
        trainer = template.trainer() if hasattr(template, "trainer") else probe_cls.train_many
        if "l1" not in getattr(probe_cls, "penalties", ("l1", "l2")) and config.l1:
            raise ValidationError(f"--l1: probe {config.probe!r} takes no L1 penalty; use --l1 0")
        rankers = self._rankers(config)
        classes = np.asarray(task.labels)
        gold = {name: labels_to_ids(task.splits[name].labels(), classes) for name in task.splits}
        # the search scores lambdas by the ranking they give (S); it needs a ranker that reads the probe
        searcher = next((name for name, (fn, _) in rankers.items() if "probe" in info_of(fn).needs), None)
        return CellContext(config, run_dir, steps_dir, task, data, handles, device, acts, gold, acts["train"].index,
                           probe_cls, dict(probe_resolved.options), trainer, rankers, searcher)

    def load_adapter(self, config: RunConfig) -> ModelAdapter:
        return load_model(self.registry, config.model, config.device, config.aggregation, config.extract_batch_size,
                          config.layers, config.dtype)

    def extract_activations(self, config: RunConfig, task: TaskData) -> tuple[ModelAdapter, dict[str, Any]]:
        """Step 2: the model, and every split's activations from the store, extracted where
        it lacks them (an extract unit, or the cell's first unit). --causal with an adapter
        that cannot intervene is refused before anything is extracted."""
        adapter = self.load_adapter(config)
        check_causal_support(config, adapter)
        start = time.perf_counter()
        acts = extract(ActivationStore(Path(config.cache_dir) / "activations"), adapter, task, self.reporter.task)
        self.timings["extraction"] = round(time.perf_counter() - start, 3)
        return adapter, acts

    def _open_activations(self, config: RunConfig, task: TaskData, handles: dict[str, Any]) -> dict[str, Any]:
        """The activations the cell's first unit recorded, from this machine's store; a store
        without them (a node without the shared --cache-dir) gets them extracted again."""
        store = ActivationStore(Path(config.cache_dir) / "activations")
        if all((store.path_for(h["key"]) / "manifest.json").is_file() for h in handles.values()):
            return {name: store.open(handle["key"]) for name, handle in handles.items()}
        self.reporter.log(f"activations of {config.model} x {config.task} are not in {store.root} here: extracting")
        _, acts = self.extract_activations(config, task)
        if {name: a.manifest["key"] for name, a in acts.items()} != {n: h["key"] for n, h in handles.items()}:
            raise RunDirectoryError(f"the activations of {config.model} x {config.task} extracted here differ from "
                                    "the run's (another model version or settings?); start a new run")
        return acts

    def search(self, c: CellContext) -> None:
        """Step 3: the (l1, l2) grid scored by S on dev with the first seed (paper section 2,
        "Search"), when the lambdas are not given and a ranker reads the probe's weights."""
        config = c.config
        if not config.search or c.searcher is None:
            if config.search:
                self.reporter.log("no ranker reads the probe's weights: lambda search skipped, evaluation probe "
                                  "unregularised (pass --l1/--l2 to choose)")
            return
        fn, options = c.rankers[c.searcher]
        l1_allowed = "l1" in getattr(c.probe_cls, "penalties", ("l1", "l2"))
        n_classes = len(c.task.labels)

        def coef_ranker(coef: np.ndarray) -> Ranking:
            return call_ranker(fn, RankerInputs(c.acts["train"], c.gold["train"], c.task.labels, c.index,
                                                config.seeds[0], _Weights(coef), c.shared, config.fraction),
                               **options)

        def search() -> dict[str, Any]:
            grid = [pair for pair in lambda_grid(config.grid) if l1_allowed or pair[0] == 0]
            n_settings = len(grid) + (0 if (0.0, 0.0) in grid else 1)
            n_groups = -(-n_settings // group_size(c.index.n_neurons, n_classes, n_settings, config.grid_memory))
            rows = config.rows_trained(c.acts["train"].n_tokens, n_groups)
            with self.reporter.task(f"lambda grid ({len(grid)} pairs)", rows) as advance:
                found = lambda_search(c.acts["train"], c.gold["train"], c.acts["dev"], c.gold["dev"], n_classes,
                                      grid, config.settings(config.seeds[0]), coef_ranker, {}, config.fraction,
                                      config.alpha, config.beta, config.unseen_labels, config.grid_memory, advance,
                                      c.trainer)
            if found.best_probe is not None:
                np.savez_compressed(c.steps_dir / SEARCH_PROBE, coef=found.best_probe[0],
                                    intercept=found.best_probe[1])
            return found.to_json()

        self._step(c.steps_dir / "lambda-search.json", search, "lambda search")

    def lambdas(self, c: CellContext) -> Lambdas:
        """The lambdas the search unit chose (or those given, or none when no ranker reads the probe)."""
        config = c.config
        if config.search and c.searcher is not None:
            path = c.steps_dir / "lambda-search.json"
            if not path.is_file():
                raise RunDirectoryError(f"{path}: missing; the cell's lambda search has not run (continue with "
                                        "--resume)")
            searched = LambdaSearch.from_json(read_json(path, "step file"))
            return Lambdas(searched, *searched.best, "search")
        if config.search:  # the probe only evaluates, unregularised (docs/ranking.md)
            return Lambdas(None, 0.0, 0.0, "unregularised (no probe-based ranker)")
        return Lambdas(None, float(config.l1), float(config.l2), "fixed")  # type: ignore[arg-type]

    def finish(self, c: CellContext) -> dict[str, Any]:
        """Step 5: every seed's results (from their finished steps), the causal ablation when
        asked, results.json, manifest.json, tables, figures and report.html."""
        config = c.config
        lambdas = self.lambdas(c)
        seeds = [self.seed(c, lambdas, seed, reuse_quietly=True) for seed in config.seeds]
        results = self._results(config, c.index, c.task, c.data, seeds, lambdas.searched,
                                (lambdas.l1, lambdas.l2, lambdas.chosen_by))
        if config.causal:
            results["causal"] = self._step(c.steps_dir / "causal.json", lambda: self._causal(c, lambdas, seeds),
                                           "causal ablation")
        write_json(c.run_dir / "results.json", results)
        manifest = build_manifest(self.registry, c.device, list(config.seeds), c.data, c.activations, self.argv)
        manifest["store_root"] = str(Path(config.cache_dir) / "activations")
        write_json(c.run_dir / "manifest.json", manifest)
        render_report(results, c.run_dir)
        return results

    def _write_timings(self, c: CellContext, unit: str, started: float, merged: bool = False) -> None:
        """This unit's step timings and wall seconds to ``timings/UNIT.json``; ``merged``:
        every unit's, in ``timings.json``: a step's seconds from the unit that ran it (None:
        reused from an earlier run), each unit's seconds, and their sum as ``total``."""
        folder = c.run_dir / TIMINGS_DIR
        folder.mkdir(exist_ok=True)
        write_json(folder / f"{unit}.json", {**self.timings, "unit": round(time.perf_counter() - started, 3)})
        if not merged:
            return
        steps: dict[str, float | None] = {}
        units: dict[str, float] = {}
        for path in sorted(folder.glob("*.json")):
            saved = read_json(path, "timings")
            units[path.stem] = saved.pop("unit")
            for step, seconds in saved.items():
                if steps.get(step) is None:
                    steps[step] = seconds
        write_json(c.run_dir / "timings.json", {**steps, "units": units, "total": round(sum(units.values()), 3)})

    def _causal(self, c: CellContext, lambdas: Lambdas, seeds: list[dict[str, Any]]) -> dict[str, Any]:
        """Live-model ablation on the test split (:mod:`neuroscope.causal`): every seed's
        and ranker's top / random / bottom ``fraction`` removed inside the model, all
        conditions in one pass."""
        start = time.perf_counter()
        config = c.config
        adapter = self.load_adapter(config)
        probes, conditions, stored = {}, {}, {}
        for per_seed in seeds:
            first = next(iter(per_seed.values()))
            seed = first["seed"]
            saved = read_arrays(c.steps_dir / f"seed-{seed}-probe.npz", ("coef", "intercept"))
            probes[f"seed-{seed}"] = (saved["coef"].astype(np.float32), saved["intercept"].astype(np.float32))
            stored[f"seed-{seed}"] = first["ablation"]["test"]["all"]
            for name, result in per_seed.items():
                order = np.asarray(result["ranking"]["order"], dtype=np.int64)
                for kind, neurons in removal_sets(order, c.index, config.fraction, seed).items():
                    conditions[f"seed-{seed}/{name}/{kind}"] = neurons
        means = None
        if config.causal_mode == "mean":
            means = RankerInputs(c.acts["train"], c.gold["train"], c.task.labels, c.index, 0, None,
                                 c.shared).overall_mean()
        sentences = c.task.test.words()
        with self.reporter.task(f"causal ablation ({len(conditions) + 1} conditions)", len(sentences)) as advance:
            found = causal_ablation(adapter, sentences, c.gold["test"], probes, conditions, c.index,
                                    config.causal_mode, config.causal_positions, means, advance=advance,
                                    unseen=config.unseen_labels)
        return summarise_causal(found, config.fraction, list(config.rankers), stored,
                                round(time.perf_counter() - start, 3))

    def _rankers(self, config: RunConfig) -> dict[str, tuple[Callable, dict[str, Any]]]:
        """Each ranker of the run with its options (registry.toml, and --stride where it takes one)."""
        out = {}
        for name in config.rankers:
            resolved = self.registry.resolve_ranker(name)
            fn = resolved.entry.obj
            options = dict(resolved.options)
            parameters = inspect.signature(fn).parameters
            if "stride" in parameters and "stride" not in options:
                options["stride"] = config.stride
            accepted = [p for p in parameters if p not in ("inputs", "coef")]
            unknown = sorted(set(options) - set(accepted))
            if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                raise RegistryError(f"ranker {name!r} (options from {resolved.origin}): unknown option(s) "
                                    f"{', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}")
            out[name] = (fn, options)
        return out

    def seed(self, c: CellContext, lambdas: Lambdas, seed: int, reuse_quietly: bool = False
             ) -> dict[str, dict[str, Any]]:
        """Step 4 for one seed: the oracle probe, then per ranker the ranking and ablations
        (Table 1), the minimal set (Tables 2, 3) and analyses; then the control task for
        every ranker's minimal set (selectivity). Returns one per-seed result per ranker.
        ``reuse_quietly``: the cell's last unit reading the seed's finished steps."""
        config, steps_dir = c.config, c.steps_dir
        params = c.params(lambdas)
        step = functools.partial(self._step, quiet=reuse_quietly)
        n_train = c.acts["train"].n_tokens
        n_classes = len(c.task.labels)
        settings = config.settings(seed)

        def oracle() -> dict[str, Any]:
            probe = c.probe_cls(seed=seed, **params)
            prefit = None
            searched_probe = steps_dir / SEARCH_PROBE
            if lambdas.searched is not None and seed == config.seeds[0] and searched_probe.is_file():
                # the search trained this very probe (same lambdas, seed and settings)
                saved = read_arrays(searched_probe, ("coef", "intercept"))
                prefit = (saved["coef"], saved["intercept"])
                self.reporter.log(f"oracle seed {seed}: the lambda search's probe for {params['l1']}, "
                                  f"{params['l2']}")
            with self.reporter.task(f"oracle seed {seed}", None if prefit else config.rows_trained(n_train)) as advance:
                fitted, train_accuracy = fit_oracle(probe, c.acts, c.task, config.unseen_labels, advance, prefit)
            training = lambdas.searched.best_training if prefit else fitted.training_record()  # type: ignore
            if prefit and training is not None and not training["converged"]:
                log.warning("oracle probe of seed %d had not converged after %d epochs (the loss was still falling); "
                            "--epochs auto trains until it stops", seed, training["epochs"])
            np.savez_compressed(steps_dir / f"seed-{seed}-probe.npz", coef=fitted.coef_,
                                intercept=fitted.intercept_, classes=fitted.classes_.astype(str))
            return {"seed": seed, "train_accuracy": train_accuracy, "training": training}

        oracle_step = step(steps_dir / f"seed-{seed}.json", oracle, f"oracle seed {seed}")
        train_accuracy, training = oracle_step["train_accuracy"], oracle_step.get("training")
        saved = read_arrays(steps_dir / f"seed-{seed}-probe.npz", ("coef", "intercept"))
        probe = restore_probe(c.probe_cls(seed=seed, **params), c.task.labels, saved["coef"], saved["intercept"])

        results: dict[str, dict[str, Any]] = {}
        selected: dict[str, np.ndarray] = {}
        accuracies: dict[str, dict[str, dict[str, float]]] = {}
        for name, (fn, options) in c.rankers.items():
            slug = _slug(name)

            def rank() -> dict[str, Any]:
                info = info_of(fn)
                inputs = RankerInputs(c.acts["train"], c.gold["train"], c.task.labels, c.index, seed,
                                      probe if "probe" in info.needs else None, c.shared, config.fraction)
                with self.reporter.task(f"{name} ranking seed {seed}", None):
                    ranking = call_ranker(fn, inputs, **options)
                return rank_and_ablate(probe, ranking, train_accuracy, c.acts, c.task, config.fraction,
                                       config.unseen_labels).to_json()

            ranked = SeedResult.from_json(step(steps_dir / f"seed-{seed}-{slug}.json", rank,
                                                     f"{name} ranking seed {seed}"))

            def minimal() -> dict[str, Any]:
                with self.reporter.task(f"minimal set {name} seed {seed}", None) as advance:
                    scan = minimal_neuron_scan(
                        c.acts["train"], c.gold["train"], c.acts["dev"], c.gold["dev"], c.acts["test"],
                        c.gold["test"], n_classes, ranked.ranking, (params["l1"], params["l2"]), settings,
                        ranked.ablation["dev"]["all"], config.deltas, config.scan_step, config.scan_block,
                        config.unseen_labels, advance, c.trainer)
                return scan.to_json()

            scan = MinimalScan.from_json(step(steps_dir / f"seed-{seed}-{slug}-minimal.json", minimal,
                                                    f"minimal set {name} seed {seed}"))
            chosen = scan.for_delta(config.deltas[0])
            selected[name] = np.asarray(chosen.neurons, dtype=np.int64)
            accuracies[name] = {"dev": {"all": ranked.ablation["dev"]["all"], "selected": chosen.dev_accuracy},
                                "test": {"all": ranked.ablation["test"]["all"], "selected": chosen.test_accuracy}}
            minimal_json = scan.to_json()
            for entry in minimal_json["sets"]:  # one unit per quantity in results.json: percent
                entry["share"] = 100 * entry["share"]
            top = np.asarray(ranked.kept["top"])
            labels = list(c.task.labels)
            results[name] = {
                "seed": seed,
                "train_accuracy": train_accuracy,
                "oracle_training": training,
                "ablation": ranked.ablation,
                "ranking": {"method": ranked.ranking.method, "order": ranked.ranking.order.tolist()},
                "curves": ranked.curves,
                "minimal": minimal_json,
                "control": None,
                "analyses": analyse(probe.coef_, selected[name], c.index, labels),
                "top_fraction_layer_distribution": analyse(probe.coef_, top, c.index, labels)["layer_distribution"],
            }

        if config.control:
            def control_run() -> dict[str, Any]:
                with self.reporter.task(f"control task seed {seed}",
                                        config.rows_trained(n_train, 1 + len(selected))) as advance:
                    return control_step(c.trainer, params, c.acts, c.task, seed, selected, accuracies,
                                        config.unseen_labels, advance)

            control = step(steps_dir / f"seed-{seed}-control.json", control_run, f"control task seed {seed}")
            for name in results:
                results[name]["control"] = control[name]
        return results

    def _summary(self, config: RunConfig, index: NeuronIndex, task: TaskData, seeds: list[dict[str, Any]]
                 ) -> dict[str, Any]:
        """Mean and std over seeds of one ranker's per-seed results."""
        summary: dict[str, Any] = {"ablation": {}, "minimal": {}, "selectivity": {}}
        for split in ("dev", "test"):
            summary["ablation"][split] = {
                k: mean_std([s["ablation"][split][k] for s in seeds]) for k in ("all", "top", "random", "bottom")}
        for delta in config.deltas:
            sets = [MinimalScan.from_json(s["minimal"]).for_delta(delta) for s in seeds]
            summary["minimal"][str(delta)] = {
                "n_neurons": mean_std([m.n_neurons for m in sets]),
                "share": mean_std([m.share for m in sets]),
                "dev": {"all": mean_std([s["ablation"]["dev"]["all"] for s in seeds]),
                        "selected": mean_std([m.dev_accuracy for m in sets])},
                "test": {"all": mean_std([s["ablation"]["test"]["all"] for s in seeds]),
                         "selected": mean_std([m.test_accuracy for m in sets])},
            }
        if config.control:
            for split in ("dev", "test"):
                summary["selectivity"][split] = {
                    k: mean_std([s["control"][split]["selectivity"][k] for s in seeds]) for k in ("all", "selected")}
                summary["selectivity"][split]["control"] = {
                    k: mean_std([s["control"][split]["control"][k] for s in seeds]) for k in ("all", "selected")}
        dist = np.array([s["analyses"]["layer_distribution"] for s in seeds], dtype=np.float64)
        summary["layer_distribution"] = {"mean": dist.mean(axis=0).tolist(), "std": dist.std(axis=0).tolist()}
        top_dist = np.array([s["top_fraction_layer_distribution"] for s in seeds], dtype=np.float64)
        summary["top_fraction_layer_distribution"] = {"mean": top_dist.mean(axis=0).tolist(),
                                                      "std": top_dist.std(axis=0).tolist()}
        labels = list(task.labels)
        summary["neurons_per_label"] = {
            lab: mean_std([s["analyses"]["neurons_per_label"][lab] for s in seeds]) for lab in labels}
        summary["exclusivity"] = {
            "mean_labels_per_neuron": mean_std([s["analyses"]["exclusivity"]["mean_labels_per_neuron"] for s in seeds]),
            "exclusive_percent": mean_std([s["analyses"]["exclusivity"]["exclusive_percent"] for s in seeds]),
        }
        per_layer = np.array([[s["analyses"]["dominant_layer"][lab]["per_layer"] for lab in labels] for s in seeds],
                             dtype=np.float64).sum(axis=0)
        summary["dominant_layer"] = {
            lab: {"layer": index.layer_names[int(np.argmax(row))] if row.sum() else None,
                  "share": float(100 * row.max() / row.sum()) if row.sum() else 0.0, "per_layer": row.tolist()}
            for lab, row in zip(labels, per_layer)}
        summary["train_accuracy"] = mean_std([s["train_accuracy"] for s in seeds])
        curves = [s["curves"] for s in seeds]
        summary["curves"] = {"shares": curves[0]["shares"]}
        for key in ("keep_top", "remove_top"):
            summary["curves"][key] = [None if any(c[key][i] is None for c in curves)
                                      else mean_std([c[key][i] for c in curves])
                                      for i in range(len(curves[0]["shares"]))]
        return summary

    def _results(self, config, index, task, data, per_seed, searched, lambdas) -> dict[str, Any]:
        per_ranker = {name: {"per_seed": [s[name] for s in per_seed],
                             "summary": self._summary(config, index, task, [s[name] for s in per_seed])}
                      for name in config.rankers}
        first = per_ranker[config.rankers[0]]
        seeds, summary = first["per_seed"], first["summary"]
        return {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "model": config.model,
            "task": config.task,
            "neurons": index.n_neurons,
            "neuron_ids": NEURON_ID_LAYOUT,
            "layers": list(index.layer_names),
            "hidden_size": index.hidden_size,
            "lambdas": {"l1": lambdas[0], "l2": lambdas[1], "chosen_by": lambdas[2]},
            "probe": config.probe,
            "rankers": list(config.rankers),
            "lambda_search": None if searched is None else searched.to_json(),
            "fraction": config.fraction,
            "deltas": list(config.deltas),
            "seeds": list(config.seeds),
            "labels": list(task.labels),
            "data": {name: {k: v for k, v in stats.items() if k != "label_counts"}
                     for name, stats in data["splits"].items()},
            "label_counts": {name: stats["label_counts"] for name, stats in data["splits"].items()},
            "unseen_label_rule": config.unseen_labels,
            "majority_baseline": majority_baseline(task),
            "per_seed": seeds,
            "summary": summary,
            "per_ranker": per_ranker,
            "ranking_comparison": compare_rankings({name: [s["ranking"]["order"] for s in r["per_seed"]]
                                                    for name, r in per_ranker.items()}),
        }
