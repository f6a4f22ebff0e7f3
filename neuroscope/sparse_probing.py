"""k-sparse probing (Gurnee et al. 2023, "Finding Neurons in a Haystack", section 3):
how few of a ranking's neurons carry each label.

For a ranking and a label c, a one-vs-rest logistic probe is trained on the label's k best
neurons (the ranking's own order for c, :meth:`~neuroscope.ranking.Ranking.label_order`,
where the ranker scores labels, else its overall order) for every k of ``ks``; its F1 for
c and its accuracy are measured on every test word. The curve of F1 over k says whether a
label lives in a handful of neurons (F1 high at k = 1 or 2) or is spread over many.

A ceiling (Gurnee et al.'s optimal sparse probe, reduced to what an exhaustive search can
do): for k <= ``ceiling``, of every subset of size k of the label's ``pool`` best neurons
by one-vs-rest mean difference, the one whose probe reaches the lowest training objective,
measured on test like the curves' probes. The search ranks all the subsets exactly by
least squares (19,600 of size 3 among 50: a 4 x 4 solve each, from the pool's Gram matrix)
and fits the best ``shortlist`` of them as probes (every subset with ``shortlist`` None:
the same choice on the tests' data, at a hundred times the cost). A ranker whose k-sparse
F1 at k <= 3 reaches the ceiling found the best few neurons the pool holds.

The probes (docs/ranking.md, "k-sparse probing", states the choices):

* trained on ``rows`` train words drawn uniformly without replacement from the seed (all
  of them when there are fewer), so the labels keep their corpus frequencies;
* each neuron standardised on that sample (mean 0, standard deviation 1; a constant
  neuron is 0), which makes ``l2`` mean the same for every neuron;
* objective: mean log loss + ``l2`` ||w||^2 (the bias is not penalised), minimised by
  Newton's method with a backtracking line search until the gradient's largest entry is
  below ``tol``: the exact optimum, not an optimiser's stopping point. Many problems are
  solved at once in torch (float32 products, float64 Hessians and solves);
* a label takes part when the sample holds at least ``min_positives`` of its words and as
  many other words, and the test split holds one of its words.

Words whose label was unseen in train are negatives for every label, or left out of the
test measures under ``--unseen-labels exclude``.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Callable, Sequence

import attrs
import numpy as np
import torch

from neuroscope.choices import DEFAULT_KS
from neuroscope.errors import ValidationError
from neuroscope.features import Features, iter_chunks, n_rows, read_rows
from neuroscope.ranking import Ranking, descending
from neuroscope.validation import check_number

log = logging.getLogger(__name__)


@attrs.frozen
class SparseSettings:
    """What k-sparse probing does (module docstring; ``--ksparse*`` options)."""

    ks: tuple[int, ...] = DEFAULT_KS
    rows: int = 10000
    l2: float = 1e-4
    min_positives: int = 10
    ceiling: int = 3
    pool: int = 50
    #: the ceiling's subsets fitted as probes: the best this many by least squares (None: all)
    shortlist: int | None = 100
    tol: float = 1e-5
    max_iter: int = 100
    #: bytes for one batch of problems' design matrices
    memory: int = 2 ** 28

    def __attrs_post_init__(self) -> None:
        if not self.ks or list(self.ks) != sorted(set(self.ks)):
            raise ValidationError(f"--ksparse-k: expected increasing different sizes, got {list(self.ks)}")
        for k in self.ks:
            check_number("--ksparse-k", k, low=1, integer=True)
        check_number("--ksparse-rows", self.rows, low=2, integer=True)
        check_number("--ksparse-l2", self.l2, low=0, low_open=True)
        check_number("k-sparse min_positives", self.min_positives, low=1, integer=True)
        check_number("--ksparse-ceiling", self.ceiling, low=0, high=4, integer=True)
        check_number("--ksparse-pool", self.pool, low=1, integer=True)
        if self.shortlist is not None:
            check_number("k-sparse shortlist", self.shortlist, low=1, integer=True)

    def sizes(self, n_neurons: int) -> tuple[int, ...]:
        """The curve's k that the network has neurons for."""
        return tuple(k for k in self.ks if k <= n_neurons)


