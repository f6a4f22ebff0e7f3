"""Streamed statistics: what the probe-free rankers and the neuron pages need of every
neuron, accumulated during the forward pass with no (tokens x neurons) matrix kept
anywhere (issue 24; the scale at which Choi et al. 2024 and GLUScope read every neuron of
a 7-8B model, where a store would take hundreds of gigabytes).

Per neuron and label: token counts, sums and sums of squares (float64: float32 sums lose
digits over a million tokens), and how many of the label's tokens it is active on
(value > 0). Per neuron over all tokens: its ``k`` highest and lowest tokens (row ids and
values) and a histogram. Everything is computed from the values the activation store
would hold (rounded to float16), so a statistic streamed equals the same statistic read
back from the store, and the rankings made from them are the store's.

Exactness where it is cheap. The top and bottom tokens are kept by one int64 key per
value: the float16 value's order-preserving integer code in the high bits and the row in
the low 40, so ``torch.topk`` over the keys has no ties and gives "highest value first,
equal values by row", the order of :func:`neuroscope.runs.extreme_rows` on a store,
whatever the order the batches arrive in (batches run longest sentence first). The
histogram's buckets are ranges of those codes: the top 8 bits of 16, 256 buckets of a
quarter octave each (sign, 5 exponent bits, 2 mantissa bits), mergeable and with a
relative resolution of 19 % at every scale, so no range has to be known before the pass;
its quantiles are exact to within one bucket.

Memory: the accumulators are (labels x neurons) float64 twice, int64 once, (neurons x 2k)
int64 and (neurons x 256) int64, on the device the model runs on; the per-batch work is
bounded by one layer of one batch (the accumulator is given a layer's columns at a time).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import attrs
import numpy as np
import torch

from neuroscope.errors import StoreError, ValidationError
from neuroscope.types import Corpus, NeuronIndex

log = logging.getLogger(__name__)

#: buckets of the histogram: float16 codes grouped by their top 8 bits
BUCKETS = 256
ROW_BITS = 40  # rows per pass up to 2^40
ROW_MASK = (1 << ROW_BITS) - 1
FORMAT = 1


def float16_codes(values: torch.Tensor) -> torch.Tensor:
    """Order-preserving int32 codes of float16 values in -32768 .. 32767 (-0 taken as +0):
    a < b as numbers exactly when code(a) < code(b), equal numbers equal codes."""
    bits = (values + 0.0).view(torch.int16).to(torch.int32)  # + 0.0 turns -0.0 into +0.0
    return torch.where(bits < 0, -1 - (bits & 0x7FFF), bits)


def values_of_codes(codes: np.ndarray) -> np.ndarray:
    """The float16 values (as float32) of codes from :func:`float16_codes`."""
    codes = np.asarray(codes, dtype=np.int32)
    bits = np.where(codes < 0, (-1 - codes) | 0x8000, codes).astype(np.uint16)
    return bits.view(np.float16).astype(np.float32)


def bucket_edges() -> np.ndarray:
    """(BUCKETS + 1,) float32, non-decreasing: the value of each histogram bucket's first
    code, -inf or +inf where that code is NaN (the outermost buckets), and +inf last. A
    value v is in bucket ``searchsorted(edges, v, side="right") - 1``."""
    lows = values_of_codes(np.arange(BUCKETS) * (65536 // BUCKETS) - 32768)
    side = np.where(np.arange(BUCKETS) < BUCKETS // 2, -np.inf, np.inf)
    return np.concatenate([np.where(np.isnan(lows), side, lows), [np.inf]]).astype(np.float32)


@attrs.frozen(eq=False)
class NeuronStatistics:
    """One split's streamed statistics (see the module docstring), host arrays."""

    label_names: tuple[str, ...]
    n_rows: int
    counts: np.ndarray  # (labels,) int64: tokens of each label (rows labelled -1 left out)
    sums: np.ndarray  # (labels, neurons) float64
    squares: np.ndarray  # (labels, neurons) float64
    active: np.ndarray  # (labels, neurons) int64: the label's tokens with value > 0
    top_rows: np.ndarray  # (neurons, k) int64, highest value first, equal values by row
    top_values: np.ndarray  # (neurons, k) float32
    bottom_rows: np.ndarray  # (neurons, k) int64, lowest value first
    bottom_values: np.ndarray  # (neurons, k) float32
    histogram: np.ndarray  # (neurons, BUCKETS) int64 over every row

    @property
    def n_neurons(self) -> int:
        return int(self.sums.shape[1])

    def means(self) -> np.ndarray:
        """(labels, neurons) mean per label (NaN for a label without tokens)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.counts[:, None]

    def variances(self) -> np.ndarray:
        """(labels, neurons) population variance per label (NaN for a label without tokens)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self.sums / self.counts[:, None]
            return np.maximum(self.squares / self.counts[:, None] - means * means, 0.0)

    def active_share(self) -> np.ndarray:
        """(neurons,) share of the labelled tokens on which each neuron is > 0."""
        return self.active.sum(axis=0) / max(int(self.counts.sum()), 1)

    def quantiles(self, q: Sequence[float]) -> np.ndarray:
        """(neurons, len(q)) quantiles from the histogram, linear within a bucket (exact to
        within one bucket: a quarter octave)."""
        edges = bucket_edges().astype(np.float64)
        finite_edges = np.clip(edges, -65504.0, 65504.0)
        cumulative = np.cumsum(self.histogram, axis=1)
        out = np.empty((self.n_neurons, len(q)), dtype=np.float64)
        for j, share in enumerate(q):
            if not 0.0 <= share <= 1.0:
                raise ValidationError(f"quantile {share}: expected a share between 0 and 1")
            target = share * np.maximum(cumulative[:, -1], 1)
            bucket = np.minimum((cumulative < target[:, None]).sum(axis=1), BUCKETS - 1)
            before = np.where(bucket > 0, cumulative[np.arange(self.n_neurons), bucket - 1], 0)
            inside = np.maximum(self.histogram[np.arange(self.n_neurons), bucket], 1)
            low, high = finite_edges[bucket], finite_edges[bucket + 1]
            out[:, j] = low + (high - low) * np.clip((target - before) / inside, 0.0, 1.0)
        return out

    def select(self, neurons: np.ndarray) -> "NeuronStatistics":
        """The statistics of the given neurons only (in that order)."""
        neurons = np.asarray(neurons, dtype=np.int64)
        return attrs.evolve(self, sums=self.sums[:, neurons], squares=self.squares[:, neurons],
                            active=self.active[:, neurons], top_rows=self.top_rows[neurons],
                            top_values=self.top_values[neurons], bottom_rows=self.bottom_rows[neurons],
                            bottom_values=self.bottom_values[neurons], histogram=self.histogram[neurons])

    def save(self, path: Path) -> Path:
        """Write the statistics as one .npz (atomically)."""
        from neuroscope.rundir import atomic_path

        arrays = {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name not in ("label_names",
                                                                                                  "n_rows")}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, format=np.array(FORMAT), n_rows=np.array(self.n_rows),
                         label_names=np.array(self.label_names, dtype=str), **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> "NeuronStatistics":
        """Read statistics written by :meth:`save`, checked for shape and finiteness."""
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {f.name: data[f.name] for f in attrs.fields(cls) if f.name not in ("label_names", "n_rows")}
                if int(data["format"]) != FORMAT:
                    raise ValueError(f"format {int(data['format'])}, expected {FORMAT}")
                stats = cls(tuple(str(x) for x in data["label_names"]), int(data["n_rows"]), **fields)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise StoreError(f"{path}: damaged streamed statistics ({exc}); run again to recompute them") from None
        stats.check(path)
        return stats

    def check(self, where: object) -> None:
        """Shapes agree, sums are finite, counts add up."""
        labels, neurons = len(self.label_names), self.n_neurons
        k = self.top_rows.shape[1] if self.top_rows.ndim == 2 else -1
        shapes = {"counts": (labels,), "sums": (labels, neurons), "squares": (labels, neurons),
                  "active": (labels, neurons), "top_rows": (neurons, k), "top_values": (neurons, k),
                  "bottom_rows": (neurons, k), "bottom_values": (neurons, k), "histogram": (neurons, BUCKETS)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise StoreError(f"{where}: streamed statistic {name} has shape {getattr(self, name).shape}, "
                                 f"expected {shape}")
        if not (np.isfinite(self.sums).all() and np.isfinite(self.squares).all()):
            raise StoreError(f"{where}: streamed sums are not finite")
        if (self.histogram.sum(axis=1) != self.n_rows).any() or int(self.counts.sum()) > self.n_rows:
            raise StoreError(f"{where}: streamed counts do not add up to its {self.n_rows} rows")


class StatisticsAccumulator:
    """Accumulates :class:`NeuronStatistics` from blocks of rows, a layer's columns at a
    time, on ``device``. Rows may come in any order (each row once)."""

    def __init__(self, n_neurons: int, label_names: Sequence[str], k: int = 20, device: str | torch.device = "cpu"):
        if k < 1:
            raise ValidationError(f"k: expected a number of top tokens >= 1, got {k}")
        self.device = torch.device(device)
        self.label_names = tuple(label_names)
        self.k = int(k)
        n_labels = len(self.label_names)
        zeros = dict(device=self.device)
        self.counts = torch.zeros(n_labels, dtype=torch.int64, **zeros)
        self.sums = torch.zeros(n_labels, n_neurons, dtype=torch.float64, **zeros)
        self.squares = torch.zeros_like(self.sums)
        self.active = torch.zeros(n_labels, n_neurons, dtype=torch.int64, **zeros)
        lowest = torch.iinfo(torch.int64).min
        self.top = torch.full((self.k, n_neurons), lowest, dtype=torch.int64, **zeros)
        self.bottom = torch.full((self.k, n_neurons), lowest, dtype=torch.int64, **zeros)
        self.histogram = torch.zeros(n_neurons, BUCKETS, dtype=torch.int64, **zeros)
        self.n_rows = 0

    def count_rows(self, labels: torch.Tensor) -> None:
        """Count a batch's rows (once per batch, not per layer)."""
        labels = labels.to(self.device)
        self.n_rows += int(labels.numel())
        kept = labels[labels >= 0]
        self.counts += torch.bincount(kept, minlength=len(self.label_names))

    def add(self, rows: torch.Tensor, block: torch.Tensor, labels: torch.Tensor, columns: slice) -> None:
        """``block`` (len(rows), columns) activations of rows ``rows`` (int64 row ids) with
        class ids ``labels`` (-1: none), into the neurons ``columns``."""
        values = block.to(self.device).to(torch.float16)
        if not torch.isfinite(values).all():
            bad = int(torch.nonzero(~torch.isfinite(values))[0, 1]) + (columns.start or 0)
            raise StoreError(f"non-finite activation (float16 overflow or NaN) at neuron {bad}")
        rows, labels = rows.to(self.device), labels.to(self.device)
        keep = labels >= 0
        wide = values[keep].to(torch.float64)
        y = labels[keep]
        self.sums[:, columns].index_add_(0, y, wide)
        self.squares[:, columns].index_add_(0, y, wide * wide)
        self.active[:, columns].index_add_(0, y, (wide > 0).to(torch.int64))
        codes = float16_codes(values).to(torch.int64)
        tail = (ROW_MASK - rows)[:, None]
        for kept, key in ((self.top, (codes << ROW_BITS) + tail), (self.bottom, ((-codes) << ROW_BITS) + tail)):
            both = torch.cat([kept[:, columns], key], dim=0)
            kept[:, columns] = torch.topk(both, self.k, dim=0, sorted=True).values
        width = values.shape[1]
        bucket = (codes + 32768) >> (16 - 8)
        flat = (bucket + torch.arange(width, device=self.device)[None, :] * BUCKETS).reshape(-1)
        self.histogram[columns] += torch.bincount(flat, minlength=width * BUCKETS).view(width, BUCKETS)

    def result(self) -> NeuronStatistics:
        """The statistics so far, on the host."""
        k = min(self.k, self.n_rows)

        def decode(keys: torch.Tensor, negate: bool) -> tuple[np.ndarray, np.ndarray]:
            keys = keys[:k].T.cpu().numpy()  # (neurons, k)
            rows = ROW_MASK - (keys & ROW_MASK)
            codes = keys >> ROW_BITS
            return rows.astype(np.int64), values_of_codes(-codes if negate else codes)

        top_rows, top_values = decode(self.top, False)
        bottom_rows, bottom_values = decode(self.bottom, True)
        host = {name: getattr(self, name).cpu().numpy() for name in ("counts", "sums", "squares", "active",
                                                                     "histogram")}
        return NeuronStatistics(self.label_names, self.n_rows, top_rows=top_rows, top_values=top_values,
                                bottom_rows=bottom_rows, bottom_values=bottom_values, **host)


def stream_statistics(adapter: object, corpus: Corpus, labels: np.ndarray, label_names: Sequence[str], k: int = 20,
                      progress: Callable[[int], None] | None = None) -> NeuronStatistics:
    """The statistics of ``corpus`` under ``adapter`` (a model adapter), from one forward
    pass in the adapter's batches, each layer's block accumulated on the adapter's device;
    ``labels`` the class id of every row (corpus order, -1 for none). Nothing is written."""
    index: NeuronIndex = adapter.neuron_index  # type: ignore[attr-defined]
    words = corpus.words()
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in words])]).astype(np.int64)
    if len(labels) != offsets[-1]:
        raise ValidationError(f"{corpus.name}: {len(labels)} labels for {offsets[-1]} words")
    device = torch.device(adapter.device_name())  # type: ignore[attr-defined]
    acc = StatisticsAccumulator(index.n_neurons, label_names, k, device)
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    hidden = index.hidden_size
    for ids in adapter.batches(words):  # type: ignore[attr-defined]
        vectors = adapter.embed([words[i] for i in ids])  # type: ignore[attr-defined]
        for sid, vec in zip(ids, vectors):
            if vec.shape != (index.n_layers, len(words[sid]), hidden):
                raise StoreError(f"adapter returned shape {vec.shape} for sentence {sid} of {corpus.name}; expected "
                                 f"({index.n_layers}, {len(words[sid])}, {hidden})")
        rows = torch.cat([torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in ids])
        batch_labels = labels_t[rows]
        acc.count_rows(batch_labels)
        block = torch.cat([torch.as_tensor(v) for v in vectors], dim=1)  # (layers, rows, hidden)
        for layer in range(index.n_layers):
            acc.add(rows, block[layer], batch_labels, slice(layer * hidden, (layer + 1) * hidden))
        if progress:
            progress(len(ids))
    return acc.result()
