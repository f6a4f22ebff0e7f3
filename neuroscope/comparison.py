"""Comparing rankings (Antverg & Belinkov's question: do the methods agree?).

For every pair of rankers of a run, per seed: the Jaccard overlap of their top k % sets
(k in :data:`TOP_SHARES`) and Spearman's rank correlation of the two orderings over all
neurons; mean and std over seeds. Which ranking is *better* is judged by the protocol
itself (ablations, minimal sets, the keep-top / remove-top curves), not here.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

TOP_SHARES = (1, 5, 10, 20)


def jaccard_top(a: np.ndarray, b: np.ndarray, share: float) -> float:
    """|top(a) & top(b)| / |top(a) | top(b)| for the first ``share`` percent of two orderings."""
    k = max(1, int(round(share / 100 * len(a))))
    top_a, top_b = set(a[:k].tolist()), set(b[:k].tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two orderings of the same neurons (no ties: every rank is distinct)."""
    n = len(a)
    rank_a, rank_b = np.empty(n), np.empty(n)
    rank_a[a] = np.arange(n)
    rank_b[b] = np.arange(n)
    if n < 2:
        return 1.0
    return float(1 - 6 * np.sum((rank_a - rank_b) ** 2) / (n * (n * n - 1)))


def _stat(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": [float(v) for v in arr]}


def compare_rankings(orders: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, Any]:
    """``orders[ranker][seed]``: the ordering of every neuron. Returns the shares and, per pair
    of rankers, Jaccard at each share (percent) and Spearman's rho, as mean / std / values over seeds."""
    pairs = []
    for a, b in itertools.combinations(orders, 2):
        seeds = list(zip(orders[a], orders[b]))
        entry: dict[str, Any] = {"a": a, "b": b, "jaccard": {}}
        for share in TOP_SHARES:
            entry["jaccard"][str(share)] = _stat([100 * jaccard_top(np.asarray(x), np.asarray(y), share)
                                                  for x, y in seeds])
        entry["spearman"] = _stat([spearman(np.asarray(x), np.asarray(y)) for x, y in seeds])
        pairs.append(entry)
    return {"shares": list(TOP_SHARES), "pairs": pairs}