@attrs.frozen
class Fitted:
    """Fitted one-vs-rest probes on standardised neurons: per problem, its neurons, weights,
    bias and whether Newton's method converged."""

    neurons: list[np.ndarray]
    weights: list[np.ndarray]
    bias: np.ndarray
    loss: np.ndarray
    converged: np.ndarray


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` train rows drawn uniformly without replacement from ``seed`` (every row when
    there are fewer), in corpus order."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 2023]).choice(n, size=size, replace=False))


def eligible_labels(train_labels: np.ndarray, test_labels: np.ndarray, n_labels: int, min_positives: int
                    ) -> tuple[list[int], dict[int, str]]:
    """The labels that take part, and why each other label does not (module docstring)."""
    train = np.bincount(train_labels[train_labels >= 0], minlength=n_labels)
    test = np.bincount(test_labels[test_labels >= 0], minlength=n_labels)
    taking, left = [], {}
    for c in range(n_labels):
        if train[c] < min_positives:
            left[c] = f"{int(train[c])} of its words in the probes' train sample, fewer than {min_positives}"
        elif len(train_labels) - train[c] < min_positives:
            left[c] = f"fewer than {min_positives} other words in the probes' train sample"
        elif test[c] == 0:
            left[c] = "none of its words in test"
        else:
            taking.append(c)
    return taking, left


def _objective(Xb: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean log loss + l2 ||w||^2 of each problem (float64)."""
    z = torch.bmm(Xb, theta.to(Xb.dtype).unsqueeze(-1)).squeeze(-1)
    data = (torch.nn.functional.softplus(z) - y * z).double().mean(dim=1)
    return data + l2 * (theta[:, :-1] ** 2).sum(dim=1)


def newton_logistic(X: torch.Tensor, y: torch.Tensor, l2: float, tol: float = 1e-5, max_iter: int = 100
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary logistic regressions solved together: ``X`` (problems, rows, k) float32,
    ``y`` (problems, rows) 0/1. Minimises mean log loss + ``l2`` ||w||^2 (bias free) by
    Newton's method with backtracking. Returns theta (problems, k + 1; the bias last,
    float64), the objective and whether each problem reached max|gradient| < ``tol``."""
    B, n, k = X.shape
    Xb = torch.cat([X, torch.ones(B, n, 1, dtype=X.dtype)], dim=2)
    y = y.to(X.dtype)
    theta = torch.zeros(B, k + 1, dtype=torch.float64)
    ridge = torch.full((k + 1,), 2 * l2, dtype=torch.float64)
    ridge[-1] = 0.0
    loss = _objective(Xb, y, theta, l2)
    converged = torch.zeros(B, dtype=torch.bool)
    stalled = torch.zeros(B, dtype=torch.bool)  # no decrease left to find in float32 arithmetic
    for _ in range(max_iter + 1):
        z = torch.bmm(Xb, theta.to(X.dtype).unsqueeze(-1)).squeeze(-1)
        p = torch.sigmoid(z)
        grad = torch.bmm(Xb.transpose(1, 2), (p - y).unsqueeze(-1)).squeeze(-1).double() / n + ridge * theta
        converged = grad.abs().amax(dim=1) < tol
        active = ~(converged | stalled)
        if not bool(active.any()) or _ == max_iter:
            break
        weight = (p * (1 - p)).unsqueeze(-1)
        hessian = torch.bmm(Xb.transpose(1, 2), Xb * weight).double() / n + torch.diag(ridge)
        hessian[:, -1, -1] += 1e-12  # a bias whose words are all predicted with certainty
        step = torch.linalg.solve(hessian, grad.unsqueeze(-1)).squeeze(-1)
        expected = (grad * step).sum(dim=1)
        t = torch.ones(B, dtype=torch.float64)
        pending = active.clone()
        for _halving in range(40):
            trial = theta - t.unsqueeze(-1) * step
            trial_loss = _objective(Xb, y, trial, l2)
            accept = pending & ((trial_loss <= loss - 1e-4 * t * expected) | (expected < 1e-12))
            theta[accept], loss[accept] = trial[accept], trial_loss[accept]
            pending &= ~accept
            if not bool(pending.any()):
                break
            t = torch.where(pending, t / 2, t)
        stalled |= pending
    return theta, loss, converged


class SparseProber:
    """k-sparse probes of one cell's activations: the training sample (read once, over the
    neurons asked for), its standardisation and the streamed test split."""

    def __init__(self, train: Features, train_labels: np.ndarray, test: Features, test_labels: np.ndarray,
                 n_labels: int, settings: SparseSettings, seed: int, unseen: str = "error"):
        self.settings = settings
        self.n_labels = n_labels
        self.rows = sample_rows(n_rows(train), settings.rows, seed)
        self.y = np.asarray(train_labels)[self.rows]
        self.train = train
        self.test = test
        test_labels = np.asarray(test_labels)
        self.test_keep = test_labels >= 0 if unseen == "exclude" else np.ones(len(test_labels), dtype=bool)
        self.y_test = test_labels
        self.labels, self.left_out = eligible_labels(self.y, test_labels[self.test_keep], n_labels,
                                                     settings.min_positives)
        self._columns: dict[int, int] = {}
        self._block = np.zeros((len(self.rows), 0), dtype=np.float32)
        self._mean = np.zeros(0, dtype=np.float32)
        self._scale = np.zeros(0, dtype=np.float32)

    def need(self, neurons: np.ndarray) -> None:
        """Read the sample's rows of ``neurons`` not read yet (a neuron is read once)."""
        new = [int(j) for j in np.unique(neurons) if int(j) not in self._columns]
        if not new:
            return
        block = read_rows(self.train, self.rows, np.asarray(new, dtype=np.int64)).astype(np.float32)
        mean = block.mean(axis=0, dtype=np.float64)
        sd = block.std(axis=0, dtype=np.float64)
        scale = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
        for j in new:
            self._columns[j] = len(self._columns)
        self._block = np.concatenate([self._block, ((block - mean) * scale).astype(np.float32)], axis=1)
        self._mean = np.concatenate([self._mean, mean.astype(np.float32)])
        self._scale = np.concatenate([self._scale, scale.astype(np.float32)])

    def standardised(self, neurons: np.ndarray) -> np.ndarray:
        """The sample's standardised rows of ``neurons`` (read by :meth:`need`)."""
        at = np.fromiter((self._columns[int(j)] for j in neurons), dtype=np.int64, count=len(neurons))
        return self._block[:, at]

    def fit(self, problems: Sequence[tuple[int, np.ndarray]]) -> Fitted:
        """One probe per (label, neurons) problem, problems of one size solved together in
        batches that keep within the settings' memory; in the order given."""
        problems = list(problems)
        theta: list[np.ndarray | None] = [None] * len(problems)
        loss = np.zeros(len(problems))
        done = np.zeros(len(problems), dtype=bool)
        if problems:
            self.need(np.concatenate([p[1] for p in problems]))
        n = len(self.rows)
        for k in sorted({len(p[1]) for p in problems}):
            at = [i for i, p in enumerate(problems) if len(p[1]) == k]
            batch = max(1, int(self.settings.memory // (4 * n * (k + 1) * 3)))
            for first in range(0, len(at), batch):
                group = at[first : first + batch]
                X = torch.from_numpy(np.stack([self.standardised(problems[i][1]) for i in group]))
                y = torch.from_numpy(np.stack([self.y == problems[i][0] for i in group]).astype(np.float32))
                fitted, value, ok = newton_logistic(X, y, self.settings.l2, self.settings.tol, self.settings.max_iter)
                for row, i in enumerate(group):
                    theta[i] = fitted[row].numpy()
                loss[group], done[group] = value.numpy(), ok.numpy()
        return Fitted([np.asarray(p[1], dtype=np.int64) for p in problems], [t[:-1] for t in theta],
                      np.array([t[-1] for t in theta], dtype=np.float64), loss, done)

    def measure(self, labels: Sequence[int], fitted: Fitted) -> list[dict[str, float]]:
        """F1 of each problem's label and accuracy on the test words (one pass over test,
        reading only the neurons the probes use)."""
        if not fitted.neurons:
            return []
        used = np.unique(np.concatenate(fitted.neurons))
        position = {int(j): i for i, j in enumerate(used)}
        mean = np.array([self._mean[self._columns[int(j)]] for j in used], dtype=np.float64)
        scale = np.array([self._scale[self._columns[int(j)]] for j in used], dtype=np.float64)
        # standardisation folded into the weights: z = X[:, used] @ W + b
        W = np.zeros((len(used), len(labels)), dtype=np.float64)
        b = np.asarray(fitted.bias, dtype=np.float64).copy()
        for p, (neurons, w) in enumerate(zip(fitted.neurons, fitted.weights)):
            at = [position[int(j)] for j in neurons]
            W[at, p] = w * scale[at]
            b[p] -= float((w * scale[at] * mean[at]).sum())
        counts = np.zeros((len(labels), 4), dtype=np.int64)  # tp, fp, fn, tn
        target = np.asarray(labels)[None, :]
        for start, block in iter_chunks(self.test, used):
            keep = self.test_keep[start : start + len(block)]
            gold = self.y_test[start : start + len(block)][keep][:, None] == target
            predicted = (block[keep].astype(np.float64) @ W + b) > 0
            counts[:, 0] += (predicted & gold).sum(axis=0)
            counts[:, 1] += (predicted & ~gold).sum(axis=0)
            counts[:, 2] += (~predicted & gold).sum(axis=0)
            counts[:, 3] += (~predicted & ~gold).sum(axis=0)
        out = []
        for tp, fp, fn, tn in counts.tolist():
            f1 = 100.0 * 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 100.0
            out.append({"f1": f1, "accuracy": 100.0 * (tp + tn) / max(1, tp + fp + fn + tn)})
        return out

    def curves(self, ranking: Ranking, label_names: Sequence[str], progress: Callable[[int], None] | None = None
               ) -> dict[str, Any]:
        """Per taking label and k: test F1 and accuracy of the probe on the label's k best
        neurons of ``ranking``; their means over the labels (macro), and the neurons of k = 1."""
        ks = self.settings.sizes(ranking.n_neurons)
        tops = {c: ranking.label_order(c, ks[-1]) for c in self.labels}
        f1 = np.full((len(self.labels), len(ks)), np.nan)
        acc = np.full_like(f1, np.nan)
        unconverged = 0
        for i, k in enumerate(ks):
            fitted = self.fit([(c, tops[c][:k]) for c in self.labels])
            unconverged += int((~fitted.converged).sum())
            for row, measured in enumerate(self.measure(self.labels, fitted)):
                f1[row, i], acc[row, i] = measured["f1"], measured["accuracy"]
            if progress is not None:
                progress(1)
        if unconverged:
            log.warning("k-sparse probing (%s): %d probes stopped at %d Newton steps before their gradient fell "
                        "below %g", ranking.method, unconverged, self.settings.max_iter, self.settings.tol)
        return {"ks": list(ks), "label_orders": "per label" if ranking.label_scores is not None else "overall",
                **self._measured(label_names, f1, acc, {c: {"best_neuron": int(tops[c][0])} for c in self.labels}),
                "unconverged": unconverged}

    def ceiling(self, mean_diff: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
        """The small-k optimum (module docstring) per taking label, k = 1 .. ``ceiling``:
        the chosen neurons and their probe's test F1 and accuracy. ``mean_diff`` (labels,
        neurons): the one-vs-rest mean differences the pool is cut from."""
        s = self.settings
        ks = [k for k in range(1, s.ceiling + 1) if k <= min(s.pool, mean_diff.shape[1])]
        f1 = np.full((len(self.labels), len(ks)), np.nan)
        acc = np.full_like(f1, np.nan)
        chosen: dict[int, list[list[int]]] = {}
        for r, c in enumerate(self.labels):
            pool = descending(mean_diff[c])[: s.pool]
            self.need(pool)
            best = [self.best_subset(c, pool, k) for k in ks]
            refit = self.fit([(c, sub) for sub in best])
            for i, measured in enumerate(self.measure([c] * len(best), refit)):
                f1[r, i], acc[r, i] = measured["f1"], measured["accuracy"]
            chosen[c] = [sorted(int(j) for j in sub) for sub in best]
        n_pool = min(s.pool, mean_diff.shape[1])
        return {"ks": ks, "pool": s.pool, "shortlist": s.shortlist,
                "subsets_per_label": sum(math.comb(n_pool, k) for k in ks),
                **self._measured(label_names, f1, acc, {c: {"neurons": chosen[c]} for c in self.labels})}

    def _measured(self, label_names: Sequence[str], f1: np.ndarray, accuracy: np.ndarray,
                  extra: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """``per_label`` (each taking label's F1 and accuracy per k, and ``extra``) and their
        means over the labels."""
        return {"per_label": {label_names[c]: {"f1": f1[r].tolist(), "accuracy": accuracy[r].tolist(), **extra[c]}
                              for r, c in enumerate(self.labels)},
                "mean_f1": f1.mean(axis=0).tolist() if len(self.labels) else [],
                "mean_accuracy": accuracy.mean(axis=0).tolist() if len(self.labels) else []}

    def best_subset(self, label: int, pool: np.ndarray, k: int) -> np.ndarray:
        """Of every size-k subset of ``pool``, the one whose logistic probe reaches the lowest
        training objective: the subsets ranked exactly by least squares (the residual of the
        label's 0/1 indicator regressed on them, from the pool's Gram matrix), the best
        ``shortlist`` of them (all: ``shortlist`` None) fitted by Newton's method."""
        subsets = np.array(list(itertools.combinations(range(len(pool)), k)), dtype=np.int64)
        shortlist = self.settings.shortlist
        if shortlist is not None and len(subsets) > shortlist:
            X = self.standardised(pool).astype(np.float64)
            y = (self.y == label).astype(np.float64)
            n = len(y)
            design = np.concatenate([X, np.ones((n, 1))], axis=1)
            gram, cross = design.T @ design / n, design.T @ y / n
            with_bias = np.concatenate([subsets, np.full((len(subsets), 1), len(pool))], axis=1)
            G = gram[with_bias[:, :, None], with_bias[:, None, :]] + 1e-10 * np.eye(k + 1)
            b = cross[with_bias]
            explained = (b * np.linalg.solve(G, b[..., None])[..., 0]).sum(axis=1)
            subsets = subsets[np.lexsort((np.arange(len(subsets)), -explained))[:shortlist]]
        fitted = self.fit([(label, pool[sub]) for sub in subsets])
        return pool[subsets[int(np.argmin(fitted.loss))]]

    def describe(self, label_names: Sequence[str]) -> dict[str, Any]:
        """What the probes were trained on, and the labels left out with the reason."""
        s = self.settings
        return {"train_rows": int(len(self.rows)), "l2": s.l2, "min_positives": s.min_positives,
                "labels": [label_names[c] for c in self.labels],
                "left_out": {label_names[c]: why for c, why in self.left_out.items()}}
