"""Streamed statistics (neuroscope.statistics): every statistic streamed during the
forward pass equals the same statistic computed from the full activation store, and the
probe-free ranking made from them is the store's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroscope.errors import StoreError
from neuroscope.statistics import (BUCKETS, NeuronStatistics, StatisticsAccumulator, bucket_edges, float16_codes,
                                   stream_statistics, values_of_codes)


def test_codes_order_every_float16_as_its_value():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    values = bits.view(np.float16)
    finite = values[np.isfinite(values)]
    codes = float16_codes(torch.from_numpy(finite.copy())).numpy()
    order = np.argsort(codes, kind="stable")
    assert np.all(np.diff(finite[order].astype(np.float64)) >= 0)  # code order is value order
    assert len(np.unique(codes)) == len(np.unique(finite.astype(np.float64)))  # -0 and +0 share one code
    np.testing.assert_array_equal(values_of_codes(codes), finite.astype(np.float32))
    edges = bucket_edges()
    assert edges.shape == (BUCKETS + 1,) and np.all(edges[1:] >= edges[:-1])
    buckets = (codes.astype(np.int64) + 32768) >> 8
    np.testing.assert_array_equal(np.searchsorted(edges, finite.astype(np.float32), side="right") - 1, buckets)


def test_the_accumulator_is_exact_whatever_the_order_of_rows():
    """Rows in any order, a layer's columns at a time: the same top and bottom rows (ties by
    row, as a stable sort), counts, sums and histogram as the whole matrix at once."""
    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(50, 6)), 1).astype(np.float16)  # many ties
    y = rng.integers(-1, 3, size=50)
    order = rng.permutation(50)
    acc = StatisticsAccumulator(6, ("a", "b", "c"), k=7)
    for part in np.array_split(order, 4):
        rows = torch.from_numpy(part)
        acc.count_rows(torch.from_numpy(y[part]))
        for cols in (slice(0, 3), slice(3, 6)):
            acc.add(rows, torch.from_numpy(X[part, cols].astype(np.float32)), torch.from_numpy(y[part]), cols)
    stats = acc.result()
    values = X.astype(np.float64)
    np.testing.assert_array_equal(stats.top_rows, np.argsort(-values, axis=0, kind="stable")[:7].T)
    np.testing.assert_array_equal(stats.bottom_rows, np.argsort(values, axis=0, kind="stable")[:7].T)
    np.testing.assert_array_equal(stats.top_values, np.take_along_axis(values, stats.top_rows.T, 0).T)
    assert stats.n_rows == 50 and stats.counts.tolist() == [int((y == c).sum()) for c in range(3)]
    np.testing.assert_allclose(stats.sums, np.stack([values[y == c].sum(0) for c in range(3)]), atol=1e-12)
    np.testing.assert_array_equal(stats.active, np.stack([(values[y == c] > 0).sum(0) for c in range(3)]))
    assert (stats.histogram.sum(axis=1) == 50).all()
    small = StatisticsAccumulator(2, ("a",), k=5)
    small.count_rows(torch.tensor([0, 0]))
    small.add(torch.tensor([1, 0]), torch.tensor([[1.0, -2.0], [3.0, -2.0]]), torch.tensor([0, 0]), slice(0, 2))
    assert small.result().top_rows.tolist() == [[0, 1], [0, 1]]  # k larger than the rows: all of them
    with pytest.raises(StoreError, match="non-finite activation .* at neuron 1"):
        small.add(torch.tensor([2]), torch.tensor([[1.0, 7e4]]), torch.tensor([0]), slice(0, 2))


def test_streamed_statistics_equal_the_full_stores(data_dir, minilm_dir, cache_dir, tmp_path):
    """MiniLM x POS (300 train sentences): counts, sums, sums of squares, active shares,
    top and bottom 20 tokens, histogram and quantiles streamed = computed from the store;
    the probeless ranking from the statistics = the probeless ranking from the store."""
    from neuroscope.loading import load_model, load_task
    from neuroscope.rankers import RankerInputs
    from neuroscope.rankers.probeless import probeless
    from neuroscope.registry import Registry
    from neuroscope.runs import extreme_rows
    from neuroscope.store import ActivationStore, labels_to_ids

    registry = Registry()
    train = load_task(registry, "pos", data_dir).head(300, 10, 10).train
    adapter = load_model(registry, "minilm", "cpu", "last", 32, None, "float32")
    names = tuple(sorted(set(train.labels())))
    y = labels_to_ids(train.labels(), names)
    X = ActivationStore(cache_dir).get_or_extract(adapter, train)
    stats = stream_statistics(adapter, train, y, names, k=20)
    stored = RankerInputs(X, y, names, adapter.neuron_index)
    counts, sums, squares = stored._class_moments()
    assert stats.n_rows == X.n_tokens and np.array_equal(stats.counts, counts)
    np.testing.assert_allclose(stats.sums, sums, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.squares, squares, rtol=1e-12, atol=1e-9)
    top, bottom = extreme_rows(X, 20)
    assert np.array_equal(stats.top_rows, top) and np.array_equal(stats.bottom_rows, bottom)
    full = np.concatenate([block for _, block in X.chunks()])
    np.testing.assert_array_equal(stats.top_values, np.take_along_axis(full, top.T, 0).T)
    np.testing.assert_array_equal(stats.bottom_values, np.take_along_axis(full, bottom.T, 0).T)
    np.testing.assert_array_equal(stats.active, np.stack([(full[y == c] > 0).sum(0) for c in range(len(names))]))
    np.testing.assert_allclose(stats.active_share(), (full > 0).mean(0))
    edges = bucket_edges()
    hist = np.stack([np.bincount(np.searchsorted(edges, column, side="right") - 1, minlength=BUCKETS)
                     for column in full.T])
    np.testing.assert_array_equal(stats.histogram, hist)
    quantiles, exact = stats.quantiles([0.05, 0.5, 0.95]), np.quantile(full, [0.05, 0.5, 0.95], axis=0).T
    step = np.abs(exact) * 0.19 + 1e-3  # one bucket: a quarter octave
    assert (np.abs(quantiles - exact) <= 2 * step).mean() > 0.99
    streamed = RankerInputs(None, y, names, adapter.neuron_index, statistics=stats)
    np.testing.assert_array_equal(probeless(streamed).order, probeless(stored).order)
    # so do the other probe-free rankers that read class moments or active counts
    from neuroscope.rankers.contrast import f_stat
    from neuroscope.rankers.lape import lape

    np.testing.assert_array_equal(streamed.class_active(), stored.class_active())
    for rank in (f_stat, lape):
        np.testing.assert_array_equal(rank(streamed).order, rank(stored).order)
    path = stats.save(tmp_path / "statistics.npz")
    again = NeuronStatistics.load(path)
    assert np.array_equal(again.histogram, stats.histogram) and again.label_names == names
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(StoreError, match="damaged streamed statistics"):
        NeuronStatistics.load(path)
