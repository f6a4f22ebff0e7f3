"""Step 4: the oracle probe (paper section 2): the elastic-net probe (or the run's
``--probe``) trained on every neuron with the chosen lambdas, one per seed; every later
step of the seed ranks, ablates and scans with it."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from neuroscope.ablation import evaluate_ablations
from neuroscope.cell import CellContext, Lambdas
from neuroscope.probe import ElasticNetProbe, note_unconverged
from neuroscope.store import ActivationSet, labels_to_ids
from neuroscope.types import TaskData


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


def oracle_step(c: CellContext, lambdas: Lambdas, seed: int, reporter: Any,
                prefit: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[dict[str, Any], Any]:
    """The seed's oracle probe and its record (train accuracy, training curve). ``prefit``:
    the lambda search's winner, which is this seed's probe (the search's seed, lambdas and
    settings), taken instead of training it again."""
    params = c.params(lambdas)
    probe = c.probe_cls(seed=seed, **params)
    if prefit is not None:
        reporter.log(f"oracle seed {seed}: the lambda search's probe for {params['l1']}, {params['l2']}")
    rows = None if prefit else c.config.rows_trained(c.acts["train"].n_tokens)
    with reporter.task(f"oracle seed {seed}", rows) as advance:
        fitted, train_accuracy = fit_oracle(probe, c.acts, c.task, c.config.unseen_labels, advance, prefit)
    training = lambdas.searched.best_training if prefit else fitted.training_record()  # type: ignore[union-attr]
    if prefit and training is not None and not training["converged"]:
        note_unconverged(f"the oracle probe of seed {seed}", training["epochs"])
    return {"seed": seed, "train_accuracy": train_accuracy, "training": training}, fitted


def restored_oracle(c: CellContext, lambdas: Lambdas, seed: int, coef: np.ndarray, intercept: np.ndarray) -> Any:
    """The seed's oracle probe from its saved weights."""
    return restore_probe(c.probe_cls(seed=seed, **c.params(lambdas)), c.task.labels, coef, intercept)
