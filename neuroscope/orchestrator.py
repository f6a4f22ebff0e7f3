"""The orchestrator: runs the protocol's steps for one model x task cell and writes its
run directory (DESIGN.md, layer 2). It knows steps, not models.

A cell's steps after the extraction are its units of work (:func:`cell_steps`), each
taking the run's settings and directory, rebuilding its
:class:`~neuroscope.cell.CellContext` from them and leaving its results as files there,
so an executor may run the seeds of a cell on different machines
(:mod:`neuroscope.executors`); :meth:`Orchestrator.run` runs them in order:

* ``search`` - the task's data (``steps/data.json``), the activations (step 2, their
  store handles in ``steps/activations.json``) and the lambda search
  (``lambda-search.json``; paper section 2, "Search"), skipped when the lambdas are
  given or no ranker reads the probe;
* ``seed`` N - the oracle probe (``seed-N.json``, ``seed-N-probe.npz``); per ranker R its
  ranking and ablations (``seed-N-R.json``: Table 1, keep/remove-top curves) and minimal
  neuron sets (``seed-N-R-minimal.json``: Tables 2, 3) with the analyses of section 5;
  the control task and every ranker's selectivity (``seed-N-control.json``);
* ``finish`` - with --ksparse the k-sparse ceiling (``ksparse.json``), the causal ablation
  where asked (``causal.json``), ``results.json``,
  ``manifest.json``, tables, figures and ``report.html``.

Each step is a function of :mod:`neuroscope.steps`; the orchestrator calls them in the
paper's order, writes what each returns to ``RUN_DIR/steps/`` and reuses a finished
step's file, so ``--resume`` continues where a run stopped.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroscope.causal import InterventionUnsupported
from neuroscope.cell import (ACTIVATIONS, SEARCH_PROBE, TIMINGS_DIR, CellContext, Lambdas, resolve_rankers,
                             searching_ranker, slug)
from neuroscope.errors import NeuroscopeError, RunDirectoryError, StoreError, ValidationError
from neuroscope.loading import check_task, load_model, load_task
from neuroscope.manifest import build_manifest
from neuroscope.minimal import MinimalScan
from neuroscope.model import AttributionUnsupported, ModelAdapter
from neuroscope.progress import Reporter
from neuroscope.rankers import info_of
from neuroscope.registry import Registry
from neuroscope.report import render_report
from neuroscope.results import check_results
from neuroscope.rundir import (State, atomic_path, check_usable, claim, free_name, node_name, read_arrays, read_json,
                               settings_difference, write_json)
from neuroscope.settings import RunConfig
from neuroscope.steps.ablation import SeedResult, ranking_step
from neuroscope.steps.analyses import seed_record, task_accuracies
from neuroscope.steps.causal import causal_step
from neuroscope.steps.control import control_task_step
from neuroscope.steps.data import data_summary, split_checksums, warn_unseen_labels
from neuroscope.steps.extraction import check_screen, extract, screen, screened, stored_or_room
from neuroscope.steps.files import (StepFileError, ceiling_record, control_record, minimal_record, oracle_record,
                                    probe_arrays, ranking_record, read_step, rotation_record, search_record)
from neuroscope.steps.minimal import minimal_step
from neuroscope.steps.oracle import oracle_step, restored_oracle
from neuroscope.steps.rotation import rotation_step
from neuroscope.steps.search import lambda_search_step, search_grid, searches
from neuroscope.steps.sparse import sparse_ceiling_step
from neuroscope.steps.summary import results_record
from neuroscope.store import IN_MEMORY, ActivationStore, labels_to_ids
from neuroscope.types import NeuronIndex, TaskData
from neuroscope.validation import check_choice

log = logging.getLogger(__name__)

#: a cell's units after its extraction, in the order the local executor runs them
STEP_KINDS = ("search", "seed", "finish")


def cell_steps(config: RunConfig) -> list[tuple[str, int | None]]:
    """The units of one cell after the extraction, in order: the lambda search, one unit per
    seed (independent of each other), then the results and report (docs/distributed.md)."""
    return [("search", None), *(("seed", seed) for seed in config.seeds), ("finish", None)]


def check_causal_support(config: RunConfig, adapter: ModelAdapter) -> None:
    """Refuse --causal, before anything is extracted or trained, for an adapter that
    cannot intervene in its forward pass."""
    if config.causal and getattr(type(adapter), "intervene", None) is ModelAdapter.intervene:
        raise InterventionUnsupported(f"--causal: model adapter {adapter.name!r} cannot remove neurons inside its "
                                      "forward pass (it does not implement intervene(); docs/plugins.md)")


def check_model_rankers(registry: Registry, config: RunConfig, adapter: ModelAdapter) -> None:
    """Refuse, before anything is extracted or trained, a ranker that needs the live model
    (``needs=("model",)``) when the adapter has no objective to differentiate."""
    for name, (fn, _) in resolve_rankers(registry, config).items():
        if "model" in info_of(fn).needs:
            try:
                adapter.attribution_objective()
            except AttributionUnsupported as exc:
                raise AttributionUnsupported(f"--ranker {name}: {exc}") from None


def check_activations_match(task: TaskData, acts: dict[str, Any]) -> None:
    """Each split's store entry holds one row per word of that split (an entry with another
    corpus's rows under the same key is damaged: named, with the way out)."""
    for name, corpus in task.splits.items():
        X = acts[name]
        sentences = len(X.offsets) - 1
        if X.n_tokens != corpus.n_tokens or sentences != len(corpus):
            raise StoreError(f"{X.path}: the store entry for the {name} split holds {X.n_tokens} rows of {sentences} "
                             f"sentences, but the split has {corpus.n_tokens} words in {len(corpus)} sentences; the "
                             f"entry is damaged: `neuroscope cache remove {X.path.name}` and run again")


