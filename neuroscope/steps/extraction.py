"""Step 2: word-level activations of every layer for every split (paper section 2;
sub-word models use the last sub-token by default), from the activation store, extracted
where it lacks them; with ``--screen``, first the streamed statistics of train and the
screened neurons, whose columns alone are stored (:mod:`neuroscope.screening`)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

from neuroscope.model import ModelAdapter, NeuronSubset
from neuroscope.screening import RULE, default_budget, parse_bytes, screen_neurons, screened_size
from neuroscope.errors import StoreError
from neuroscope.store import (VALUE_BYTES, ActivationSet, ActivationStore, check_space, extract_in_memory,
                              extraction_settings, labels_to_ids, physical_memory, store_key)
from neuroscope.types import TaskData

log = logging.getLogger(__name__)

#: top and bottom tokens kept per neuron by the streamed pass of a screened run
STREAMED_TOP = 20


def memory_available() -> int:
    """Bytes of memory the system can give now (MemAvailable; the total where /proc lacks it)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return physical_memory() or 0


def kept_in_memory(keep: str, adapter: ModelAdapter, task: TaskData) -> bool:
    """``--keep``: whether the activations are held in memory instead of the store: ``memory``
    (refused in one line when they cannot fit in the memory available), ``auto`` when they
    take at most half of it, ``disk`` never."""
    need = sum(c.n_tokens for c in task.splits.values()) * adapter.neuron_index.n_neurons * VALUE_BYTES
    free = memory_available()
    if keep == "memory" and need > free:
        raise StoreError(f"--keep memory: the activations need {need / 1e9:.1f} GB, {free / 1e9:.1f} GB of memory are "
                         "available; use --keep disk (the activation store), --screen or --layers")
    return keep == "memory" or (keep == "auto" and need <= free // 2)


def extract(store: ActivationStore, adapter: ModelAdapter, task: TaskData,
            task_progress: Callable[[str, int, str], Any], keep: str = "disk") -> dict[str, ActivationSet]:
    """Every split's activations (``task_progress(label, total, unit)`` gives a progress
    callback, used for the splits the store lacks: a stored split shows no progress); with
    ``keep`` (``--keep``) memory, or auto where they fit, held in this process's memory and
    nothing written (:class:`~neuroscope.store.MemoryActivations`)."""
    if kept_in_memory(keep, adapter, task):
        out = {}
        for name, corpus in task.splits.items():
            with task_progress(f"extract {name} (in memory)", len(corpus), "sentences") as advance:
                out[name] = extract_in_memory(adapter, corpus, advance)
        return out
    found = stored_or_room(store, adapter, task)
    out = {}
    for name, corpus in task.splits.items():
        if found[name] is None:
            with task_progress(f"extract {name}", len(corpus), "sentences") as advance:
                found[name] = store.get_or_extract(adapter, corpus, advance)
        out[name] = found[name]
    return out


def stored_or_room(store: ActivationStore, adapter: ModelAdapter, task: TaskData) -> dict[str, ActivationSet | None]:
    """Each split's stored activations (None where the store lacks them), after refusing,
    before anything is extracted, the splits it lacks when they would not fit on its disk."""
    found = {name: store.stored(adapter, corpus) for name, corpus in task.splits.items()}
    missing = [corpus for name, corpus in task.splits.items() if found[name] is None]
    if missing:
        check_space(store.root, sum(c.n_tokens for c in missing), adapter.neuron_index.n_neurons)
    return found


def store_budget(cache_dir: Path, setting: str) -> int:
    """``--store-budget`` in bytes (``auto``: :func:`neuroscope.screening.default_budget`)."""
    return parse_bytes(setting) or default_budget(cache_dir)


def check_screen(screen: str, setting: str, cache_dir: Path, task: TaskData) -> None:
    """What can be refused before the model loads: a number of neurons whose columns alone
    exceed the budget (a share, and a number above the network's size, once it has loaded)."""
    if screen not in ("off", "auto") and not screen.endswith("%"):
        tokens = sum(c.n_tokens for c in task.splits.values())
        screened_size(screen, int(screen), tokens, store_budget(cache_dir, setting))


def screen(cache_dir: Path, adapter: ModelAdapter, task: TaskData, screen: str, setting: str,
           task_progress: Callable[[str, int, str], Any], keep: str = "disk") -> ModelAdapter:
    """The adapter whose activations the run stores: ``adapter`` itself, or with
    ``--screen`` its screened neurons (:class:`~neuroscope.model.NeuronSubset`), chosen from
    the train split's streamed statistics (one forward pass, nothing stored but the
    statistics, kept under ``cache_dir/statistics`` for runs that screen the same
    activations again, except with ``keep`` memory: then nothing is written)."""
    from neuroscope.statistics import NeuronStatistics, stream_statistics  # torch

    n_neurons = adapter.neuron_index.n_neurons
    tokens = sum(c.n_tokens for c in task.splits.values())
    budget = store_budget(cache_dir, setting)
    k = screened_size(screen, n_neurons, tokens, budget)
    if k is None:
        if screen == "auto":
            log.info("--screen auto: the full store (%s neurons x %s words) fits --store-budget; not screened",
                     f"{n_neurons:,}", f"{tokens:,}")
        return adapter
    labels = task.labels
    gold = labels_to_ids(task.train.labels(), labels)
    key = hashlib.sha256(json.dumps({
        "activations": store_key(adapter.identity(), task.train.text_checksum(), extraction_settings(adapter)),
        "labels": list(labels), "gold": hashlib.sha256(gold.astype("<i8").tobytes()).hexdigest(),
        "top": STREAMED_TOP}, sort_keys=True).encode()).hexdigest()[:32]
    path = Path(cache_dir) / "statistics" / f"{key}.npz"
    if path.is_file():
        stats = NeuronStatistics.load(path)
        log.info("reusing streamed statistics %s", path)
    else:
        with task_progress("stream train", len(task.train), "sentences") as advance:
            stats = stream_statistics(adapter, task.train, gold, labels, STREAMED_TOP, advance)
        if keep != "memory":
            path.parent.mkdir(parents=True, exist_ok=True)
            stats.save(path)
    neurons = screen_neurons(stats, k)
    log.info("screened by %s: kept %s of %s neurons", RULE, f"{k:,}", f"{n_neurons:,}")
    return screened(adapter, neurons)


def screened(adapter: ModelAdapter, neurons: Any) -> NeuronSubset:
    """``adapter``'s screened neurons as the store holds them (the one place their identity,
    and so the store key, is made: the screening above and a run re-extracting them)."""
    return NeuronSubset(adapter, neurons, {"rule": RULE})
