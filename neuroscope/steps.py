"""The steps of the paper's protocol as plain functions over typed values.

extract -> lambda search -> oracle probe -> ranking -> ablation -> minimal
neuron set -> control task and selectivity (paper sections 2, 4 and 5). Each
returns JSON-serialisable results so the orchestrator can store them and a run
can resume from any finished step.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import attrs
import numpy as np

from neuroscope.ablation import ablation_sets, accuracy, evaluate_ablations
from neuroscope.control import control_labels, selectivity
from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.probe import ElasticNetProbe, LinearModel, TrainSettings, predict_many
from neuroscope.ranking import Ranking
from neuroscope.registry import Registry, Resolved
from neuroscope.store import ActivationSet, ActivationStore, exceeds_page_cache, labels_to_ids
from neuroscope.types import TaskData
from neuroscope.model import LayerSubset, ModelAdapter, resolve_device

log = logging.getLogger(__name__)


def load_task(registry: Registry, spec: str, data_dir: Path) -> TaskData:
    """Read a task through its registered reader (registry.toml options applied)."""
    resolved: Resolved = registry.resolve_task(spec)
    reader: Callable[..., TaskData] = resolved.entry.obj
    options = dict(resolved.options)
    if "task" in inspect.signature(reader).parameters:
        options.setdefault("task", spec)
    try:
        inspect.signature(reader).bind(Path(data_dir), **options)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(reader).parameters if p not in ("data_dir", "task")]
        raise NeuroscopeError(f"task {spec!r} (reader {resolved.entry.name!r}, options from {resolved.origin}): "
                              f"{exc}; the reader takes: {', '.join(accepted)}") from None
    data = reader(Path(data_dir), **options)
    if not isinstance(data, TaskData):
        raise NeuroscopeError(f"task reader {resolved.entry.name!r} returned {type(data).__name__}, not TaskData")
    for name, corpus in data.splits.items():
        if len(corpus) == 0:
            raise NeuroscopeError(f"task {spec!r}: the {name} split is empty ({corpus.source})")
    return attrs.evolve(data, name=spec)


def check_task(task: TaskData) -> None:
    """A probing task needs sentences in every split and at least two labels in train
    (after any rare-label collapse and ``--max-sentences``): with one label every
    accuracy is 100 % and no neuron means anything."""
    for name, corpus in task.splits.items():
        if len(corpus) == 0:
            raise ValidationError(f"task {task.name!r}: the {name} split is empty ({corpus.source})")
    labels = task.labels
    if len(labels) < 2:
        raise ValidationError(f"task {task.name!r}: train has {len(labels)} label{'' if len(labels) == 1 else 's'} "
                              f"({', '.join(labels) or 'none'}; {task.train.source}); a probing task needs at "
                              "least two labels to tell apart")


def load_model(registry: Registry, spec: str, device: str, aggregation: str, batch_size: int = 32,
               layers: Sequence[int] | None = None, dtype: str | None = None) -> ModelAdapter:
    """Build the model adapter named by ``spec`` (alias, adapter name or ``hf:...``);
    ``layers`` keeps only those layers (``--layers``), ``dtype`` other than float32 (the
    default of every adapter) is passed to the adapter (``--dtype``; adapters that load
    weights in one precision only refuse it)."""
    resolved = registry.resolve_model(spec)
    options = {"batch_size": batch_size, **resolved.options,
               **({"dtype": dtype} if dtype and dtype != "float32" else {})}
    try:
        inspect.signature(resolved.entry.obj).bind(device=device, aggregation=aggregation, **options)
    except TypeError as exc:
        raise NeuroscopeError(f"model {spec!r} (adapter {resolved.entry.name!r}, options from {resolved.origin}): "
                              f"{exc}; e.g. use --model hf:<name-or-path> for the transformers adapter") from None
    adapter = resolved.entry.obj(device=device, aggregation=aggregation, **options)
    if not isinstance(adapter, ModelAdapter):
        raise NeuroscopeError(f"model adapter {resolved.entry.name!r} returned {type(adapter).__name__}, "
                              "not a neuroscope.ModelAdapter")
    return LayerSubset(adapter, layers) if layers else adapter


def data_summary(task: TaskData) -> dict[str, Any]:
    """Sizes, checksums and label statistics of every split (reported in results)."""
    known = set(task.labels)
    train_texts = {s.words for s in task.train.sentences}
    out: dict[str, Any] = {"task": task.name, "description": task.description, "labels": list(task.labels),
                           "splits": {}}
    for name, corpus in task.splits.items():
        counts = corpus.label_counts()
        out["splits"][name] = {
            "source": corpus.source,
            "sentences": len(corpus),
            "tokens": corpus.n_tokens,
            "sha256": corpus.checksum(),
            "label_counts": counts,
            "unseen_labels": {k: v for k, v in counts.items() if k not in known},
            "also_in_train": 0 if name == "train" else sum(s.words in train_texts for s in corpus.sentences),
        }
    return out


def majority_baseline(task: TaskData) -> dict[str, Any]:
    """Accuracy (%) of always predicting the most frequent training label."""
    counts = task.train.label_counts()
    label = max(counts, key=lambda k: (counts[k], k))
    out: dict[str, Any] = {"label": label}
    for name in ("dev", "test"):
        labels = task.splits[name].labels()
        out[name] = 100.0 * sum(1 for x in labels if x == label) / len(labels)
    return out


@attrs.frozen
class SeedResult:
    """One ranker's result on one seed's oracle probe: its ranking and the paper's
    ablations (Table 1), plus the keep-top / remove-top curves."""

    seed: int
    train_accuracy: float
    ablation: dict[str, dict[str, float]]
    ranking: Ranking
    kept: dict[str, list[int]]
    curves: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "train_accuracy": self.train_accuracy, "ablation": self.ablation,
                "ranking": self.ranking.to_json(), "kept": self.kept, "curves": self.curves}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SeedResult":
        return cls(int(data["seed"]), float(data["train_accuracy"]), data["ablation"],
                   Ranking.from_json(data["ranking"]), data["kept"], data.get("curves", {}))


#: shares of the network (percent) of the keep-top and remove-top curves
CURVE_SHARES = (1, 2, 5, 10, 20, 30, 50, 75, 100)


def restore_probe(probe: Any, classes: Any, coef: np.ndarray, intercept: np.ndarray) -> Any:
    """Give ``probe`` weights trained earlier (a saved oracle, the search's winner): through
    ``set_fitted`` where the probe has it (the built-ins), else by the documented fitted
    attributes, so a third-party probe class needs no more than docs/plugins.md asks."""
    if hasattr(probe, "set_fitted"):
        return probe.set_fitted(classes, coef, intercept)
    probe.classes_, probe.coef_, probe.intercept_ = np.asarray(classes), coef, intercept
    probe.neurons_ = np.arange(coef.shape[1])
    return probe


def fit_oracle(
    probe: ElasticNetProbe,
    acts: dict[str, ActivationSet],
    task: TaskData,
    unseen: str,
    progress: Callable[[int], None] | None = None,
    prefit: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[ElasticNetProbe, float]:
    """Train the oracle probe on train (paper section 2) and return it with its train accuracy.

    ``prefit`` (coef, intercept) is this very probe already trained elsewhere (the lambda
    search's winner, same seed and settings): it is used instead of training again."""
    train_labels = np.asarray(task.train.labels())
    if prefit is None:
        probe.fit(acts["train"], train_labels, progress=progress)
    else:
        classes = np.unique(train_labels)
        if prefit[0].shape != (len(classes), acts["train"].n_neurons):
            raise ValueError(f"prefit coef has shape {prefit[0].shape}, expected "
                             f"{(len(classes), acts['train'].n_neurons)}")
        restore_probe(probe, classes, prefit[0], prefit[1])
    train_gold = labels_to_ids(train_labels, probe.classes_)
    return probe, evaluate_ablations(probe, {"all": None}, acts["train"], train_gold, unseen)["all"]


def rank_and_ablate(
    probe: ElasticNetProbe,
    ranking: Ranking,
    train_accuracy: float,
    acts: dict[str, ActivationSet],
    task: TaskData,
    fraction: float,
    unseen: str,
) -> SeedResult:
    """Ablate the top / random / bottom ``fraction`` of ``ranking`` on dev and test with the
    oracle probe (paper section 4.1, Table 1), and trace test accuracy keeping only the
    top k % and removing the top k % (k in :data:`CURVE_SHARES`)."""
    sets = ablation_sets(ranking, fraction, probe.seed)
    results: dict[str, dict[str, float]] = {}
    for split in ("dev", "test"):
        gold = labels_to_ids(task.splits[split].labels(), probe.classes_)
        results[split] = evaluate_ablations(probe, {"all": None, **sets}, acts[split], gold, unseen)
    n = ranking.n_neurons
    curve_sets: dict[str, np.ndarray | None] = {}
    for share in CURVE_SHARES:
        k = max(1, int(round(share / 100 * n)))
        curve_sets[f"keep-{share}"] = None if k == n else np.sort(ranking.order[:k])
        if k < n:
            curve_sets[f"remove-{share}"] = np.sort(ranking.order[k:])
    gold = labels_to_ids(task.test.labels(), probe.classes_)
    curve = evaluate_ablations(probe, curve_sets, acts["test"], gold, unseen)
    curves = {"shares": list(CURVE_SHARES),
              "keep_top": [curve[f"keep-{s}"] for s in CURVE_SHARES],
              "remove_top": [curve.get(f"remove-{s}", float("nan")) for s in CURVE_SHARES]}
    curves["remove_top"] = [None if v != v else v for v in curves["remove_top"]]
    kept = {k: v.tolist() for k, v in sets.items()}
    return SeedResult(probe.seed, train_accuracy, results, ranking, kept, curves)


def extract(store: ActivationStore, adapter: ModelAdapter, task: TaskData,
            task_progress: Callable[[str, int], Any]) -> dict[str, ActivationSet]:
    out = {}
    for name, corpus in task.splits.items():
        with task_progress(f"extract {name}", len(corpus)) as advance:
            out[name] = store.get_or_extract(adapter, corpus, advance)
    return out



def reads_are_costly(X: ActivationSet, device: str) -> bool:
    """Whether reading ``X`` once more costs more than extra arithmetic: on a GPU
    (arithmetic is cheap there), or when the store is larger than half the physical
    memory, so the operating system cannot keep it cached between passes."""
    return resolve_device(device).type == "cuda" or exceeds_page_cache(2 * X.n_tokens * X.n_neurons)


def control_step(
    trainer: Callable[..., tuple[np.ndarray, np.ndarray]],
    params: dict[str, Any],
    acts: dict[str, ActivationSet],
    task: TaskData,
    seed: int,
    selected: Mapping[str, np.ndarray],
    task_accuracy: Mapping[str, dict[str, dict[str, float]]],
    unseen: str,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Control task probes on all neurons and on each ranker's ``selected`` set; selectivity
    on dev and test, per ranker (paper section 2, "Control Tasks").

    ``task_accuracy[ranker][split]`` holds the task probe's accuracy with ``all`` neurons
    (Acc_a) and the ranker's ``selected`` ones (Acc_t).

    The control probes are the same whether trained as one masked group over one read of
    the data or separately, each subset on its own columns only; which is cheaper depends on
    what bounds the training (:func:`reads_are_costly`). A group multiplies at full width for
    every probe but reads once; separately, arithmetic is 1 + (selected shares) widths but
    the data is read once per probe. The all-neuron control probe is trained once for every
    ranker.
    """
    labels = control_labels(task, seed)
    classes = np.unique(np.asarray(labels["train"]))
    y = np.searchsorted(classes, np.asarray(labels["train"]))
    n = acts["train"].n_neurons
    names = list(selected)
    subsets = [np.asarray(selected[name], dtype=np.int64) for name in names]
    settings = TrainSettings(params["lr"], params["batch_size"], params["epochs"], seed, params["device"],
                             params.get("shuffle", True), params.get("l2_form", "squared"),
                             params.get("precision", "float32"))
    lambdas = [(params["l1"], params["l2"])]
    if reads_are_costly(acts["train"], params["device"]):
        masks = np.zeros((1 + len(subsets), n), dtype=bool)
        masks[0] = True
        for k, subset in enumerate(subsets, start=1):
            masks[k, subset] = True
        coef, intercept = trainer(acts["train"], y, len(classes), lambdas * len(masks), settings, progress=progress,
                                  masks=masks)
        models = [LinearModel(coef[0], intercept[0], np.arange(n))]
        models += [LinearModel(coef[k][:, subset], intercept[k], subset) for k, subset in enumerate(subsets, start=1)]
        if progress and params["epochs"] != "auto":  # the caller counts one training's worth of rows per probe
            progress((len(masks) - 1) * params["epochs"] * acts["train"].n_tokens)
    else:
        coef_all, intercept_all = trainer(acts["train"], y, len(classes), lambdas, settings, progress=progress)
        models = [LinearModel(coef_all[0], intercept_all[0], np.arange(n))]
        for subset in subsets:
            coef_s, intercept_s = trainer(acts["train"], y, len(classes), lambdas, settings, neurons=subset,
                                          progress=progress)
            models.append(LinearModel(coef_s[0], intercept_s[0], subset))
    control: dict[str, np.ndarray] = {}
    for split in ("dev", "test"):
        gold = labels_to_ids(labels[split], classes)
        pred = predict_many(acts[split], models, params["device"])
        control[split] = np.array([accuracy(p, gold, unseen) for p in pred])
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names, start=1):
        entry: dict[str, Any] = {"selected": int(len(subsets[k - 1]))}
        for split in ("dev", "test"):
            acc = task_accuracy[name][split]
            entry[split] = {
                "control": {"all": float(control[split][0]), "selected": float(control[split][k])},
                "task": acc,
                "selectivity": {"all": selectivity(acc["all"], float(control[split][0])),
                                "selected": selectivity(acc["selected"], float(control[split][k]))},
            }
        out[name] = entry
    return out
