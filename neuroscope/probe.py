"""The elastic-net logistic-regression probe (paper section 2 "Probe", section 3
"Classifier Settings").

Loss for one (l1, l2) setting, as DESIGN.md fixes it:

    mean cross-entropy over the batch + l1 * |W|_1 + l2 * |W|_2^2   (bias not penalised)

optimised with Adam (lr 1e-3) on shuffled mini-batches of 512 for 10 epochs.
The paper writes the cross-entropy as a sum; we use the mean, as the authors'
NeuroX toolkit does, so lambdas are comparable with Table 5 (docs/probe.md).

The training core, :func:`train_elastic_net`, trains G settings at once: the
weights are one (neurons, G x labels) matrix, every batch is read once and used
by all G settings. The summed loss separates per setting and Adam is
element-wise, so each setting follows exactly the trajectory it would follow
alone over the same batch order. The lambda search reuses one data read for
the whole grid.

:class:`ElasticNetProbe` wraps it in scikit-learn's estimator conventions.
"""

from __future__ import annotations

import inspect
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs
import numpy as np
import torch

from neuroscope.choices import L2_FORMS, PRECISION_NAMES
from neuroscope.model import resolve_device
from neuroscope.errors import ValidationError
from neuroscope.estimator import BaseEstimator, ClassifierMixin, NotFittedError, fit_inputs, predict_inputs
from neuroscope.features import Features, check_features, iter_chunks, n_columns, n_rows
from neuroscope.rundir import atomic_path
from neuroscope.store import ActivationSet, MemoryActivations
from neuroscope.validation import check_class_ids, check_number, check_training_labels

log = logging.getLogger(__name__)

def read_raw(X: Features, rows: np.ndarray, neurons: np.ndarray | None) -> torch.Tensor:
    """Rows as stored, without conversion: float16 for an activation set, the array's own
    float dtype for an in-memory array. The trainer converts them to its compute precision
    on the training device (float16 travels to a GPU at half the bytes of float32)."""
    if isinstance(X, ActivationSet):
        block = X.raw_rows(rows)
        if neurons is not None:
            block = np.take(block, neurons, axis=1)
    else:
        block = X[rows] if neurons is None else np.take(X[rows], neurons, axis=1)
        if block.dtype not in (np.float16, np.float32):
            block = block.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(block))


#: a training whose rows (the columns it reads, float16) take at most this many bytes reads
#: them once into memory instead of once per epoch: the same values, so the same probe
RESIDENT_BYTES = 2 ** 30


def resident_rows(X: Features, neurons: np.ndarray | None) -> np.ndarray | None:
    """All rows of ``X`` (its ``neurons`` columns) as stored, read once in the store's
    chunks, where they fit :data:`RESIDENT_BYTES`; None for an in-memory array (already
    resident) or a training too large to hold."""
    if not isinstance(X, ActivationSet):
        return None
    if isinstance(X, MemoryActivations) and neurons is None:
        return X.array  # held already (--keep memory): no second copy
    total = n_rows(X)
    width = X.n_neurons if neurons is None else len(neurons)
    if total * width * 2 > RESIDENT_BYTES:
        return None
    out = np.empty((total, width), dtype=np.float16)
    step = X.chunk_rows()
    for start in range(0, total, step):
        block = X.raw_rows(slice(start, min(start + step, total)))
        out[start : start + len(block)] = block if neurons is None else np.take(block, neurons, axis=1)
    return out


