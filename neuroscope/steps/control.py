"""Step 8: the control task and selectivity (paper section 2, "Control Tasks"; Hewitt &
Liang 2019): probes trained on control labels (each word type a fixed random label) with
all neurons and with each ranker's minimal set; selectivity = task accuracy - control
accuracy."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from neuroscope.ablation import accuracy
from neuroscope.cell import CellContext, Lambdas
from neuroscope.control import control_labels, selectivity
from neuroscope.probe import LinearModel, TrainSettings, predict_many
from neuroscope.model import resolve_device
from neuroscope.store import ActivationSet, exceeds_page_cache, labels_to_ids
from neuroscope.types import TaskData


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


def control_task_step(c: CellContext, lambdas: Lambdas, seed: int, selected: Mapping[str, np.ndarray],
                      accuracies: Mapping[str, dict[str, dict[str, float]]], reporter: Any) -> dict[str, Any]:
    """The seed's control probes and every ranker's selectivity (``selected``: each ranker's
    minimal set; ``accuracies``: its Acc_a and Acc_t, :func:`~neuroscope.steps.analyses.task_accuracies`)."""
    config = c.config
    rows = config.rows_trained(c.acts["train"].n_tokens, 1 + len(selected))
    with reporter.task(f"control task seed {seed}", rows) as advance:
        return control_step(c.trainer, c.params(lambdas), c.acts, c.task, seed, selected, accuracies,
                            config.unseen_labels, advance)
