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
from typing import Any, Callable

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
from neuroscope.model import ModelAdapter, resolve_device

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


def load_model(registry: Registry, spec: str, device: str, aggregation: str, batch_size: int = 32) -> ModelAdapter:
    """Build the model adapter named by ``spec`` (alias, adapter name or ``hf:...``)."""
    resolved = registry.resolve_model(spec)
    options = {"batch_size": batch_size, **resolved.options}
    try:
        inspect.signature(resolved.entry.obj).bind(device=device, aggregation=aggregation, **options)
    except TypeError as exc:
        raise NeuroscopeError(f"model {spec!r} (adapter {resolved.entry.name!r}, options from {resolved.origin}): "
                              f"{exc}; e.g. use --model hf:<name-or-path> for the transformers adapter") from None
    adapter = resolved.entry.obj(device=device, aggregation=aggregation, **options)
    if not isinstance(adapter, ModelAdapter):
        raise NeuroscopeError(f"model adapter {resolved.entry.name!r} returned {type(adapter).__name__}, "
                              "not a neuroscope.ModelAdapter")
    return adapter


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
    """Everything one seed of the core loop produced."""

    seed: int
    train_accuracy: float
    ablation: dict[str, dict[str, float]]
    ranking: Ranking
    kept: dict[str, list[int]]

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "train_accuracy": self.train_accuracy, "ablation": self.ablation,
                "ranking": self.ranking.to_json(), "kept": self.kept}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SeedResult":
        return cls(int(data["seed"]), float(data["train_accuracy"]), data["ablation"],
                   Ranking.from_json(data["ranking"]), data["kept"])


def run_seed(
    probe: ElasticNetProbe,
    ranker: Callable[..., Ranking],
    ranker_options: dict[str, Any],
    acts: dict[str, ActivationSet],
    task: TaskData,
    fraction: float,
    unseen: str,
    progress: Callable[[int], None] | None = None,
    prefit: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[SeedResult, ElasticNetProbe]:
    """Train the probe on train, rank its neurons, ablate top / random / bottom on dev and test.

    ``prefit`` (coef, intercept) is this very probe already trained elsewhere (the lambda
    search's winner, same seed and settings): it is used instead of training again."""
    train_labels = np.asarray(task.train.labels())
    if prefit is None:
        probe.fit(acts["train"], train_labels, progress=progress)
    else:
        probe.classes_ = np.unique(train_labels)
        probe.coef_, probe.intercept_ = prefit
        probe.neurons_ = np.arange(acts["train"].n_neurons)
        if probe.coef_.shape != (len(probe.classes_), acts["train"].n_neurons):
            raise ValueError(f"prefit coef has shape {probe.coef_.shape}, expected "
                             f"{(len(probe.classes_), acts['train'].n_neurons)}")
    ranking = ranker(probe.coef_, **ranker_options)
    sets = ablation_sets(ranking, fraction, probe.seed)
    results: dict[str, dict[str, float]] = {}
    for split in ("dev", "test"):
        gold = labels_to_ids(task.splits[split].labels(), probe.classes_)
        results[split] = evaluate_ablations(probe, {"all": None, **sets}, acts[split], gold, unseen)
    train_gold = labels_to_ids(train_labels, probe.classes_)
    train_acc = evaluate_ablations(probe, {"all": None}, acts["train"], train_gold, unseen)["all"]
    kept = {k: v.tolist() for k, v in sets.items()}
    return SeedResult(probe.seed, train_acc, results, ranking, kept), probe


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
    selected: np.ndarray,
    task_accuracy: dict[str, dict[str, float]],
    unseen: str,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Control task probes on all neurons and on ``selected``; selectivity on dev and test.

    ``task_accuracy[split]`` holds the task probe's accuracy with ``all`` neurons
    (Acc_a) and the ``selected`` ones (Acc_t).

    The two control probes are the same whether trained as a masked pair over one
    read of the data or separately, the second on the selected columns only; which
    is cheaper depends on what bounds the training (:func:`reads_are_costly`). A
    pair multiplies at full width twice but reads once; separately, arithmetic is
    1 + (selected share) widths but the data is read twice.
    """
    labels = control_labels(task, seed)
    classes = np.unique(np.asarray(labels["train"]))
    y = np.searchsorted(classes, np.asarray(labels["train"]))
    n = acts["train"].n_neurons
    selected = np.asarray(selected, dtype=np.int64)
    settings = TrainSettings(params["lr"], params["batch_size"], params["epochs"], seed, params["device"],
                             params.get("shuffle", True), params.get("l2_form", "squared"),
                             params.get("precision", "float32"))
    lambdas = [(params["l1"], params["l2"])]
    if reads_are_costly(acts["train"], params["device"]):
        masks = np.zeros((2, n), dtype=bool)
        masks[0] = True
        masks[1, selected] = True
        coef, intercept = trainer(acts["train"], y, len(classes), lambdas * 2, settings, progress=progress,
                                  masks=masks)
        coef_all, intercept_all = coef[:1], intercept[:1]
        coef_selected, intercept_selected = coef[1:, :, selected], intercept[1:]
        if progress:  # the caller counts two trainings' worth of rows
            progress(params["epochs"] * acts["train"].n_tokens)
    else:
        coef_all, intercept_all = trainer(acts["train"], y, len(classes), lambdas, settings, progress=progress)
        coef_selected, intercept_selected = trainer(acts["train"], y, len(classes), lambdas, settings,
                                                    neurons=selected, progress=progress)
    models = [LinearModel(coef_all[0], intercept_all[0], np.arange(n)),
              LinearModel(coef_selected[0], intercept_selected[0], selected)]
    out: dict[str, Any] = {"selected": int(len(selected))}
    for split in ("dev", "test"):
        gold = labels_to_ids(labels[split], classes)
        pred = predict_many(acts[split], models, params["device"])
        control = {"all": accuracy(pred[0], gold, unseen), "selected": accuracy(pred[1], gold, unseen)}
        out[split] = {
            "control": control,
            "task": task_accuracy[split],
            "selectivity": {"all": selectivity(task_accuracy[split]["all"], control["all"]),
                            "selected": selectivity(task_accuracy[split]["selected"], control["selected"])},
        }
    return out
