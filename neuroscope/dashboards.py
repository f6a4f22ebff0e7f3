"""Neuron dashboards: what a neuron's page shows, computed from an activation store in
four streamed passes (docs/results.md, "Neuron dashboards").

Per neuron, as SAEDashboard and Neuronpedia show features (Bills et al. 2023; McDougall's
sae_vis; Neuronpedia's feature pages):

* its activation-density histogram and the share of tokens on which it is active (> 0),
  with its highest and lowest tokens (:class:`~neuroscope.statistics.NeuronStatistics`,
  accumulated from the store: the same numbers the streamed pass gives);
* examples at :data:`QUANTILES` ranges of its activation (deciles by default: range i holds
  the tokens between its i-th and (i+1)-th quantile), :data:`PER_QUANTILE` per range,
  drawn by a fixed hash of the row so the choice is uniform over the range, seeded and
  the same in every run;
* its most correlated neurons among all neurons of its layer in the store (Pearson over
  the split's tokens; layers wider than :data:`MAX_CORRELATION_WIDTH` are skipped);
* the correlation of its value with the word's position in the sentence;
* tags after Voita et al. (2024, "Neurons in LLMs: dead, n-gram, positional"), with our
  thresholds (:func:`tags_of`): ``dead`` (never active on the split), ``token`` (one word
  type makes at least half of its top examples), ``n-gram`` (one pair of previous word and
  word does), ``positional`` (|correlation with position| >= 0.5).

Memory: one store chunk, and per layer a (chosen neurons x layer width) float64 matrix of
cross products; the examples' sentences are read in a last pass, each record holding one
sentence's values.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Sequence

import attrs
import numpy as np
import torch

from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.statistics import NeuronStatistics, StatisticsAccumulator
from neuroscope.store import ActivationSet, word_positions

log = logging.getLogger(__name__)

#: activation ranges with examples (deciles)
QUANTILES = 10
#: examples per range
PER_QUANTILE = 2
#: top and bottom examples per neuron
EXAMPLES = 20
#: bins of the activation-density histogram, between the neuron's lowest and highest value
HISTOGRAM_BINS = 40
#: bytes of float32 activations per chunk of the passes (the range pass holds 9 bools per value)
CHUNK_BYTES = 16 * 2**20
#: correlated neurons listed per neuron
CORRELATED = 5
#: layers wider than this get no correlation (its Gram matrix would not fit a laptop)
MAX_CORRELATION_WIDTH = 8192
#: share of the top examples one word type (or word pair) needs for a token (n-gram) tag
DETECTOR_SHARE = 0.5
#: |correlation with the word's position| for the positional tag
POSITIONAL_CORRELATION = 0.5
#: multiplier of the row hash that orders a range's candidate examples (Knuth's)
HASH = 2654435761


@attrs.frozen(eq=False)
class Dashboards:
    """Per neuron (the store columns ``neurons``, in that order) what its dashboard shows."""

    neurons: np.ndarray  # (n,) store columns
    network: np.ndarray  # (n,) their network ids (layer * hidden_size + unit)
    layers: np.ndarray  # (n,) layer of each neuron
    stats: NeuronStatistics  # of these neurons: histogram, active share, top / bottom rows
    quantile_edges: np.ndarray  # (n, QUANTILES + 1)
    quantile_counts: np.ndarray  # (n, QUANTILES) tokens in each range
    quantile_rows: np.ndarray  # (n, QUANTILES, PER_QUANTILE) rows, -1 where a range has fewer
    density: np.ndarray  # (n, HISTOGRAM_BINS) tokens per bin of [min, max]
    position_correlation: np.ndarray  # (n,)
    correlated: np.ndarray  # (n, CORRELATED) store columns, -1 none
    correlated_r: np.ndarray  # (n, CORRELATED) Pearson r
    tags: tuple[tuple[str, ...], ...]
    sentences: dict[tuple[int, int], np.ndarray]  # (neuron position, sentence) -> its values over the sentence
    offsets: np.ndarray  # (sentences + 1,) the entry's sentence rows
    sentence_of: np.ndarray  # (rows,) each row's sentence

    def histogram_centres(self, j: int) -> list[float]:
        """The centres of neuron ``j``'s density bins (between its lowest and highest value)."""
        low, high = float(self.stats.bottom_values[j][0]), float(self.stats.top_values[j][0])
        bins = self.density.shape[1]
        width = (high - low) / bins if high > low else 1.0 / bins
        return [round(low + (k + 0.5) * width, 5) for k in range(bins)]


