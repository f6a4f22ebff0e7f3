"""The Python API: run the protocol from a notebook, open a finished run, look at neurons.

    import neuroscope as ns
    run = ns.run(model="minilm", task="pos", data_dir="../shared/data")
    run = ns.open("runs/minilm-pos")
    run.top_neurons(label="NN", k=10)
    run.neuron(5, 112).top_words(20)

:func:`run` takes the options of ``neuroscope run`` as keyword arguments, with the
command line's names (``--max-sentences`` is ``max_sentences``) and defaults: both come
from the one definition of a run's settings (:mod:`neuroscope.settings`), and both plan
and execute through :mod:`neuroscope.planning`, so the two cannot drift apart. A finished
run is read by :class:`~neuroscope.runs.Run` (:mod:`neuroscope.runs`). docs/python.md is
the tour.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neuroscope.choices import auto_search
from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.model import resolve_device
from neuroscope.planning import execute, plan_runs, reuse_finished
from neuroscope.progress import Reporter
from neuroscope.runs import SPLITS, Neuron, Run, TopNeuron, WordActivation, extreme_rows
from neuroscope.settings import RunRequest, check_setting, request_from_kwargs
from neuroscope.types import NeuronIndex

log = logging.getLogger(__name__)


def run_request(**options: Any) -> RunRequest:
    """``neuroscope run``'s request with ``options`` in place of its defaults (validated)."""
    return request_from_kwargs(**options)


def run(**options: Any) -> "Run | list[Run]":
    """Run the paper's protocol as ``neuroscope run`` does (same settings, run directory and
    results) and return the finished :class:`Run` (a list for several models x tasks x probes).

    Keyword arguments are the command's options: ``model``, ``task``, ``ranker``,
    ``probe`` (names or lists), ``data_dir``, ``seeds``, ``max_sentences`` (N or (train,
    dev, test)), ``epochs`` (N or "auto"), ``out``, ``resume``, ``quiet``, ... (docs/cli.md).

    Objects of this Python process work too (:func:`in_process_inputs`): ``model=`` a loaded
    transformers model with ``tokenizer=`` its tokenizer, and ``task=`` a corpus held in
    memory (a DataFrame with a ``split`` column, or a dict / ``datasets.DatasetDict`` of
    splits) with ``labels=`` (and ``words=``) naming its columns."""
    from rich.console import Console

    options = in_process_inputs(options)
    request = run_request(**options)
    check_in_process(request)
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
    plan = plan_runs(request)
    order = [str(run_dir) for _, run_dir in plan.cells]
    reporter = Reporter(quiet=request.plan.quiet, console=Console())
    finished: dict[str, Path] = {}
    if "resume" not in options:  # run again (a notebook cell): the finished run is returned, not recomputed
        plan, finished = reuse_finished(plan)
        for run_dir in finished.values():
            reporter.log(f"{run_dir}: finished with these settings and data; returning it (resume=False refuses "
                         "an existing run instead)")
    done = execute(plan, reporter, argv=[f"neuroscope.run({shown})"]) if plan.cells else []
    paths = {**finished, **{str(path): path for path, _ in done}}
    runs = [Run(paths[key]) for key in order if key in paths]
    return runs[0] if len(runs) == 1 else runs


#: the names a dict or DatasetDict of splits may give each split (the hub's is "validation")
SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "validation", "valid"), "test": ("test",)}


