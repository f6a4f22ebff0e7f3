"""Step 2: word-level activations of every layer for every split (paper section 2;
sub-word models use the last sub-token by default), from the activation store, extracted
where it lacks them."""

from __future__ import annotations

from typing import Any, Callable

from neuroscope.model import ModelAdapter
from neuroscope.store import ActivationSet, ActivationStore
from neuroscope.types import TaskData


def extract(store: ActivationStore, adapter: ModelAdapter, task: TaskData,
            task_progress: Callable[[str, int, str], Any]) -> dict[str, ActivationSet]:
    """Every split's activations (``task_progress(label, total, unit)`` gives a progress
    callback, used for the splits the store lacks: a stored split shows no progress)."""
    out = {}
    for name, corpus in task.splits.items():
        found = store.stored(adapter, corpus)
        if found is None:
            with task_progress(f"extract {name}", len(corpus), "sentences") as advance:
                found = store.get_or_extract(adapter, corpus, advance)
        out[name] = found
    return out
