"""A converged multinomial logistic-regression probe: full-batch L-BFGS, out of core.

The paper trains its probe with Adam for a fixed 10 epochs (section 3); a neuron ranking
could be an artefact of that optimiser stopping early. This probe minimises the same
kind of objective to convergence instead:

    mean cross-entropy over all training rows + l2 ||W||_2^2     (bias not penalised)

with L-BFGS (strong-Wolfe line search) on the full training set, every function and
gradient evaluation one pass over the activations in chunks (never the whole matrix in
RAM). It stops when the gradient's largest entry is below ``tol`` or after ``max_iter``
iterations, and says which (``converged_``, ``n_iter_``); a probe that did not converge
is logged as a warning. The objective is smooth only without L1, so this probe takes
``l1 = 0``: the protocol's lambda search then searches L2 alone (docs/probe.md). Its
``coef_`` feeds ``weight-mass`` like the elastic-net probe's. Full-batch and started
from zero, it does not depend on the seed.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Sequence

import numpy as np
import torch

from neuroscope.errors import ValidationError
from neuroscope.model import resolve_device
from neuroscope.features import Features, check_features, iter_chunks, n_columns, n_rows
from neuroscope.probe import ElasticNetProbe, TrainSettings
from neuroscope.store import ActivationSet
from neuroscope.validation import check_class_ids, check_number, check_training_labels

log = logging.getLogger(__name__)


def train_lbfgs(
    X: Features,
    y: np.ndarray,
    n_classes: int,
    lambdas: Sequence[tuple[float, float]],
    settings: TrainSettings = TrainSettings(),
    neurons: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    masks: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
    report: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One converged probe per (0, l2) of ``lambdas`` (and per row of ``masks``): the same
    signature as :func:`neuroscope.probe.train_elastic_net`, so the protocol's search, scan and
    control task use it alike. ``report`` collects (converged, iterations, losses) per
    setting, losses being the objective at every evaluation."""
    total = n_rows(X)
    check_training_labels("probe training", total, n_classes)
    y = check_class_ids("y", y, total, n_classes)
    check_number("max_iter", max_iter, low=1, integer=True)
    check_number("tol", tol, low=0, low_open=True)
    for l1, l2 in lambdas:
        if l1:
            raise ValidationError(f"the lbfgs probe minimises a smooth objective and takes l1 = 0, got l1 = {l1}; "
                                  "use --l1 0, or the elastic-net probe for L1")
        check_number("l2", l2, low=0)
    if settings.l2_form != "squared":
        raise ValidationError("the lbfgs probe penalises the squared L2 norm (--l2-form squared)")
    if not isinstance(X, ActivationSet):
        check_features("X", X)
    device = resolve_device(settings.device)
    columns = np.arange(n_columns(X)) if neurons is None else np.asarray(neurons, dtype=np.int64)
    width = len(columns)
    if masks is not None and np.asarray(masks).shape != (len(lambdas), width):
        raise ValidationError(f"masks have shape {np.asarray(masks).shape}, expected ({len(lambdas)}, {width})")
    y_all = torch.from_numpy(y)
    coefs = np.zeros((len(lambdas), n_classes, width), dtype=np.float32)
    intercepts = np.zeros((len(lambdas), n_classes), dtype=np.float32)
    for g, (_, l2) in enumerate(lambdas):
        local = np.arange(width) if masks is None else np.flatnonzero(np.asarray(masks)[g])
        used = columns[local]
        weight = torch.zeros(len(used), n_classes, dtype=torch.float64, device=device, requires_grad=True)
        bias = torch.zeros(n_classes, dtype=torch.float64, device=device, requires_grad=True)
        losses: list[float] = []
        optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                                      tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss_value = 0.0
            for start, block in iter_chunks(X, used):
                xb = torch.from_numpy(block).to(device, torch.float64)
                yb = y_all[start : start + len(block)].to(device)
                loss = torch.nn.functional.cross_entropy(xb @ weight + bias, yb, reduction="sum") / total
                loss.backward()
                loss_value += float(loss.detach())
                if progress:
                    progress(len(block))
            penalty = l2 * weight.pow(2).sum()
            penalty.backward()
            losses.append(loss_value + float(penalty.detach()))
            return torch.tensor(losses[-1])

        optimiser.step(closure)
        state = optimiser.state[optimiser._params[0]]
        n_iter = int(state.get("n_iter", 0))
        gradient = torch.cat([weight.grad.flatten(), bias.grad.flatten()]).abs().max().item()
        converged = gradient <= tol * 10 or n_iter < max_iter
        if not converged:
            log.warning("lbfgs probe (l2 %g) did not converge in %d iterations (largest gradient entry %.2g)",
                        l2, max_iter, gradient)
        if report is not None:
            report.append((converged, n_iter, losses))
        coef = weight.detach().cpu().numpy().T.astype(np.float32)
        if not np.isfinite(coef).all():
            raise ValidationError("lbfgs probe training diverged: the weights became NaN or inf")
        coefs[g][:, local] = coef
        intercepts[g] = bias.detach().cpu().numpy()
    return coefs, intercepts


class LbfgsProbe(ElasticNetProbe):
    """The converged L2 logistic-regression probe (module docstring) in the elastic-net
    probe's estimator conventions; ``max_iter`` and ``tol`` bound the optimisation.
    ``lr``, ``batch_size``, ``epochs``, ``shuffle`` and ``precision`` are accepted for a
    uniform protocol and ignored."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0, lr: float = 1e-3, batch_size: int = 512, epochs: int = 10,
                 seed: int = 0, device: str = "cpu", neurons: Sequence[int] | None = None, shuffle: bool = True,
                 l2_form: str = "squared", precision: str = "float32", max_iter: int = 100, tol: float = 1e-5):
        super().__init__(l1=l1, l2=l2, lr=lr, batch_size=batch_size, epochs=epochs, seed=seed, device=device,
                         neurons=neurons, shuffle=shuffle, l2_form=l2_form, precision=precision)
        self.max_iter = max_iter
        self.tol = tol

    #: the protocol's lambda search keeps only l1 = 0 for this probe
    penalties = ("l2",)
    train_many = staticmethod(train_lbfgs)

    def trainer(self) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
        return functools.partial(train_lbfgs, max_iter=self.max_iter, tol=self.tol)