def activation_record(adapter: ModelAdapter | str, acts: dict[str, Any], task: TaskData | None = None
                      ) -> dict[str, Any]:
    """What a cell records of its activations (steps/activations.json) and an extract unit
    hands on to the cell's first unit: per split the store entry's path, key, shape and
    identity, and the device the model ran on (``adapter``'s, or its name); with ``task``
    its number of labels too (what the units after it declare depends on it)."""
    device = adapter if isinstance(adapter, str) else adapter.device_name()
    return {"device": device, **({"labels": len(task.labels)} if task is not None else {}),
            "splits": {name: {"path": str(a.path), "key": a.manifest["key"], "shape": list(a.shape),
                              "identity": a.manifest["identity"]} for name, a in acts.items()}}


def save_probe(path: Path, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray | None = None) -> None:
    """A probe's weights as a step's ``.npz`` (``classes`` as strings where given), written
    under a temporary name and renamed: a full disk never leaves a truncated file."""
    arrays = {"coef": coef, "intercept": intercept}
    if classes is not None:
        arrays["classes"] = classes.astype(str)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


class Orchestrator:
    """Runs cells of the plan; one Registry, one activation store, one reporter."""

    def __init__(self, registry: Registry, reporter: Reporter, argv: list[str] | None = None):
        self.registry = registry
        self.reporter = reporter
        self.argv = list(sys.argv if argv is None else argv)
        #: wall seconds per step of the current unit (None: reused from an earlier run), for timings.json
        self.timings: dict[str, float | None] = {}
        self._tasks: dict[tuple, tuple[TaskData, dict[str, Any]]] = {}

    # ---- the cell's units

    def run(self, config: RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
        """Run one model x task cell into ``run_dir``: its units (:func:`cell_steps`) in
        order, as the local executor runs them. The directory is created once the data is
        read and locked while a unit writes it."""
        results: dict[str, Any] = {}
        for kind, seed in cell_steps(config):
            results = self.run_step(config, run_dir, kind, seed, resume=resume or kind != "search")
        return results

    def run_step(self, config: RunConfig, run_dir: Path, kind: str, seed: int | None = None,
                 resume: bool = False, activations: dict[str, Any] | None = None) -> dict[str, Any]:
        """One unit of a cell (``kind`` of :data:`STEP_KINDS`; ``seed`` for a seed unit), with
        ``run_dir`` claimed while it writes; the units before it must have finished (their
        files are in ``run_dir``). ``activations``: for the search unit, the extract unit's
        record (:func:`activation_record`), opened without loading the model. Returns the
        results for ``finish``, else {}."""
        run_dir = Path(run_dir)
        check_choice("unit", kind, STEP_KINDS)
        started = time.perf_counter()
        self.timings = {}
        check_usable(run_dir, resume)
        task, data = self.task_of(config)
        with claim(run_dir):
            cell = self.open_cell(config, run_dir, task, data, first=kind == "search", resume=resume,
                                  activations=activations)
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

    def search(self, c: CellContext) -> None:
        """Step 3, the lambda search (with the first seed), when the lambdas are not given
        and a ranker reads the probe's weights."""
        if not searches(c):
            if c.config.search:
                self.reporter.log("no ranker reads the probe's weights: lambda search skipped, evaluation probe "
                                  "unregularised (pass --l1/--l2 to choose)")
            return

        def search() -> dict[str, Any]:
            found = lambda_search_step(c, self.reporter)
            if found.best_probe is not None:
                save_probe(c.steps_dir / SEARCH_PROBE, *found.best_probe)
            return found.to_json()

        self._step(c.steps_dir / "lambda-search.json", search, "lambda search")

    def seed(self, c: CellContext, lambdas: Lambdas, seed: int, reuse_quietly: bool = False
             ) -> dict[str, dict[str, Any]]:
        """Steps 4-8 for one seed: the oracle probe; per ranker its ranking and ablations
        (Table 1), minimal set (Tables 2, 3) and analyses; the control task for every
        ranker's minimal set (selectivity). Returns the seed's record per ranker.
        ``reuse_quietly``: the cell's last unit reading the seed's finished steps."""
        steps_dir = c.steps_dir
        step = functools.partial(self._step, quiet=reuse_quietly)
        probe_path = steps_dir / f"seed-{seed}-probe.npz"

        def oracle() -> dict[str, Any]:
            record, fitted = oracle_step(c, lambdas, seed, self.reporter, self._searched_probe(c, lambdas, seed))
            save_probe(probe_path, fitted.coef_, fitted.intercept_, fitted.classes_)
            return record

        oracle = step(steps_dir / f"seed-{seed}.json", oracle, f"oracle seed {seed}",
                      parse=lambda d: oracle_record(d, seed))
        saved = self._probe_arrays(c, probe_path)
        probe = restored_oracle(c, lambdas, seed, saved["coef"], saved["intercept"])

        records: dict[str, dict[str, Any]] = {}
        selected: dict[str, np.ndarray] = {}
        accuracies: dict[str, dict[str, dict[str, float]]] = {}
        for name in c.rankers:
            ranked: SeedResult = step(
                steps_dir / f"seed-{seed}-{slug(name)}.json",
                lambda: ranking_step(c, name, probe, seed, oracle["train_accuracy"], self.reporter,
                                     lambda: self.run_adapter(c.config, c.index)).to_json(),
                f"{name} ranking seed {seed}", parse=lambda d: ranking_record(d, seed, c.index.n_neurons))
            scan: MinimalScan = step(
                steps_dir / f"seed-{seed}-{slug(name)}-minimal.json",
                lambda: minimal_step(c, lambdas, seed, name, ranked, self.reporter, probe).to_json(),
                f"minimal set {name} seed {seed}",
                parse=lambda d: minimal_record(d, c.config.deltas, c.index.n_neurons))
            selected[name] = np.asarray(scan.for_delta(c.config.deltas[0]).neurons, dtype=np.int64)
            accuracies[name] = task_accuracies(ranked, scan, c.config.deltas[0])
            records[name] = seed_record(c, oracle, probe, ranked, scan)

        if c.config.control:
            control = step(steps_dir / f"seed-{seed}-control.json",
                           lambda: control_task_step(c, lambdas, seed, selected, accuracies, self.reporter),
                           f"control task seed {seed}",
                           parse=lambda d: control_record(d, {n: len(ids) for n, ids in selected.items()}))
            for name in records:
                records[name]["control"] = control[name]
        if c.config.baseline == "rotation":
            rotation = step(steps_dir / f"seed-{seed}-rotation.json",
                            lambda: rotation_step(c, lambdas, seed, self.reporter), f"rotation baseline seed {seed}",
                            parse=lambda d: rotation_record(d, seed, list(c.rankers), c.index.n_neurons))
            for name in records:
                records[name]["rotation"] = rotation["per_ranker"][name]
        return records

    def finish(self, c: CellContext) -> dict[str, Any]:
        """Steps 9 and 10: every seed's records (from their finished steps), the causal
        ablation when asked, results.json, manifest.json, tables, figures and report.html."""
        config = c.config
        lambdas = self.lambdas(c)
        seeds = [self.seed(c, lambdas, seed, reuse_quietly=True) for seed in config.seeds]
        sparse = None
        if config.ksparse:
            sparse = self._step(c.steps_dir / "ksparse.json", lambda: sparse_ceiling_step(c, self.reporter),
                                "k-sparse ceiling", parse=lambda d: ceiling_record(d, config.seeds[0],
                                                                                   c.index.n_neurons))
        results = results_record(config, c.index, c.task, c.data, seeds, lambdas.searched,
                                 (lambdas.l1, lambdas.l2, lambdas.chosen_by), sparse)
        if config.causal:
            def causal() -> dict[str, Any]:
                probes = {}
                for seed in config.seeds:
                    saved = self._probe_arrays(c, c.steps_dir / f"seed-{seed}-probe.npz")
                    probes[f"seed-{seed}"] = (saved["coef"].astype(np.float32), saved["intercept"].astype(np.float32))
                return causal_step(c, lambda: self.run_adapter(config, c.index), probes, seeds, self.reporter)

            results["causal"] = self._step(c.steps_dir / "causal.json", causal, "causal ablation")
        try:  # what the steps' files hold, together: sizes agree, ids inside the network, every seed
            check_results(results)
        except RunDirectoryError as exc:
            raise RunDirectoryError(f"{c.steps_dir}: the step files do not make a valid results.json ({exc}); delete "
                                    "the damaged ones and continue with --resume, which recomputes them") from None
        write_json(c.run_dir / "results.json", results)
        manifest = build_manifest(self.registry, c.device, list(config.seeds), c.data, c.activations, self.argv)
        manifest["store_root"] = str(Path(config.cache_dir) / "activations")
        write_json(c.run_dir / "manifest.json", manifest)
        render_report(results, c.run_dir, c.task)
        return results

    # ---- what the units share

    def lambdas(self, c: CellContext) -> Lambdas:
        """The lambdas the search unit chose (or those given, or none when no ranker reads the probe)."""
        config = c.config
        if searches(c):
            path = c.steps_dir / "lambda-search.json"
            if not path.is_file():
                raise RunDirectoryError(f"{path}: missing; the cell's lambda search has not run (continue with "
                                        "--resume)")
            searched = self._read_step(path, lambda d: search_record(d, search_grid(c), config.alpha, config.beta,
                                                                     config.fraction, config.seeds[0]))
            return Lambdas(searched, *searched.best, "search")
        if config.search:  # the probe only evaluates, unregularised (docs/ranking.md)
            return Lambdas(None, 0.0, 0.0, "unregularised (no probe-based ranker)")
        return Lambdas(None, float(config.l1), float(config.l2), "fixed")  # type: ignore[arg-type]

    def _searched_probe(self, c: CellContext, lambdas: Lambdas, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The lambda search's winner where it is this seed's oracle (the search's seed)."""
        path = c.steps_dir / SEARCH_PROBE
        if lambdas.searched is None or seed != c.config.seeds[0] or not path.is_file():
            return None
        saved = self._probe_arrays(c, path)
        return saved["coef"], saved["intercept"]

    @staticmethod
    def _probe_arrays(c: CellContext, path: Path) -> dict[str, np.ndarray]:
        try:
            return probe_arrays(read_arrays(path, ("coef", "intercept")), len(c.task.labels), c.index.n_neurons)
        except StepFileError as exc:
            raise RunDirectoryError(f"{path}: damaged ({exc}); delete it and the step's .json beside it and continue "
                                    "with --resume, which recomputes both") from None

    @staticmethod
    def _read_step(path: Path, parse: Callable[[dict[str, Any]], Any]) -> Any:
        """A finished step's file, read by ``parse`` (:mod:`neuroscope.steps.files`)."""
        try:
            return read_step(read_json(path, "step file"), parse)
        except StepFileError as exc:
            raise RunDirectoryError(f"{path}: damaged step file ({exc}); delete it and continue with --resume, "
                                    "which recomputes it") from None

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
                  resume: bool, activations: dict[str, Any] | None = None) -> CellContext:
        """The cell's context. The first unit writes config.json, steps/data.json and the
        activations' handles: those its extract unit recorded (``activations``; the model
        is then neither loaded nor hashed here), or its own, extracting what the store
        lacks; the others check that the settings and data are the run's and open the
        activations by those handles."""
        steps_dir = self._prepare(config, run_dir, resume, data, write=first)
        if first:
            warn_unseen_labels(config.task, data, config.unseen_labels)
            if activations is None:
                adapter, acts = self.extract_activations(config, task)
                record = activation_record(adapter, acts)
            else:
                record = activations
                acts = self._open_activations(config, task, record["splits"])
            handles, device = record["splits"], record["device"]
            write_json(steps_dir / ACTIVATIONS, {"device": device, "splits": handles})
        else:
            saved = read_json(steps_dir / ACTIVATIONS, "record of the run's activations")
            handles, device = saved["splits"], saved["device"]
            acts = self._open_activations(config, task, handles)

        check_activations_match(task, acts)
        probe_resolved = self.registry.resolve_probe(config.probe)
        probe_cls = probe_resolved.entry.obj
        if getattr(probe_cls, "train_many", None) is None:
            raise NeuroscopeError(f"probe {config.probe!r} has no train_many(); the protocol's lambda search, "
                                  "minimal-set scan and control task need it (docs/plugins.md)")
        template = probe_cls(**{**config.probe_params(0.0, 0.0), **probe_resolved.options})
        trainer = template.trainer() if hasattr(template, "trainer") else probe_cls.train_many
        if "l1" not in getattr(probe_cls, "penalties", ("l1", "l2")) and config.l1:
            raise ValidationError(f"--l1: probe {config.probe!r} takes no L1 penalty; use --l1 0")
        rankers = resolve_rankers(self.registry, config)
        classes = np.asarray(task.labels)
        gold = {name: labels_to_ids(task.splits[name].labels(), classes) for name in task.splits}
        return CellContext(config, run_dir, steps_dir, task, data, handles, device, acts, gold, acts["train"].index,
                           probe_cls, dict(probe_resolved.options), trainer, rankers, searching_ranker(rankers))

    def load_adapter(self, config: RunConfig) -> ModelAdapter:
        return load_model(self.registry, config.model, config.device, config.aggregation, config.extract_batch_size,
                          config.layers, config.dtype, config.site, config.extract_batch_tokens)

    def run_adapter(self, config: RunConfig, index: NeuronIndex) -> ModelAdapter:
        """The model as the run's neurons see it: of a screened run (``index.screened``), its
        kept neurons only (the store's columns), for the causal step's re-extraction."""
        adapter = self.load_adapter(config)
        return screened(adapter, index.neurons) if index.screened else adapter

    def extraction_adapter(self, config: RunConfig) -> ModelAdapter:
        """The model an extraction (or a shard of one) runs: loaded, and refused before
        anything is extracted where ``--causal`` or a ranker needs what it cannot do."""
        adapter = self.load_adapter(config)
        check_causal_support(config, adapter)
        check_model_rankers(self.registry, config, adapter)
        return adapter

    def extract_activations(self, config: RunConfig, task: TaskData) -> tuple[ModelAdapter, dict[str, Any]]:
        """Step 2: the model, and every split's activations from the store, extracted where
        it lacks them (an extract unit, or the cell's first unit). --causal with an adapter
        that cannot intervene is refused before anything is extracted."""
        check_screen(config.screen, config.store_budget, Path(config.cache_dir), task)
        adapter = self.extraction_adapter(config)
        start = time.perf_counter()
        if config.screen != "off":
            adapter = screen(Path(config.cache_dir), adapter, task, config.screen, config.store_budget,
                             self.reporter.task, config.keep)
            self.timings["screening"] = round(time.perf_counter() - start, 3)
            start = time.perf_counter()
        acts = extract(ActivationStore(Path(config.cache_dir) / "activations"), adapter, task, self.reporter.task,
                       config.keep)
        self.timings["extraction"] = round(time.perf_counter() - start, 3)
        return adapter, acts

    def extract_shard(self, config: RunConfig, task: TaskData, shard: int, shards: int) -> dict[str, Any]:
        """Step 2 split over units (``--extract-shards``): this shard's rows of every split's
        store entry (:meth:`ActivationStore.extract_shard`); returns the device and each
        split's key, for the unit that seals them (:meth:`seal_shards`)."""
        adapter = self.extraction_adapter(config)
        store = ActivationStore(Path(config.cache_dir) / "activations")
        stored_or_room(store, adapter, task)
        start = time.perf_counter()
        keys = {}
        for name, corpus in task.splits.items():
            with self.reporter.task(f"extract {name} (shard {shard + 1} of {shards})", len(corpus),
                                    "sentences") as advance:
                keys[name] = store.extract_shard(adapter, corpus, shard, shards, advance)
        self.timings["extraction"] = round(time.perf_counter() - start, 3)
        return {"device": adapter.device_name(), "keys": keys, "shard": [shard, shards]}

    def seal_shards(self, config: RunConfig, task: TaskData, shards: list[dict[str, Any]]) -> dict[str, Any]:
        """The activation record of an extraction its shards wrote (``shards``: their
        records): every split's entry sealed (:meth:`ActivationStore.seal`) and opened,
        without loading the model. Shards that wrote other entries (another model version
        on one node) or a store that lacks their rows (node-local caches) are errors."""
        keys = shards[0]["keys"]
        if any(r["keys"] != keys for r in shards):
            raise StoreError(f"the extraction shards of {config.model} x {config.task} wrote different store entries "
                             "(another model version or settings on some node?); every node needs the same model "
                             "files and environment")
        store = ActivationStore(Path(config.cache_dir) / "activations")
        try:
            acts = {name: store.seal(key) for name, key in keys.items()}
        except StoreError as exc:
            raise StoreError(f"{exc} (the {len(shards)} extraction shards write one entry of the store: they need a "
                             f"--cache-dir every node shares; {store.root} on node {node_name()})") from None
        return activation_record(shards[0]["device"], acts, task)

    def _open_activations(self, config: RunConfig, task: TaskData, handles: dict[str, Any]) -> dict[str, Any]:
        """The activations the cell's first unit recorded, from this machine's store; a store
        without them (a node without the shared --cache-dir) gets them extracted again."""
        store = ActivationStore(Path(config.cache_dir) / "activations")
        if all(h["key"] in IN_MEMORY for h in handles.values()):  # --keep memory, extracted by this process
            return {name: IN_MEMORY[handle["key"]] for name, handle in handles.items()}
        if all((store.path_for(h["key"]) / "manifest.json").is_file() for h in handles.values()):
            return {name: store.open(handle["key"]) for name, handle in handles.items()}
        self.reporter.log(f"activations of {config.model} x {config.task} are not in {store.root} on node "
                          f"{node_name()}: extracting them again")
        start = time.perf_counter()
        _, acts = self.extract_activations(config, task)
        self.timings["re-extraction"] = round(time.perf_counter() - start, 3)
        if {name: a.manifest["key"] for name, a in acts.items()} != {n: h["key"] for n, h in handles.items()}:
            raise RunDirectoryError(f"the activations of {config.model} x {config.task} extracted here differ from "
                                    "the run's (another model version or settings?); start a new run")
        return acts

    def _prepare(self, config: RunConfig, run_dir: Path, resume: bool, data: dict[str, Any], write: bool = True
                 ) -> Path:
        """Write config.json and steps/data.json into the claimed ``run_dir`` (``write``: the
        cell's first unit; the others find them there); a resumed run must have the same
        settings and data."""
        steps_dir = run_dir / "steps"
        config_path = run_dir / "config.json"
        if check_usable(run_dir, resume) is State.RUN or not write:
            saved = read_json(config_path, "run configuration")
            if not isinstance(saved, dict):
                raise RunDirectoryError(f"{config_path}: damaged run configuration, expected a JSON object; "
                                        "start a new run (or restore the file)")
            if saved != config.to_json():
                raise RunDirectoryError(f"{run_dir}: holds a run with other settings ("
                                        f"{settings_difference(saved, config.to_json())}), so --resume cannot continue "
                                        "it; leave out --out (a run's default directory names its settings) or pass "
                                        f"--out {free_name(run_dir)} for a new run")
            recorded = split_checksums(read_json(steps_dir / "data.json", "data summary"))
            if recorded is None:
                raise RunDirectoryError(f"{steps_dir / 'data.json'}: damaged data summary (expected each split's "
                                        "sha256); start a new run (or restore the file)")
            if recorded != split_checksums(data):
                raise RunDirectoryError(f"{run_dir}: the data changed since this run started; start a new run")
        if write:
            steps_dir.mkdir(parents=True, exist_ok=True)
            write_json(config_path, config.to_json())
            write_json(steps_dir / "data.json", data)
        return steps_dir

    def _step(self, path: Path, compute: Callable[[], Any], label: str, quiet: bool = False,
              parse: Callable[[dict[str, Any]], Any] = lambda data: data) -> Any:
        """Load a finished step (checked by ``parse``, which also turns it into what the
        protocol uses), or compute and write it. ``quiet``: a unit reading the steps of the
        units before it (no log line, no timing)."""
        if path.is_file():
            if not quiet:
                self.reporter.log(f"{label}: reusing finished step {path.name}")
                self.timings[path.stem] = None
            return self._read_step(path, parse)
        start = time.perf_counter()
        data = compute()
        self.timings[path.stem] = round(time.perf_counter() - start, 3)
        write_json(path, data)
        return parse(data)

    def _write_timings(self, c: CellContext, unit: str, started: float, merged: bool = False) -> None:
        """This unit's step timings and wall seconds to ``timings/UNIT.json``; ``merged``:
        every unit's, in ``timings.json``: a step's seconds from the unit that ran it (None:
        reused from an earlier run), each unit's seconds and the node it ran on
        (:func:`neuroscope.rundir.node_name`), and the units' sum as ``total``; a step done
        again (``re-extraction``: a node without the activations) adds its seconds."""
        folder = c.run_dir / TIMINGS_DIR
        folder.mkdir(exist_ok=True)
        write_json(folder / f"{unit}.json", {**self.timings, "unit": round(time.perf_counter() - started, 3),
                                             "node": node_name()})
        if not merged:
            return
        steps: dict[str, float | None] = {}
        units: dict[str, float] = {}
        nodes: dict[str, str | None] = {}
        for path in sorted(folder.glob("*.json")):
            saved = read_json(path, "timings")
            units[path.stem] = saved.pop("unit")
            nodes[path.stem] = saved.pop("node", None)
            for step, seconds in saved.items():
                if step == "re-extraction" and seconds is not None:
                    steps[step] = round((steps.get(step) or 0.0) + seconds, 3)
                elif steps.get(step) is None:
                    steps[step] = seconds
        write_json(c.run_dir / "timings.json", {**steps, "units": units, "nodes": nodes,
                                                "total": round(sum(units.values()), 3)})