def in_process_inputs(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with objects of this process replaced by the names a run records.

    * ``model``: a transformers model object (or a list mixing objects and names) becomes
      ``hf:loaded:HASH`` (:mod:`neuroscope.loaded`: HASH from its weights, configuration
      and tokenizer, so a changed model is a new model and never reads stale activations);
      ``tokenizer`` is its tokenizer (one, or a list matching the objects).
    * ``task``: a pandas DataFrame with a ``split`` column (train / dev / test), or a dict
      or ``datasets.DatasetDict`` of the three splits (``validation`` names dev, as on the
      hub), becomes the task :func:`corpus` writes; ``labels`` (required) and ``words``
      (default ``tokens``) name the columns, ``label_names`` as in :func:`corpus`."""
    from neuroscope.loaded import register

    options = dict(options)
    tokenizers = options.pop("tokenizer", None)
    model = options.get("model")
    models = model if isinstance(model, (list, tuple)) else [model]
    objects = [m for m in models if m is not None and not isinstance(m, str)]
    if objects:
        given = tokenizers if isinstance(tokenizers, (list, tuple)) else [tokenizers] * len(objects)
        if len(given) != len(objects):
            raise ValidationError(f"tokenizer: {len(given)} tokenizers for {len(objects)} model objects")
        pairs = iter(given)
        named = [m if isinstance(m, str) else "hf:" + register(m, next(pairs)) for m in models]
        options["model"] = named if isinstance(model, (list, tuple)) else named[0]
    elif tokenizers is not None:
        raise ValidationError("tokenizer: given without a model object (model= names a model; its tokenizer is "
                              "loaded with it)")
    columns = {k: options.pop(k) for k in ("labels", "words", "label_names") if k in options}
    task = options.get("task")
    if task is not None and not isinstance(task, (str, list, tuple)):
        if "labels" not in columns:
            raise ValidationError("task: a corpus object needs labels= naming its label column (and words= its "
                                  "words column, default tokens)")
        options["task"] = corpus(*splits_of(task), **columns)
    elif columns:
        raise ValidationError(f"{', '.join(columns)}: only with a corpus object as task= (a DataFrame or a dict of "
                              "splits); a named task reads its own columns")
    return options


def splits_of(data: Any) -> tuple[Any, Any, Any]:
    """(train, dev, test) of a DataFrame with a ``split`` column or a mapping of splits."""
    if hasattr(data, "columns") and hasattr(data, "groupby"):  # a pandas DataFrame
        if "split" not in data.columns:
            raise ValidationError(f"task: a DataFrame needs a split column (train, dev, test) to say which rows are "
                                  f"which split; its columns: {', '.join(map(str, data.columns))}")
        found = set(map(str, data["split"].unique()))
        if not found <= set(SPLIT_NAMES) or len(found) != 3:
            raise ValidationError(f"task: the DataFrame's split column holds {', '.join(sorted(found))}; expected "
                                  "exactly train, dev and test")
        return tuple(data[data["split"] == name].drop(columns="split") for name in SPLIT_NAMES)  # type: ignore[return-value]
    if hasattr(data, "keys") and hasattr(data, "__getitem__"):
        keys = list(data.keys())
        chosen = []
        for split, names in SPLIT_NAMES.items():
            hit = [k for k in names if k in keys]
            if not hit:
                raise ValidationError(f"task: the corpus has splits {', '.join(map(str, keys))}; none is {split} "
                                      f"(expected one of {', '.join(names)})")
            chosen.append(data[hit[0]])
        return tuple(chosen)  # type: ignore[return-value]
    raise ValidationError(f"task: expected a task name, a DataFrame with a split column, or a dict / DatasetDict of "
                          f"splits; got {type(data).__name__}")


def check_in_process(request: RunRequest) -> None:
    """Refuse a run whose loaded model objects the executor's other processes cannot see."""
    from neuroscope.loaded import is_loaded_model

    loaded = [m for m in request.plan.model if is_loaded_model(m.partition(":")[2])]
    if loaded and (request.plan.executor != "local" or request.plan.cpus is not None):
        where = "--executor ray" if request.plan.executor != "local" else "--cpus"
        raise ValidationError(f"{loaded[0]}: a model object lives in this Python process, and {where} runs units in "
                              "other processes; run it here (executor='local', no cpus), or save it "
                              "(model.save_pretrained(DIR), tokenizer.save_pretrained(DIR)) and pass model='hf:DIR'")


def corpus(train: Any, dev: Any, test: Any, *, labels: str, words: str = "tokens",
           label_names: Sequence[str] | None = None, name: str = "corpus", folder: str | Path | None = None) -> str:
    """A corpus held in memory as a task for :func:`run`: ``ns.run(task=ns.corpus(...))``.

    ``train``, ``dev``, ``test``: pandas DataFrames or Hugging Face ``datasets.Dataset`` s,
    one sentence per row, a list of words in column ``words`` and a list of labels (strings,
    or integers named by ``label_names``, else by a Dataset's ``ClassLabel`` feature) in
    column ``labels``. They are written as parquet with a task.json into ``folder``
    (default: ``corpora/NAME-HASH`` in the cache directory, HASH of the content, so the same
    data is the same task and its activations are reused) and read back by the ``parquet``
    reader like any corpus (checked, rows named in errors). Returns the task, ``"parquet:FOLDER"``."""
    import hashlib
    import json
    import shutil
    import tempfile

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise NeuroscopeError("neuroscope.corpus needs pyarrow: pip install 'neuroscope[parquet]'") from None

    from neuroscope.settings import default_cache_dir

    tables, names = {}, None if label_names is None else [str(n) for n in label_names]
    for split, data in (("train", train), ("dev", dev), ("test", test)):
        if hasattr(data, "to_pandas") and hasattr(data, "features"):  # a datasets.Dataset
            feature = data.features.get(labels) if hasattr(data.features, "get") else None
            inner = getattr(feature, "feature", feature)
            if names is None and isinstance(getattr(inner, "names", None), list):
                names = [str(n) for n in inner.names]
            frame = data.to_pandas()
        else:
            frame = data
        columns = list(getattr(frame, "columns", []))
        if words not in columns or labels not in columns:
            raise ValidationError(f"corpus: the {split} data has no column {words if words not in columns else labels!r}"
                                  f" (its columns: {', '.join(map(str, columns)) or 'none: not a DataFrame or Dataset'})")
        tables[split] = pa.Table.from_pandas(frame[[words, labels]], preserve_index=False)
    digest = hashlib.sha256(json.dumps({"words": words, "labels": labels, "names": names,
                                        **{k: t.to_pydict() for k, t in tables.items()}},
                                       default=str).encode("utf-8")).hexdigest()[:16]
    target = Path(folder) if folder is not None else default_cache_dir() / "corpora" / f"{name}-{digest}"
    described = {"words": words, "labels": labels, "label_names": names, "sha256": digest}
    if (target / "task.json").is_file() and json.loads((target / "task.json").read_text()) == described:
        return f"parquet:{target}"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".corpus-", dir=target.parent))
    for split, table in tables.items():
        pq.write_table(table, staging / f"{split}.parquet")
    (staging / "task.json").write_text(json.dumps(described, indent=1), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return f"parquet:{target}"


def open(path: str | Path) -> "Run":  # noqa: A001 - the API's name for opening a run directory
    """A finished run directory as a :class:`Run`; ``runs/minilm-pos`` (no date) opens the
    newest ``runs/<date>-minilm-pos``."""
    from neuroscope.rundir import find_run

    return Run(find_run(path))


def check_protocol_settings(**settings: Any) -> None:
    """:func:`protocol`'s keyword arguments checked against the allowed values of the
    ``neuroscope run`` options of the same names (one definition serves both: an ``alpha``
    the command line refuses is refused here, named as the keyword)."""
    if not isinstance(settings["seed"], (int, np.integer)) or isinstance(settings["seed"], bool) \
            or settings["seed"] < 0:
        raise ValidationError(f"seed: {settings['seed']!r} is not allowed; expected an integer >= 0")
    if settings["grid"] is not None:
        check_setting("grid", tuple(settings["grid"]))
    if (settings["l1"] is None) != (settings["l2"] is None):
        raise ValidationError("give both l1 and l2 to fix the lambdas, or neither to search them")
    for name in ("l1", "l2"):
        if settings[name] is not None:
            check_setting(name, settings[name])
    for name in ("fraction", "alpha", "beta", "epochs", "lr", "batch_size", "stride", "scan_step"):
        check_setting(name, settings[name])
    check_setting("search_method", settings["search"], "search")
    if settings["search"] == "halving" and settings["epochs"] == "auto":
        raise ValidationError("search 'halving': needs a number of epochs (its rounds train the survivors shares "
                              "of them), not auto")
    check_setting("deltas", tuple(settings["deltas"]) if settings["deltas"] is not None else ())
    if settings["alpha"] == 0 and settings["beta"] == 0:
        raise ValidationError("alpha and beta are both 0, so the lambda search's score S is always 0; give at "
                              "least one of them a positive weight")
    try:
        resolve_device(settings["device"])
    except NeuroscopeError as exc:
        raise ValidationError(f"device: {exc}") from None


def _check_labels_known(name: str, labels: np.ndarray, classes: np.ndarray) -> None:
    unknown = sorted(set(labels.tolist()) - set(classes.tolist()), key=str)
    if unknown:
        log.warning("%s: %d tokens carry labels unseen in training (%s); they count as errors", name,
                    int(np.isin(labels, unknown).sum()), ", ".join(map(str, unknown[:10])))


def protocol(X_train: Any, y_train: Sequence[Any], X_dev: Any, y_dev: Sequence[Any], X_test: Any,
             y_test: Sequence[Any], labels: Sequence[str] | None = None,
             control: tuple[Sequence[Any], Sequence[Any], Sequence[Any]] | None = None,
             layers: Sequence[str] | None = None, seed: int = 0, grid: Sequence[float] | None = None,
             l1: float | None = None, l2: float | None = None, fraction: float = 0.2,
             deltas: Sequence[float] = (0.5, 2.0), alpha: float = 0.5, beta: float = 0.5,
             epochs: int | str = 10, lr: float = 1e-3, batch_size: int = 512, stride: int = 100,
             scan_step: float = 0.01, device: str = "cpu", search: str = "auto") -> dict[str, Any]:
    """The paper's protocol on activations the user already has (arrays or memory-mapped
    ``.npy`` files; no model, no corpus): lambda search (section 2, unless ``l1``/``l2``
    are given), oracle probe, weight-mass ranking, top / random / bottom ablation (Table 1),
    minimal neuron set (Tables 2 and 3), and selectivity (section 2, "Control Tasks") when
    ``control`` holds control labels for train, dev and test.

    ``y_*`` are labels (any hashable values); ``labels`` (optional) names the class order
    and must cover the training labels. ``layers`` (optional) names the layers when the
    columns are ``len(layers)`` equal blocks, which adds the per-layer distribution of the
    minimal set. ``search`` is ``--search``'s method (auto, grid, path or halving; auto:
    halving, or the grid with ``epochs="auto"``). Accuracies are
    in percent. Returns a JSON-serialisable dict."""
    from neuroscope.ablation import ablation_sets, evaluate_ablations
    from neuroscope.control import selectivity
    from neuroscope.minimal import minimal_neuron_scan
    from neuroscope.features import check_features, n_columns, n_rows
    from neuroscope.probe import ElasticNetProbe, TrainSettings
    from neuroscope.ranking import weight_mass_ranking
    from neuroscope.search import PAPER_VALUES, lambda_grid
    from neuroscope.search_methods import search_lambdas
    from neuroscope.store import labels_to_ids

    check_protocol_settings(seed=seed, grid=grid, l1=l1, l2=l2, fraction=fraction, deltas=deltas, alpha=alpha,
                            beta=beta, epochs=epochs, lr=lr, batch_size=batch_size, stride=stride,
                            scan_step=scan_step, device=device, search=search)
    y = {"train": np.asarray(y_train), "dev": np.asarray(y_dev), "test": np.asarray(y_test)}
    X = {"train": X_train, "dev": X_dev, "test": X_test}
    for split in SPLITS:
        if getattr(X[split], "ndim", None) != 2:
            raise ValidationError(f"X_{split}: expected a 2-D (tokens, neurons) array")
        if y[split].shape != (n_rows(X[split]),):
            raise ValidationError(f"y_{split}: {y[split].shape[0] if y[split].ndim else 0} labels for "
                                  f"{n_rows(X[split])} rows of X_{split}")
    width = n_columns(X["train"])
    for split in ("dev", "test"):
        if n_columns(X[split]) != width:
            raise ValidationError(f"X_{split} has {n_columns(X[split])} columns, X_train {width}")
    for split in SPLITS:
        check_features(f"X_{split}", X[split])
    if labels is not None and len(set(labels)) != len(list(labels)):
        repeated = sorted({str(lab) for lab in labels if list(labels).count(lab) > 1})
        raise ValidationError(f"labels: each label may appear once; repeated: {', '.join(repeated)}")
    classes = np.unique(y["train"]) if labels is None else np.asarray(list(labels))
    missing = sorted(set(y["train"].tolist()) - set(classes.tolist()), key=str)
    if missing:
        raise ValidationError(f"labels: the training labels {missing[:10]} are not among the given labels")
    if len(classes) < 2:
        raise ValidationError("y_train: a probe needs at least two labels to tell apart")
    gold = {split: labels_to_ids(list(y[split]), list(classes)) for split in SPLITS}
    for split in ("dev", "test"):
        _check_labels_known(f"y_{split}", y[split], classes)
    settings = TrainSettings(lr, batch_size, epochs, seed, device)
    params = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "device": device}

    def rank(coef: np.ndarray) -> Any:
        return weight_mass_ranking(coef, stride)

    found = None
    if l1 is None and l2 is None:
        pairs = lambda_grid(tuple(PAPER_VALUES if grid is None else grid))
        method = auto_search(True, "elastic-net", epochs) if search == "auto" else search
        found = search_lambdas(method, X["train"], gold["train"], X["dev"], gold["dev"], len(classes), pairs,
                               settings, rank, {}, fraction, alpha, beta)
        l1, l2 = found.best
    probe = ElasticNetProbe(l1=l1, l2=l2, seed=seed, **params)
    if found is not None and found.best_probe is not None:
        probe.set_fitted(classes, *found.best_probe)
    else:
        probe.fit(X["train"], classes[gold["train"]])
    ranking = rank(probe.coef_)
    ablation = {split: evaluate_ablations(probe, {"all": None, **ablation_sets(ranking, fraction, seed)}, X[split],
                                          gold[split]) for split in ("dev", "test")}
    scan = minimal_neuron_scan(X["train"], gold["train"], X["dev"], gold["dev"], X["test"], gold["test"],
                               len(classes), ranking, (l1, l2), settings, ablation["dev"]["all"], deltas, scan_step)
    out: dict[str, Any] = {
        "labels": [str(c) for c in classes],
        "lambdas": {"l1": l1, "l2": l2, "chosen_by": "search" if found is not None else "fixed"},
        "lambda_search": None if found is None else found.to_json(),
        "ablation": ablation,
        "ranking": {"method": ranking.method, "order": ranking.order.tolist()},
        "minimal": scan.to_json(),
        "selectivity": None,
    }
    for entry in out["minimal"]["sets"]:
        entry["share"] = 100 * entry["share"]
    chosen = np.asarray(scan.for_delta(deltas[0]).neurons, dtype=np.int64)
    if layers is not None:
        if width % len(layers):
            raise ValidationError(f"layers: {width} columns do not split into {len(layers)} equal layers")
        index = NeuronIndex(tuple(layers), width // len(layers))
        out["layer_distribution"] = np.bincount([index.locate(int(j))[0] for j in chosen],
                                                minlength=len(layers)).tolist()
    if control is not None:
        if len(control) != 3:
            raise ValidationError("control: expected control labels for (train, dev, test)")
        c = {split: np.asarray(v) for split, v in zip(SPLITS, control)}
        for split in SPLITS:
            if c[split].shape != y[split].shape:
                raise ValidationError(f"control ({split}): {len(c[split])} labels for {len(y[split])} tokens")
        control_all = ElasticNetProbe(l1=l1, l2=l2, seed=seed, **params).fit(X["train"], c["train"])
        control_top = ElasticNetProbe(l1=l1, l2=l2, seed=seed, neurons=chosen, **params).fit(X["train"], c["train"])
        sel = {}
        for split in ("dev", "test"):
            task_top = scan.for_delta(deltas[0]).dev_accuracy if split == "dev" else scan.for_delta(deltas[0]).test_accuracy
            acc_all, acc_top = control_all.accuracy(X[split], c[split]), control_top.accuracy(X[split], c[split])
            sel[split] = {"control": {"all": acc_all, "selected": acc_top},
                          "selectivity": {"all": selectivity(ablation[split]["all"], acc_all),
                                          "selected": selectivity(task_top, acc_top)}}
        out["selectivity"] = sel
    return out


__all__ = ["Neuron", "Run", "TopNeuron", "WordActivation", "extreme_rows", "open", "protocol", "run", "run_request"]
