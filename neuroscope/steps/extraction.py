"""Step 2: word-level activations of every layer for every split (paper section 2;
sub-word models use the last sub-token by default), from the activation store, extracted
where it lacks them."""

from __future__ import annotations

from typing import Any, Callable

from neuroscope.model import ModelAdapter
from neuroscope.store import ActivationSet, ActivationStore, check_space
from neuroscope.types import TaskData


def extract(store: ActivationStore, adapter: ModelAdapter, task: TaskData,
            task_progress: Callable[[str, int, str], Any]) -> dict[str, ActivationSet]:
    """Every split's activations (``task_progress(label, total, unit)`` gives a progress
    callback, used for the splits the store lacks: a stored split shows no progress)."""
    found = {name: store.stored(adapter, corpus) for name, corpus in task.splits.items()}
    missing = [corpus for name, corpus in task.splits.items() if found[name] is None]
    if missing:  # refuse before extracting anything when the store cannot fit on its disk
        check_space(store.root, sum(c.n_tokens for c in missing), adapter.neuron_index.n_neurons)
    out = {}
    for name, corpus in task.splits.items():
        if found[name] is None:
            with task_progress(f"extract {name}", len(corpus), "sentences") as advance:
                found[name] = store.get_or_extract(adapter, corpus, advance)
        out[name] = found[name]
    return out