def row_hash(rows: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random priority per row (uint64): smaller is chosen first."""
    return (np.asarray(rows, dtype=np.uint64) * np.uint64(HASH)) % np.uint64(2**32)


def build_dashboards(X: ActivationSet, labels: np.ndarray, label_names: Sequence[str], words: Sequence[Sequence[str]],
                     neurons: np.ndarray | None = None, examples: int = EXAMPLES, quantiles: int = QUANTILES,
                     per_quantile: int = PER_QUANTILE, correlated: int = CORRELATED) -> Dashboards:
    """The dashboards of ``neurons`` (store columns; default all) of one split's store entry
    ``X``, whose rows carry class ids ``labels`` (-1: none) and whose sentences are ``words``."""
    for name, value in (("examples", examples), ("quantiles", quantiles), ("per_quantile", per_quantile)):
        if int(value) < 1:
            raise ValidationError(f"{name}: expected an integer >= 1, got {value}")
    neurons = np.arange(X.n_neurons) if neurons is None else np.asarray(neurons, dtype=np.int64)
    offsets = np.asarray(X.offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if [len(w) for w in words] != lengths.tolist() or len(labels) != X.n_tokens:
        raise ValidationError(f"{X.path}: the words and labels given do not match the entry's sentences")
    sentence_of, position = word_positions(offsets)
    network = X.index.network(neurons)
    layers = network // X.index.hidden_size
    groups = {int(layer): np.flatnonzero(layers == layer) for layer in np.unique(layers)}
    n = len(neurons)
    acc = StatisticsAccumulator(n, label_names, examples)
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    moments = np.zeros((5, n))  # sum v, sum v^2, sum v*pos, sum pos, sum pos^2
    for start, block in X.chunks(neurons, CHUNK_BYTES):
        rows = np.arange(start, start + len(block))
        rows_t = torch.as_tensor(rows)
        acc.count_rows(labels_t[rows_t])
        acc.add(rows_t, torch.as_tensor(block), labels_t[rows_t], slice(0, n))
        pos = position[rows].astype(np.float64)
        wide = block.astype(np.float64)
        moments += np.stack([wide.sum(0), (wide * wide).sum(0), pos @ wide, np.full(n, pos.sum()),
                             np.full(n, (pos * pos).sum())])
    stats = acc.result()
    edges = stats.quantiles(np.linspace(0.0, 1.0, quantiles + 1))
    edges[:, 0], edges[:, -1] = stats.bottom_values[:, 0], stats.top_values[:, 0]  # the histogram's outer buckets
    counts, chosen, density = quantile_pass(X, neurons, edges, per_quantile, stats.bottom_values[:, 0],
                                            stats.top_values[:, 0])
    count = float(X.n_tokens)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_v, mean_p = moments[0] / count, moments[3] / count
        var_v = moments[1] / count - mean_v ** 2
        var_p = moments[4] / count - mean_p ** 2
        pos_r = (moments[2] / count - mean_v * mean_p) / np.sqrt(np.maximum(var_v * var_p, 0.0))
    pos_r = np.nan_to_num(pos_r)
    near, near_r = correlation_pass(X, neurons, groups, correlated)
    records = sorted({(j, int(sentence_of[r])) for j in range(n)
                      for r in (*stats.top_rows[j], *stats.bottom_rows[j], *chosen[j][chosen[j] >= 0])})
    sentences = sentence_values(X, neurons, offsets, records)
    tags = tuple(tags_of(stats.active_share()[j], stats.top_rows[j], pos_r[j], words, sentence_of, offsets)
                 for j in range(n))
    return Dashboards(neurons, network, layers, stats, edges, counts, chosen, density, pos_r, near, near_r, tags,
                      sentences, offsets, sentence_of)


def correlation_pass(X: ActivationSet, neurons: np.ndarray, groups: dict[int, np.ndarray], correlated: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``neurons``' (store columns) ``correlated`` most correlated neurons among all
    the store's neurons of its layer (Pearson over the entry's tokens), in one pass over
    those layers: per layer the (chosen x layer width) cross products in float64. Layers
    wider than :data:`MAX_CORRELATION_WIDTH` are skipped (-1, r 0). ``groups``: per layer
    the positions in ``neurons`` of its chosen neurons."""
    n = len(neurons)
    near = np.full((n, correlated), -1, dtype=np.int64)
    near_r = np.zeros((n, correlated))
    of_layer = X.index.layer_of(np.arange(X.n_neurons))
    pools = {layer: np.flatnonzero(of_layer == layer) for layer in groups}
    pools = {layer: pool for layer, pool in pools.items() if 1 < len(pool) <= MAX_CORRELATION_WIDTH}
    if not pools or correlated < 1:
        return near, near_r
    read = np.concatenate(list(pools.values()))
    spans, at = {}, 0
    for layer, pool in pools.items():
        spans[layer] = slice(at, at + len(pool))
        at += len(pool)
    chosen_at = {layer: np.searchsorted(pool, neurons[groups[layer]]) for layer, pool in pools.items()}
    sums = {layer: (np.zeros((len(groups[layer]), len(pool))), np.zeros(len(pool)), np.zeros(len(pool)))
            for layer, pool in pools.items()}
    for _, block in X.chunks(read, CHUNK_BYTES):
        for layer, (cross, total, squares) in sums.items():
            part = block[:, spans[layer]].astype(np.float64)
            cross += part[:, chosen_at[layer]].T @ part
            total += part.sum(0)
            squares += (part * part).sum(0)
    count = float(X.n_tokens)
    for layer, (cross, total, squares) in sums.items():
        mean = total / count
        scale = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        picked = chosen_at[layer]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num((cross / count - np.outer(mean[picked], mean)) / np.outer(scale[picked], scale))
        r[np.arange(len(picked)), picked] = -np.inf  # not itself
        take = min(correlated, len(pools[layer]) - 1)
        order = np.argsort(-r, axis=1, kind="stable")[:, :take]
        near[groups[layer], :take] = pools[layer][order]
        near_r[groups[layer], :take] = np.take_along_axis(r, order, axis=1)
    return near, near_r


def quantile_pass(X: ActivationSet, neurons: np.ndarray, edges: np.ndarray, per: int, low: np.ndarray,
                  high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens per range, the ``per`` rows of smallest :func:`row_hash` in each range (range
    i: edges[i] <= v < edges[i + 1], the last range closed), and the density histogram:
    tokens per bin of :data:`HISTOGRAM_BINS` equal bins between ``low`` and ``high``."""
    n, q = edges.shape[0], edges.shape[1] - 1
    counts = np.zeros((n, q), dtype=np.int64)
    density = np.zeros(n * HISTOGRAM_BINS, dtype=np.int64)
    span = np.where(high > low, high - low, 1.0).astype(np.float64)
    base = np.arange(n)[None, :] * HISTOGRAM_BINS
    best = np.full((n, q, per), np.iinfo(np.int64).max, dtype=np.int64)  # hash << 32 | row
    inner = edges[:, 1:-1].astype(np.float32)
    for start, block in X.chunks(neurons, CHUNK_BYTES):
        rows = np.arange(start, start + len(block), dtype=np.int64)
        bins = np.clip(((block - low[None, :]) / span[None, :] * HISTOGRAM_BINS).astype(np.int64), 0,
                       HISTOGRAM_BINS - 1)
        density += np.bincount((bins + base).reshape(-1), minlength=n * HISTOGRAM_BINS)
        keys = ((row_hash(rows).astype(np.int64) << 32) | rows)[:, None]
        rank = (block[:, :, None] >= inner[None, :, :]).sum(axis=2)  # (rows, n): the range of each value
        for i in range(q):
            hit = rank == i
            counts[:, i] += hit.sum(axis=0)
            candidate = np.where(hit, keys, np.iinfo(np.int64).max)
            both = np.concatenate([best[:, i, :].T, candidate], axis=0)
            best[:, i, :] = np.sort(np.partition(both, per - 1, axis=0)[:per] if len(both) > per else both,
                                    axis=0)[:per].T
    rows = np.where(best == np.iinfo(np.int64).max, -1, best & 0xFFFFFFFF)
    return counts, rows, density.reshape(n, HISTOGRAM_BINS)


def sentence_values(X: ActivationSet, neurons: np.ndarray, offsets: np.ndarray, records: list[tuple[int, int]]
                    ) -> dict[tuple[int, int], np.ndarray]:
    """Each record's (neuron position, sentence) values over its sentence, read sentence by
    sentence (each needed sentence's rows once, only the neurons that need it)."""
    by_sentence: dict[int, list[int]] = {}
    for j, s in records:
        by_sentence.setdefault(s, []).append(j)
    out: dict[tuple[int, int], np.ndarray] = {}
    for s in sorted(by_sentence):
        cols = by_sentence[s]
        values = X.rows(slice(int(offsets[s]), int(offsets[s + 1])), neurons[cols])
        for k, j in enumerate(cols):
            out[(j, s)] = values[:, k]
    return out


def tags_of(active_share: float, top_rows: np.ndarray, position_r: float, words: Sequence[Sequence[str]],
            sentence_of: np.ndarray, offsets: np.ndarray) -> tuple[str, ...]:
    """Voita et al.'s kinds of neuron, with the thresholds of this module's constants."""
    tags = []
    if active_share == 0:
        tags.append("dead")
    seen = [(int(sentence_of[r]), int(r - offsets[sentence_of[r]])) for r in top_rows]
    if seen:
        types = Counter(words[s][i].lower() for s, i in seen)
        word, hits = types.most_common(1)[0]
        if hits >= DETECTOR_SHARE * len(seen):
            tags.append(f"token:{word}")
        pairs = Counter((words[s][i - 1].lower() if i else "<s>", words[s][i].lower()) for s, i in seen)
        pair, hits = pairs.most_common(1)[0]
        if hits >= DETECTOR_SHARE * len(seen):
            tags.append(f"n-gram:{pair[0]} {pair[1]}")
    if abs(position_r) >= POSITIONAL_CORRELATION:
        tags.append("positional")
    return tuple(tags)


def dashboard_record(d: Dashboards, j: int, words: Sequence[Sequence[str]], labels: Sequence[str]) -> dict[str, Any]:
    """One neuron's dashboard as plain data (JSON): what report.html renders."""
    stats, offsets, sentence_of = d.stats, d.offsets, d.sentence_of

    def example(row: int) -> dict[str, Any]:
        s = int(sentence_of[row])
        values = d.sentences[(j, s)]
        return {"row": int(row), "sentence": s, "word": int(row - offsets[s]), "words": list(words[s]),
                "values": [round(float(v), 4) for v in values], "label": labels[row]}

    return {"neuron": int(d.neurons[j]), "layer": int(d.layers[j]), "active_share": float(stats.active_share()[j]),
            "max": float(stats.top_values[j][0]), "min": float(stats.bottom_values[j][0]),
            "histogram": {"centres": d.histogram_centres(j), "tokens": d.density[j].tolist()}, "top": [example(r) for r in stats.top_rows[j]],
            "bottom": [example(r) for r in stats.bottom_rows[j]],
            "quantiles": [{"low": float(d.quantile_edges[j, i]), "high": float(d.quantile_edges[j, i + 1]),
                           "tokens": int(d.quantile_counts[j, i]),
                           "examples": [example(r) for r in d.quantile_rows[j, i] if r >= 0]}
                          for i in range(d.quantile_counts.shape[1])],
            "position_correlation": float(d.position_correlation[j]),
            "correlated": [{"neuron": int(c), "r": float(r)} for c, r in zip(d.correlated[j], d.correlated_r[j])
                           if c >= 0],
            "tags": list(d.tags[j])}


def output_tokens_of(run: Any, ids: np.ndarray) -> dict[int, dict[str, Any]]:
    """The listed neurons' promoted and suppressed tokens (:meth:`neuroscope.runs.Run.output_tokens`)
    where the run has them (the mlp site of a decoder); {} otherwise, and {} with a warning
    when the model cannot be loaded to read its weights: the page is still written."""
    if run.site != "mlp":
        return {}
    try:
        return run.output_tokens([int(j) for j in ids]) or {}
    except NeuroscopeError as exc:
        log.warning("no output tokens in the neuron dashboards: %s", exc)
        return {}
