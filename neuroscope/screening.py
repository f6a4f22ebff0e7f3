"""Screening (issue 24): keep K candidate neurons of a network too large to store, chosen
from streamed statistics (:mod:`neuroscope.statistics`) before anything is stored, and
run the whole protocol on them.

The rule, ``label-round-robin`` (docs/protocol.md, "Screening"): for every label c its
neurons are ordered by the standardised one-vs-rest mean difference on train,

    d_c(j) = |mean_c(j) - mean_rest(j)| / sqrt((var_c(j) + var_rest(j)) / 2 + 1e-12),

(Gurnee et al. 2023 prefilter with the unstandardised mean difference; standardising
keeps a neuron of large but uninformative spread from crowding out the others, and makes
sites and layers of different scales comparable). The labels then take turns, most
frequent first, each adding its best neuron not yet kept, until K are kept: every label
gets candidates, as the weight-mass ranking covers every label, instead of the frequent
labels' neurons filling the set. Labels without a train token take no turn. Neurons of
equal score are taken by id. The kept set is stored ascending (``NeuronIndex.neurons``).

``--screen``: ``off`` (nothing changes, the default at the paper's scale), ``K`` or ``P%``
(that many of the network's neurons), or ``auto``: screen only when the full store would
exceed ``--store-budget``, and then keep as many neurons as the budget holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.store import VALUE_BYTES, free_space

if TYPE_CHECKING:  # settings parse --screen without torch
    from neuroscope.statistics import NeuronStatistics

RULE = "label-round-robin"
#: share of the cache disk's free space the default --store-budget allows
DISK_SHARE = 0.5


def parse_screen(value: str) -> str:
    """``off``, ``auto``, ``K`` (an integer >= 1) or ``P%`` (0 < P < 100), normalised; else
    a one-line error."""
    text = str(value).strip().lower()
    if text in ("off", "auto"):
        return text
    if re.fullmatch(r"\d+", text) and int(text) >= 1:
        return str(int(text))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if match and 0 < float(match.group(1)) < 100:
        return f"{float(match.group(1)):g}%"
    raise ValidationError(f"--screen {value!r}: expected off, auto, a number of neurons >= 1 (e.g. 8192) or a "
                          "share of them (e.g. 25%)")


def parse_bytes(value: str, flag: str = "--store-budget") -> int | None:
    """``--store-budget`` (or ``flag``): ``auto`` (None) or a size, e.g. 500GB, 20 GiB, 1e9."""
    text = str(value).strip()
    if text.lower() == "auto":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?b?|b)?", text.lower())
    if not match:
        raise ValidationError(f"{flag} {value!r}: expected auto or a size such as 500GB or 20GiB")
    unit = (match.group(2) or "b").rstrip("b") or ""
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
             "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}[unit]
    size = int(float(match.group(1)) * scale)
    if size < 1:
        raise ValidationError(f"{flag} {value!r}: expected a size of at least one byte")
    return size


def default_budget(cache_root: Path) -> int:
    """The default store budget: :data:`DISK_SHARE` of the free space on the cache's disk."""
    return int(free_space(cache_root) * DISK_SHARE)


def screened_size(screen: str, n_neurons: int, tokens: int, budget: int) -> int | None:
    """How many neurons a run keeps: None for no screening (``off``; ``auto`` when the full
    store of ``tokens`` x ``n_neurons`` fits ``budget`` bytes). A size the network or the
    budget cannot hold is a one-line error."""
    full_bytes = tokens * n_neurons * VALUE_BYTES
    if screen == "off":
        return None
    if screen == "auto":
        if full_bytes <= budget:
            return None
        k = budget // max(tokens * VALUE_BYTES, 1)
        if k < 1:
            raise ValidationError(f"--store-budget {budget:,} bytes cannot hold one neuron's column of {tokens:,} "
                                  f"words ({tokens * VALUE_BYTES:,} bytes); raise it or use --max-sentences")
        return int(min(k, n_neurons))
    k = round(n_neurons * float(screen[:-1]) / 100) if screen.endswith("%") else int(screen)
    k = max(int(k), 1)
    if k > n_neurons:
        raise ValidationError(f"--screen {screen}: the model has {n_neurons:,} neurons at this site and these layers; "
                              f"keep at most that many (or --screen off)")
    if k * tokens * VALUE_BYTES > budget:
        raise ValidationError(f"--screen {screen}: {k:,} neurons x {tokens:,} words x {VALUE_BYTES} bytes = "
                              f"{k * tokens * VALUE_BYTES / 1e9:.1f} GB exceed --store-budget "
                              f"({budget / 1e9:.1f} GB); keep fewer neurons or raise the budget")
    return k


def label_scores(stats: NeuronStatistics) -> np.ndarray:
    """(labels, neurons) standardised one-vs-rest mean difference d_c(j) (module docstring);
    NaN for a label without train tokens or whose rest is empty."""
    counts = stats.counts.astype(np.float64)[:, None]
    total_n = counts.sum()
    sums, squares = stats.sums, stats.squares
    rest_n = total_n - counts
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
        rest_mean = (sums.sum(axis=0) - sums) / rest_n
        var = np.maximum(squares / counts - mean * mean, 0.0)
        rest_var = np.maximum((squares.sum(axis=0) - squares) / rest_n - rest_mean * rest_mean, 0.0)
        score = np.abs(mean - rest_mean) / np.sqrt((var + rest_var) / 2 + 1e-12)
    score[(counts[:, 0] == 0) | (rest_n[:, 0] == 0)] = np.nan
    return score


def screen_neurons(stats: NeuronStatistics, k: int) -> np.ndarray:
    """The ``k`` kept neurons, ascending, by :data:`RULE` (module docstring): the first ``k``
    of the labels' turns (:func:`neuroscope.rankers.contrast.covering_order`) over the
    labels with train tokens."""
    from neuroscope.rankers.contrast import covering_order

    n = stats.n_neurons
    if not 1 <= k <= n:
        raise ValidationError(f"screen: keep between 1 and {n} neurons, got {k}")
    if k == n:
        return np.arange(n)
    scores = label_scores(stats)
    turns = (stats.counts > 0) & np.isfinite(scores).any(axis=1)
    if not turns.any():
        raise ValidationError("screen: no label has train tokens to screen neurons by")
    return np.sort(covering_order(scores[turns], stats.counts[turns], limit=k))


def record(screen: str, k: int, n_neurons: int, budget: int, neurons: np.ndarray) -> dict[str, Any]:
    """results.json's ``screen``: what was asked, the rule, how many of how many were kept."""
    return {"requested": screen, "rule": RULE, "k": int(k), "network_neurons": int(n_neurons),
            "store_budget": int(budget), "neurons": [int(j) for j in neurons]}