def batch_rows(X: Features, batches: Iterable[np.ndarray], neurons: np.ndarray | None, device: torch.device,
               held: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(row indices, raw tensor) per batch, exactly :func:`read_raw`'s values: from ``held``
    where the training's rows were read into memory (:func:`resident_rows`), else read per
    batch (in a background thread on a GPU, :func:`prefetched_batches`)."""
    if held is not None:
        return ((idx, torch.from_numpy(held[idx])) for idx in batches)
    if device.type == "cuda":
        return prefetched_batches(X, batches, neurons)
    return ((idx, read_raw(X, idx, neurons)) for idx in batches)


def prefetched_batches(X: Features, batches: Iterable[np.ndarray], neurons: np.ndarray | None
                       ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(row indices, raw tensor) per batch, the next batch read in a background thread
    while the caller trains on the current one (positional reads release the GIL).
    Order and contents are exactly those of ``batches``. Used when training on a GPU;
    on a CPU the reading thread competes with torch's own threads for the same cores
    and measured no faster (bench/RESULTS.md)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for idx in batches:
            future = pool.submit(read_raw, X, idx, neurons)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (idx, future)
        if pending is not None:
            yield pending[0], pending[1].result()


PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.bfloat16)))


@attrs.frozen
class TrainSettings:
    """The optimisation settings of section 3; defaults are the paper's.

    ``shuffle`` False visits rows in corpus order every epoch, and ``l2_form``
    "norm" penalises ||W||_2 instead of ||W||_2^2: together they are NeuroX's
    training (docs/probe.md), for comparisons with it.

    ``precision`` is the dtype of the two matrix products per batch (logits and
    the weight gradient). "float32" (default) is the paper's arithmetic;
    "bfloat16" multiplies bfloat16 activations and weights with float32
    accumulation while weights, Adam state, softmax and penalties stay float32
    (mixed precision). On CPUs with native bfloat16 (AVX512-BF16, AMX) and on
    GPUs since Ampere the products run several times faster; outcomes measured
    against float32 are in bench/RESULTS.md and docs/probe.md.

    ``epochs`` is a number of epochs (the paper's fixed 10) or "auto": train until the
    loss stops falling (:func:`has_converged` for :data:`PATIENCE` epochs in a row),
    at most :data:`AUTO_MAX_EPOCHS` epochs.
    """

    lr: float = 1e-3
    batch_size: int = 512
    epochs: int | str = 10
    seed: int = 0
    device: str = "cpu"
    shuffle: bool = True
    l2_form: str = attrs.field(default="squared", validator=attrs.validators.in_(L2_FORMS))
    precision: str = attrs.field(default="float32", validator=attrs.validators.in_(tuple(PRECISIONS)))


#: the metadata tag of a probe saved as safetensors (ElasticNetProbe.save / load)
PROBE_FORMAT = "neuroscope-probe/1"

#: relative fall of the epoch loss below which training has converged (docs/probe.md)
CONVERGENCE_TOL = 1e-3
#: absolute fall (nats) below which it has converged too: on separable data the loss creeps to 0
CONVERGENCE_ABS_TOL = 1e-4
#: epochs in a row that must each fall by less than CONVERGENCE_TOL for epochs="auto" to stop
PATIENCE = 2
#: the most epochs epochs="auto" trains (and at least AUTO_MAX_STEPS optimiser steps)
AUTO_MAX_EPOCHS = 1000
#: the most optimiser steps epochs="auto" trains, where an epoch is only a few batches
AUTO_MAX_STEPS = 100_000
#: the fewest optimiser steps over which the loss's fall is judged: on small data an epoch is
#: one or two Adam steps, each moving the loss too little to say it has stopped falling
WINDOW_STEPS = 100


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimiser steps (mini-batches) in one epoch over ``rows`` rows."""
    return max(1, -(-int(rows) // int(batch_size)))


def convergence_window(rows: int, batch_size: int) -> int:
    """Epochs over which :func:`has_converged` judges the loss's fall: one epoch when an
    epoch holds at least :data:`WINDOW_STEPS` batches (every real corpus of the paper),
    else as many epochs as make that many steps (docs/probe.md)."""
    return max(1, -(-WINDOW_STEPS // steps_per_epoch(rows, batch_size)))


def has_converged(losses: Sequence[float], tol: float = CONVERGENCE_TOL, window: int = 1) -> bool:
    """Whether the mean training loss fell by less than ``tol`` of itself (or by less than
    :data:`CONVERGENCE_ABS_TOL`) over the last ``window`` epochs
    (:func:`convergence_window`): the loss is no longer falling, so more epochs of the same
    optimiser would not change the probe much. Fewer epochs than ``window + 1`` have not
    converged."""
    if len(losses) < window + 1:
        return False
    previous, last = float(losses[-1 - window]), float(losses[-1])
    return previous - last <= max(tol * abs(previous), CONVERGENCE_ABS_TOL)


def train_recorded(trainer: Callable[..., tuple[np.ndarray, np.ndarray]], X: Features, y: np.ndarray,
                   n_classes: int, lambdas: Sequence[tuple[float, float]], *args: Any, **kwargs: Any
                   ) -> tuple[np.ndarray, np.ndarray, list]:
    """``trainer(X, y, n_classes, lambdas, ...)`` with its training record where it keeps one
    (its ``report`` argument, see :func:`train_elastic_net`; third-party trainers may not):
    coef, intercept, and one (converged, iterations, losses) entry or None per setting."""
    report: list = []
    try:
        parameters = inspect.signature(trainer).parameters
        keeps = "report" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    except (TypeError, ValueError):
        keeps = False
    coef, intercept = trainer(X, y, n_classes, lambdas, *args, **({"report": report} if keeps else {}), **kwargs)
    return coef, intercept, report + [None] * (len(lambdas) - len(report))


def training_record(entry: tuple[bool, int, Sequence[float]] | None) -> dict[str, Any] | None:
    """One ``report`` entry as results.json keeps it."""
    if entry is None:
        return None
    return {"converged": bool(entry[0]), "epochs": int(entry[1]), "loss_curve": [float(v) for v in entry[2]]}


def bfloat16_is_native(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run in hardware here (CUDA since Ampere; CPUs
    with AVX512-BF16 or AMX, as oneDNN reports); elsewhere they are emulated and slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def elastic_net_gradient(xb: torch.Tensor, yb: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         l1: torch.Tensor | None, l2: torch.Tensor | None, l2_form: str = "squared",
                         compute: torch.dtype = torch.float32, loss: torch.Tensor | None = None) -> None:
    """Write into ``weight.grad`` and ``bias.grad`` the gradient of the batch loss

        sum over settings g of  mean_b CE(x_b W_g + b_g, y_b) + l1_g |W_g|_1 + l2_g |W_g|_2^2

    (``l2_form`` "norm": l2_g ||W_g||_2). ``weight`` is (width, G, labels),
    ``bias`` (G, labels), ``xb`` (batch, width) already in ``compute`` dtype,
    ``l1``/``l2`` (G,) or None where every setting's lambda is 0.
    The cross-entropy part is x^T (softmax - onehot) / batch, one matrix product
    for all G settings; the subgradient of |w| at 0 is 0 (torch's sign, as
    autograd), the norm's gradient W / ||W|| is 0 while ||W||^2 <= 1e-30.
    ``loss`` (G,), optional, accumulates each setting's summed batch cross-entropy (the
    convergence check); it reads the softmax the gradient needs anyway and changes nothing
    in the weights.
    """
    batch, width = xb.shape
    g, n_classes = bias.shape
    rows = torch.arange(batch, device=xb.device)
    logits = (xb @ weight.view(width, g * n_classes).to(compute)).float().view(batch, g, n_classes) + bias
    residual = torch.softmax(logits, dim=2)
    if loss is not None:
        loss -= torch.log(residual[rows, :, yb].clamp_min(1e-30)).double().sum(dim=0)  # float64: any thread count
    residual[rows, :, yb] -= 1.0
    residual /= batch
    torch.sum(residual, dim=0, out=bias.grad)
    weight.grad.view(width, g * n_classes).copy_(xb.T @ residual.view(batch, g * n_classes).to(compute))
    if l1 is not None:
        weight.grad.addcmul_(torch.sign(weight), l1.view(1, -1, 1))
    if l2 is not None:
        if l2_form == "squared":
            scale = 2.0 * l2
        else:
            squares = weight.pow(2).sum(dim=(0, 2))
            scale = torch.where(squares > 1e-30, l2 / squares.clamp_min(1e-30).sqrt(), torch.zeros_like(squares))
        weight.grad.addcmul_(weight, scale.view(1, -1, 1))


class ElasticNetTraining:
    """The state of G elastic-net settings trained together (:func:`train_elastic_net`),
    advanced one epoch at a time, so that a search can look at the probes between epochs,
    drop settings (:meth:`keep`) and continue the others exactly where they were.

    Weights (width, G, labels), biases (G, labels) and torch's Adam state belong to the
    training; the batch order of epoch e is the e-th permutation of ``settings.seed``'s
    generator, whichever settings remain, and every setting follows the trajectory it
    would follow alone (the module docstring). A setting kept from a group of 64 after 2
    epochs and trained on to 10 is therefore the probe the full grid trains for it (the
    same arithmetic, up to the last bits a matrix product of another width may differ in).

    ``init`` (coef (G, labels, width), intercept (G, labels)), optional, starts the settings
    from these weights instead of zero (a warm start, :mod:`neuroscope.lambda_path`); the
    Adam moments start from zero either way.
    """

    def __init__(self, X: Features, y: np.ndarray, n_classes: int, lambdas: Sequence[tuple[float, float]],
                 settings: TrainSettings = TrainSettings(), neurons: np.ndarray | None = None,
                 progress: Callable[[int], None] | None = None, masks: np.ndarray | None = None,
                 init: tuple[np.ndarray, np.ndarray] | None = None):
        if len(lambdas) == 0:
            raise ValidationError("lambdas: at least one (l1, l2) setting is needed")
        total = n_rows(X)
        check_training_labels("probe training", total, n_classes)
        y = check_class_ids("y", y, total, n_classes)
        check_settings(settings)
        for l1, l2 in lambdas:
            check_number("l1", l1, low=0)
            check_number("l2", l2, low=0)
        if not isinstance(X, ActivationSet):  # a store entry checks its own blocks when they are read
            check_features("X", X)
        device = resolve_device(settings.device)
        compute = PRECISIONS[settings.precision]
        if compute is torch.bfloat16 and not bfloat16_is_native(device):
            log.warning("precision bfloat16 on %s without native bfloat16 support: the products are emulated "
                        "and may be slower than float32", device)
        width = n_columns(X) if neurons is None else len(neurons)
        g = len(lambdas)
        self.X, self.neurons, self.settings, self.progress = X, neurons, settings, progress
        self.total, self.device, self.compute = total, device, compute
        self.lambdas = [(float(a), float(b)) for a, b in lambdas]
        self.rng = np.random.default_rng(settings.seed)
        self.mask = None
        if masks is not None:
            masks = np.asarray(masks, dtype=bool)
            if masks.shape != (g, width):
                raise ValueError(f"masks have shape {masks.shape}, expected ({g}, {width})")
            self.mask = torch.from_numpy(np.ascontiguousarray(masks.T, dtype=np.float32))[:, :, None].to(device)
        if init is None:
            weight = torch.zeros(width, g, n_classes, device=device)
            bias = torch.zeros(g, n_classes, device=device)
        else:
            coef, intercept = (np.asarray(a, dtype=np.float32) for a in init)
            if coef.shape != (g, n_classes, width) or intercept.shape != (g, n_classes):
                raise ValueError(f"init has shapes {coef.shape} and {intercept.shape}, expected "
                                 f"({g}, {n_classes}, {width}) and ({g}, {n_classes})")
            weight = torch.from_numpy(np.ascontiguousarray(coef.transpose(2, 0, 1))).to(device)
            bias = torch.from_numpy(intercept.copy()).to(device)
        self._start(weight, bias)
        self.y_all = torch.from_numpy(y)
        self.window = convergence_window(total, settings.batch_size)
        #: per setting, every epoch's mean training loss, and epochs in a row it has converged
        self.losses: list[list[float]] = [[] for _ in range(g)]
        self.calm = [0] * g
        self.epochs = 0
        self.held = resident_rows(X, neurons)  # read once for every epoch where the rows fit

    def _start(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Take ``weight`` and ``bias`` as the trained tensors, with a new optimiser."""
        self.weight, self.bias = weight, bias
        weight.grad = torch.zeros_like(weight)
        bias.grad = torch.zeros_like(bias)
        device = self.device
        self.l1 = (torch.tensor([a for a, _ in self.lambdas], device=device) if any(a for a, _ in self.lambdas)
                   else None)
        self.l2 = (torch.tensor([b for _, b in self.lambdas], device=device) if any(b for _, b in self.lambdas)
                   else None)
        # torch's fused Adam kernel (same update rule) where it exists; the default elsewhere
        self.optimiser = torch.optim.Adam([weight, bias], lr=self.settings.lr,
                                          fused=device.type in ("cpu", "cuda") or None)

    def epoch(self) -> None:
        """One more epoch over the data for every setting."""
        settings, total = self.settings, self.total
        epoch_loss = torch.zeros(len(self.lambdas), device=self.device, dtype=torch.float64)
        order = self.rng.permutation(total) if settings.shuffle else np.arange(total)
        batches = (np.sort(order[start : start + settings.batch_size]) for start in range(0, total, settings.batch_size))
        for idx, raw in batch_rows(self.X, batches, self.neurons, self.device, self.held):
            elastic_net_gradient(raw.to(self.device, non_blocking=True).to(self.compute), self.y_all[idx].to(self.device),
                                 self.weight, self.bias, self.l1, self.l2, settings.l2_form, self.compute, epoch_loss)
            if self.mask is not None:
                self.weight.grad.mul_(self.mask)
            self.optimiser.step()
            if self.progress:
                self.progress(len(idx))
        self.epochs += 1
        losses = _epoch_loss(epoch_loss, total, self.weight, self.l1, self.l2, settings.l2_form)
        log.debug("epoch %d of %s done, mean loss %s", self.epochs, settings.epochs, losses)
        for k, value in enumerate(losses):
            self.losses[k].append(float(value))
            recent = self.losses[k][-1 - self.window:]
            self.calm[k] = self.calm[k] + 1 if has_converged(recent, window=self.window) else 0

    def settled(self, k: int) -> bool:
        """Whether setting k has converged for :data:`PATIENCE` epochs in a row (``--epochs auto``'s rule)."""
        return self.calm[k] >= PATIENCE

    def keep(self, indices: Sequence[int]) -> None:
        """Go on with only the settings at ``indices`` (in that order), each with its weights
        and Adam state as they are."""
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        state = self.optimiser.state
        old_weight, old_bias = self.weight, self.bias
        self.lambdas = [self.lambdas[k] for k in indices]
        self.losses = [self.losses[k] for k in indices]
        self.calm = [self.calm[k] for k in indices]
        if self.mask is not None:
            self.mask = self.mask[:, idx].contiguous()
        weight = old_weight.detach().index_select(1, idx).contiguous()
        bias = old_bias.detach().index_select(0, idx).contiguous()
        self._start(weight, bias)
        for old, new, dim in ((old_weight, weight, 1), (old_bias, bias, 0)):
            if old in state:
                entry = state[old]
                self.optimiser.state[new] = {"step": entry["step"].clone(),
                                             "exp_avg": entry["exp_avg"].index_select(dim, idx).contiguous(),
                                             "exp_avg_sq": entry["exp_avg_sq"].index_select(dim, idx).contiguous()}

    def finite(self) -> np.ndarray:
        """Per setting, whether its weights and biases are all finite."""
        with torch.no_grad():
            return (torch.isfinite(self.weight).all(dim=(0, 2)) & torch.isfinite(self.bias).all(dim=1)).cpu().numpy()

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``coef`` (G, labels, width) and ``intercept`` (G, labels), float32, as they are now."""
        return self.weight.detach().permute(1, 2, 0).contiguous().cpu().numpy(), self.bias.detach().cpu().numpy()

    def record(self) -> list[tuple[bool, int, list[float]]]:
        """One ``(converged, epochs, losses)`` per setting (:func:`train_elastic_net`'s ``report``)."""
        return [(has_converged(curve, window=self.window), len(curve), list(curve)) for curve in self.losses]


def max_epochs(settings: TrainSettings, rows: int) -> int:
    """The epochs a training runs at most: ``settings.epochs``, or with "auto" at least
    :data:`AUTO_MAX_EPOCHS` and as many as make :data:`AUTO_MAX_STEPS` optimiser steps."""
    if settings.epochs == "auto":
        return max(AUTO_MAX_EPOCHS, -(-AUTO_MAX_STEPS // steps_per_epoch(rows, settings.batch_size)))
    return int(settings.epochs)


def diverged_error(settings: TrainSettings) -> ValidationError:
    """The error of a training whose weights became NaN or inf."""
    return ValidationError(f"probe training diverged: the weights became NaN or inf (learning rate "
                           f"{settings.lr:g}); lower the learning rate")


def train_elastic_net(
    X: Features,
    y: np.ndarray,
    n_classes: int,
    lambdas: Sequence[tuple[float, float]],
    settings: TrainSettings = TrainSettings(),
    neurons: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    masks: np.ndarray | None = None,
    report: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train one probe per (l1, l2) in ``lambdas`` over one read of the data.

    The weights of all G settings are one (neurons, G x labels) matrix, so each
    batch costs two matrix products whatever G is: logits = x W and the weight
    gradient x^T (softmax - onehot) / batch. The gradient of the loss in the
    module docstring is written out (it is exact; no autograd graph is built),
    the penalties' gradients are added per setting, and Adam steps all
    settings; since the loss separates per setting and Adam is element-wise,
    setting g follows the trajectory it would follow alone
    (:class:`ElasticNetTraining` holds that state).

    ``masks`` (G, width) bool, optional, restricts setting g to the columns
    where ``masks[g]`` is true: the other weights stay exactly zero (zero
    start, zero gradient, zero Adam step), so setting g is the probe trained
    on that neuron subset alone. The minimal-neuron scan trains several
    subset sizes this way over one read of the data.

    Every epoch's mean training loss (cross-entropy over the epoch's batches plus the
    penalties at the epoch's end) is kept per setting: ``report``, a list, receives one
    ``(converged, epochs, losses)`` per setting, converged by :func:`has_converged` at the
    last epoch. With ``settings.epochs`` "auto" the group stops once every setting has
    converged (:data:`PATIENCE`), at most :data:`AUTO_MAX_EPOCHS` epochs. With a fixed
    number of epochs the loss bookkeeping leaves the weights bit-for-bit as without it.

    Returns ``coef`` (G, labels, neurons) and ``intercept`` (G, labels) as float32.
    """
    training = ElasticNetTraining(X, y, n_classes, lambdas, settings, neurons, progress, masks)
    for _ in range(max_epochs(settings, training.total)):
        training.epoch()
        if settings.epochs == "auto" and all(training.settled(k) for k in range(len(lambdas))):
            break
    if report is not None:
        report.extend(training.record())
    coef, intercept = training.weights()
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise diverged_error(settings)
    return coef, intercept


def _epoch_loss(data_loss: torch.Tensor, total: int, weight: torch.Tensor, l1: torch.Tensor | None,
                l2: torch.Tensor | None, l2_form: str) -> np.ndarray:
    """Per setting: the epoch's mean cross-entropy plus the penalties at the epoch's end."""
    with torch.no_grad():
        out = data_loss / total
        if l1 is not None:
            out = out + l1 * weight.abs().double().sum(dim=(0, 2))
        if l2 is not None:
            squares = weight.double().pow(2).sum(dim=(0, 2))
            out = out + l2 * (squares if l2_form == "squared" else squares.sqrt())
    return out.cpu().numpy().astype(np.float64)


def check_settings(settings: TrainSettings) -> None:
    """The optimisation settings a probe can be trained with (section 3)."""
    check_number("lr", settings.lr, low=0, low_open=True)
    check_number("batch_size", settings.batch_size, low=1, integer=True)
    if settings.epochs != "auto":
        check_number("epochs", settings.epochs, low=1, integer=True)
    check_number("seed", settings.seed, low=0, integer=True)


@attrs.frozen
class LinearModel:
    """A trained linear classifier restricted to some columns of the activations.

    ``columns`` are indices into the activation matrix; ``coef`` is (labels,
    len(columns)). Zeroing every other neuron (paper section 4.1) is the same
    as using only these columns, so an ablation is a LinearModel too.
    """

    coef: np.ndarray
    intercept: np.ndarray
    columns: np.ndarray


def predict_many(X: Features, models: Sequence[LinearModel], device: str = "cpu") -> np.ndarray:
    """Class ids predicted by each model for every row: (models, rows), one read of X."""
    dev = resolve_device(device)
    needed = np.unique(np.concatenate([m.columns for m in models]))
    position = {int(c): i for i, c in enumerate(needed)}
    prepared = []
    for m in models:
        local = np.array([position[int(c)] for c in m.columns], dtype=np.int64)
        every = len(local) == len(needed) and bool((local == np.arange(len(needed))).all())
        prepared.append((None if every else torch.from_numpy(local).to(dev),
                         torch.from_numpy(np.ascontiguousarray(m.coef.T, dtype=np.float32)).to(dev),
                         torch.from_numpy(np.asarray(m.intercept, dtype=np.float32)).to(dev)))
    out = np.empty((len(models), n_rows(X)), dtype=np.int64)
    with torch.no_grad():
        for start, block in iter_chunks(X, needed):
            xb = torch.from_numpy(block).to(dev)
            for k, (local, weight, bias) in enumerate(prepared):
                # a model on every column reads the block as it is (the same values, layout and product)
                scores = (xb if local is None else xb.index_select(1, local)) @ weight + bias
                # numpy's argmax on the CPU (about 10x torch's for a few dozen labels); both take the first maximum
                out[k, start : start + len(block)] = (scores.numpy().argmax(axis=1) if dev.type == "cpu"
                                                      else scores.argmax(dim=1).cpu().numpy())
    return out


def predict_proba_one(X: Features, model: LinearModel, device: str = "cpu") -> np.ndarray:
    dev = resolve_device(device)
    weight = torch.from_numpy(np.ascontiguousarray(model.coef.T, dtype=np.float32)).to(dev)
    bias = torch.from_numpy(np.asarray(model.intercept, dtype=np.float32)).to(dev)
    parts = []
    with torch.no_grad():
        for _, block in iter_chunks(X, model.columns):
            parts.append(torch.softmax(torch.from_numpy(block).to(dev) @ weight + bias, dim=1).cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, len(model.intercept)), dtype=np.float32)


#: whether this process has explained an unconverged probe yet (:func:`note_unconverged`)
_UNCONVERGED_NOTED = False


def note_unconverged(what: str, epochs: int) -> None:
    """A probe stopped after ``epochs`` epochs with its loss still falling. Said once per
    run (a paper-default run has dozens of such probes: every one of the paper's 10-epoch
    trainings on a large corpus), calmly, with what it means; later ones are debug lines.
    results.json and the report keep each oracle probe's record."""
    global _UNCONVERGED_NOTED
    if _UNCONVERGED_NOTED:
        log.debug("%s had not converged after %d epochs", what, epochs)
        return
    _UNCONVERGED_NOTED = True
    log.warning("%s had not converged after %d %s: its loss was still falling (by more than %g of itself per epoch). "
                "That is what the paper's fixed 10 epochs do on a corpus of this size; the numbers are those of its "
                "protocol, and probes trained to convergence may score higher. --epochs auto (epochs='auto') trains "
                "until the loss stops falling. Said once; results.json and the report record each oracle probe's "
                "convergence.", what, epochs, "epochs" if epochs != 1 else "epoch", CONVERGENCE_TOL)


def reset_unconverged_note() -> None:
    """Let the next unconverged probe be explained again (each run says it once)."""
    global _UNCONVERGED_NOTED
    _UNCONVERGED_NOTED = False


class ElasticNetProbe(ClassifierMixin, BaseEstimator):
    """Elastic-net logistic regression (paper section 2), a scikit-learn estimator.

    ``__init__`` only stores parameters; ``fit`` returns ``self``; fitted state
    ends in ``_``: ``coef_`` (labels, neurons), ``intercept_`` (labels,),
    ``classes_`` (sorted ``np.unique`` of the training labels; any labels, strings
    included), ``neurons_`` (the activation columns the probe reads),
    ``n_features_in_``, and the training record ``n_iter_`` (epochs run),
    ``loss_curve_`` (mean loss per epoch) and ``converged_`` (the loss had stopped
    falling at the last epoch, :func:`has_converged`; a probe that had not is logged as a
    warning). ``X`` is an :class:`~neuroscope.store.ActivationSet` (read in chunks), an
    array or a memory-mapped array.

    With scikit-learn installed the probe is one of its classifiers (``clone``,
    ``Pipeline``, ``GridSearchCV``, ``cross_val_score``; :mod:`neuroscope.estimator`).
    ``score`` is scikit-learn's mean accuracy, a fraction in [0, 1], because its model
    selection compares scores; :meth:`accuracy` gives the percentage the rest of
    neuroscope reports. The default, ``epochs="auto"``, trains until the loss stops falling
    (judged over at least 100 optimiser steps, :func:`convergence_window`), so the probe on
    its own converges on data of any size; the protocol passes the paper's fixed
    ``epochs=10`` itself (section 3, "Classifier Settings").
    """

    #: the batched training core the protocol uses for lambda grids, minimal-set
    #: scans and control probes (see :func:`train_elastic_net`)
    train_many = staticmethod(train_elastic_net)

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        lr: float = 1e-3,
        batch_size: int = 512,
        epochs: int | str = "auto",
        seed: int = 0,
        device: str = "cpu",
        neurons: Sequence[int] | None = None,
        shuffle: bool = True,
        l2_form: str = "squared",
        precision: str = "float32",
    ):
        self.l1 = l1
        self.l2 = l2
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.device = device
        self.neurons = neurons
        self.shuffle = shuffle
        self.l2_form = l2_form
        self.precision = precision

    #: the penalties the probe's objective takes (the lambda search drops l1 where absent)
    penalties = ("l1", "l2")

    def trainer(self) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
        """The training function with this probe's own options bound: ``train_many`` here."""
        return self.train_many

    def _settings(self) -> TrainSettings:
        return TrainSettings(self.lr, self.batch_size, self.epochs, self.seed, self.device, self.shuffle, self.l2_form,
                             self.precision)

    def _columns(self, X: Features) -> np.ndarray:
        if self.neurons is None:
            return np.arange(n_columns(X))
        columns = np.asarray(self.neurons, dtype=np.int64)
        if columns.ndim != 1 or (len(columns) and (columns.min() < 0 or columns.max() >= n_columns(X))):
            raise ValidationError(f"neurons: expected column indices in 0 .. {n_columns(X) - 1}")
        return columns

    def set_fitted(self, classes: Sequence[Any], coef: np.ndarray, intercept: np.ndarray,
                   neurons: np.ndarray | None = None, n_features: int | None = None) -> "ElasticNetProbe":
        """Give the probe weights trained elsewhere (a saved oracle, a grid setting), as ``fit`` would."""
        self.classes_ = np.asarray(classes)
        self.coef_, self.intercept_ = np.asarray(coef), np.asarray(intercept)
        if self.coef_.shape != (len(self.classes_), self.coef_.shape[1]) or self.intercept_.shape != (len(self.classes_),):
            raise ValidationError(f"coef {self.coef_.shape} and intercept {self.intercept_.shape} do not fit "
                                  f"{len(self.classes_)} classes")
        self.neurons_ = np.arange(self.coef_.shape[1]) if neurons is None else np.asarray(neurons, dtype=np.int64)
        self.n_features_in_ = int(self.coef_.shape[1] if n_features is None else n_features)
        return self

    def _train(self, X: Features, y: Sequence[Any], lambdas: Sequence[tuple[float, float]],
               progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
        """Validate, then train one probe per (l1, l2) over one read of the data: classes,
        columns, coef, intercept and the training record per setting."""
        X, y = fit_inputs(self, X, y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValidationError(f"y: one class only ({classes[0]!r}); a probe needs at least two classes to tell "
                                  "apart")
        columns = self._columns(X)
        coef, intercept, report = train_recorded(self.trainer(), X, np.searchsorted(classes, y), len(classes),
                                                 lambdas, self._settings(), None if self.neurons is None else columns,
                                                 progress)
        return classes, columns, coef, intercept, report

    def fit(self, X: Features, y: Sequence[Any], progress: Callable[[int], None] | None = None) -> "ElasticNetProbe":
        classes, columns, coef, intercept, report = self._train(X, y, [(self.l1, self.l2)], progress)
        self.set_fitted(classes, coef[0], intercept[0], columns, self.n_features_in_)
        self._record(report[0])
        return self

    def _record(self, entry: tuple[bool, int, Sequence[float]] | None) -> None:
        """Keep the training record (converged, iterations, losses); warn if not converged."""
        if entry is None:
            return
        self.converged_, self.n_iter_, self.loss_curve_ = bool(entry[0]), int(entry[1]), list(entry[2])
        if not self.converged_:
            self.warn_unconverged()

    def training_record(self) -> dict[str, Any] | None:
        """converged / epochs / loss_curve of the last fit (None if the trainer keeps no record)."""
        if not hasattr(self, "converged_"):
            return None
        return training_record((self.converged_, self.n_iter_, self.loss_curve_))

    def warn_unconverged(self) -> None:
        """Say (once: :func:`note_unconverged`) that the last fit stopped while its loss was
        still falling."""
        note_unconverged(f"{type(self).__name__} (l1 {self.l1:g}, l2 {self.l2:g})", self.n_iter_)

    @classmethod
    def fit_grid(
        cls,
        X: Features,
        y: Sequence[Any],
        lambdas: Sequence[tuple[float, float]],
        progress: Callable[[int], None] | None = None,
        **params: Any,
    ) -> list["ElasticNetProbe"]:
        """One fitted probe per (l1, l2), all trained over one read of the data."""
        template = cls(**params)
        classes, columns, coef, intercept, report = template._train(X, y, lambdas, progress)
        probes = []
        for k, (l1, l2) in enumerate(lambdas):
            probe = cls(**{**params, "l1": l1, "l2": l2}).set_fitted(classes, coef[k], intercept[k], columns,
                                                                     template.n_features_in_)
            probe._record(report[k])
            probes.append(probe)
        return probes

    def linear_model(self, keep: np.ndarray | None = None) -> LinearModel:
        """The probe as a LinearModel; ``keep`` (positions in ``coef_`` columns)
        zeroes every other neuron (ablation, paper section 4.1)."""
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        if keep is None:
            return LinearModel(self.coef_, self.intercept_, self.neurons_)
        keep = np.asarray(keep, dtype=np.int64)
        return LinearModel(self.coef_[:, keep], self.intercept_, self.neurons_[keep])

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """The fitted probe as a safetensors file: tensors ``coef`` (labels, neurons) and
        ``intercept`` (float32) and ``neurons`` (int64, the activation columns it reads); its
        class, parameters and classes (and ``metadata``, e.g. the run's model and layers) as
        JSON in the file's metadata. :meth:`load` gives a probe with identical predictions."""
        from safetensors.numpy import save_file

        if not hasattr(self, "coef_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        path = Path(path)
        header = {"format": PROBE_FORMAT, "probe": type(self).__name__, "params": self.get_params(),
                  "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
                  "extra": metadata or {}}
        tensors = {"coef": np.ascontiguousarray(self.coef_, dtype=np.float32),
                   "intercept": np.ascontiguousarray(self.intercept_, dtype=np.float32),
                   "neurons": np.ascontiguousarray(self.neurons_, dtype=np.int64)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"neuroscope": json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ElasticNetProbe":
        """A probe :meth:`save` wrote (or ``neuroscope export --to safetensors``), fitted."""
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as fh:
                header = json.loads((fh.metadata() or {}).get("neuroscope", "null"))
            tensors = load_file(str(path))
        except (OSError, SafetensorError, ValueError) as exc:
            raise ValidationError(f"{path}: not a readable safetensors file ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != PROBE_FORMAT or \
                not {"coef", "intercept", "neurons"} <= set(tensors):
            raise ValidationError(f"{path}: not a neuroscope probe (expected {PROBE_FORMAT!r} metadata and coef, "
                                  "intercept and neurons tensors)")
        params = {k: v for k, v in header["params"].items() if k in inspect.signature(cls.__init__).parameters}
        probe = cls(**params)
        probe.set_fitted(header["classes"], tensors["coef"], tensors["intercept"], tensors["neurons"])
        probe.metadata_ = header.get("extra", {})
        return probe

    def decision_function(self, X: Features) -> np.ndarray:
        """The linear scores x W + b, (rows, classes); with two classes scikit-learn's binary
        convention, (rows,): the second class's score minus the first's (positive: the
        second class)."""
        X = predict_inputs(self, X)
        model = self.linear_model()
        weight = np.ascontiguousarray(model.coef.T, dtype=np.float32)
        scores = np.concatenate([block @ weight + model.intercept for _, block in iter_chunks(X, model.columns)]
                                or [np.zeros((0, len(self.classes_)), dtype=np.float32)])
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X: Features) -> np.ndarray:
        X = predict_inputs(self, X)
        return self.classes_[predict_many(X, [self.linear_model()], self.device)[0]]

    def predict_proba(self, X: Features) -> np.ndarray:
        X = predict_inputs(self, X)
        return predict_proba_one(X, self.linear_model(), self.device)

    def predict_log_proba(self, X: Features) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def accuracy(self, X: Features, y: Sequence[Any]) -> float:
        """Accuracy in percent, as neuroscope reports it; a label the probe never saw in
        training counts as an error."""
        return 100.0 * float(np.mean(self.predict(X) == np.asarray(y)))
