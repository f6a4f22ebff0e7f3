"""Loading what a run names: a task through its registered reader, a model through its
registered adapter (registry.toml options applied), and the checks a task must pass
before any probe is trained."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Sequence

import attrs

from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.model import LayerSubset, ModelAdapter
from neuroscope.registry import Registry, Resolved
from neuroscope.types import TaskData


def load_task(registry: Registry, spec: str, data_dir: Path) -> TaskData:
    """Read a task through its registered reader (registry.toml options applied)."""
    resolved: Resolved = registry.resolve_task(spec)
    reader: Callable[..., TaskData] = resolved.entry.obj
    options = dict(resolved.options)
    if "task" in inspect.signature(reader).parameters:
        options.setdefault("task", spec)
    try:
        inspect.signature(reader).bind(Path(data_dir), **options)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(reader).parameters if p not in ("data_dir", "task")]
        raise NeuroscopeError(f"task {spec!r} (reader {resolved.entry.name!r}, options from {resolved.origin}): "
                              f"{exc}; the reader takes: {', '.join(accepted)}") from None
    data = reader(Path(data_dir), **options)
    if not isinstance(data, TaskData):
        raise NeuroscopeError(f"task reader {resolved.entry.name!r} returned {type(data).__name__}, not TaskData")
    for name, corpus in data.splits.items():
        if len(corpus) == 0:
            raise NeuroscopeError(f"task {spec!r}: the {name} split is empty ({corpus.source})")
    return attrs.evolve(data, name=spec)


def check_task(task: TaskData) -> None:
    """A probing task needs sentences in every split and at least two labels in train
    (after any rare-label collapse and ``--max-sentences``): with one label every
    accuracy is 100 % and no neuron means anything."""
    for name, corpus in task.splits.items():
        if len(corpus) == 0:
            raise ValidationError(f"task {task.name!r}: the {name} split is empty ({corpus.source})")
    labels = task.labels
    if len(labels) < 2:
        raise ValidationError(f"task {task.name!r}: train has {len(labels)} label{'' if len(labels) == 1 else 's'} "
                              f"({', '.join(labels) or 'none'}; {task.train.source}); a probing task needs at "
                              "least two labels to tell apart")


def load_model(registry: Registry, spec: str, device: str, aggregation: str, batch_size: int = 32,
               layers: Sequence[int] | None = None, dtype: str | None = None) -> ModelAdapter:
    """Build the model adapter named by ``spec`` (alias, adapter name or ``hf:...``);
    ``layers`` keeps only those layers (``--layers``), ``dtype`` other than float32 (the
    default of every adapter) is passed to the adapter (``--dtype``; adapters that load
    weights in one precision only refuse it)."""
    resolved = registry.resolve_model(spec)
    options = {"batch_size": batch_size, **resolved.options,
               **({"dtype": dtype} if dtype and dtype != "float32" else {})}
    try:
        inspect.signature(resolved.entry.obj).bind(device=device, aggregation=aggregation, **options)
    except TypeError as exc:
        raise NeuroscopeError(f"model {spec!r} (adapter {resolved.entry.name!r}, options from {resolved.origin}): "
                              f"{exc}; e.g. use --model hf:<name-or-path> for the transformers adapter") from None
    adapter = resolved.entry.obj(device=device, aggregation=aggregation, **options)
    if not isinstance(adapter, ModelAdapter):
        raise NeuroscopeError(f"model adapter {resolved.entry.name!r} returned {type(adapter).__name__}, "
                              "not a neuroscope.ModelAdapter")
    return LayerSubset(adapter, layers) if layers else adapter
