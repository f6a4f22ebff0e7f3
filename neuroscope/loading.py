"""Loading what a run names: a task through its registered reader, a model through its
registered adapter (registry.toml options applied), and the checks a task must pass
before any probe is trained."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs

from neuroscope.errors import ModelLoadError, NeuroscopeError, RegistryError, ValidationError
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
               layers: Sequence[int] | None = None, dtype: str | None = None, site: str = "hidden",
               batch_tokens: int = 0) -> ModelAdapter:
    """Build the model adapter named by ``spec`` (alias, adapter name or ``hf:...``);
    ``layers`` keeps only those layers (``--layers``, of the site read), ``dtype`` other
    than float32 (the default of every adapter) is passed to the adapter (``--dtype``;
    adapters that load weights in one precision only refuse it), and so is ``site`` other
    than the paper's hidden states (``--site``; :func:`check_model_site`); ``batch_tokens``
    (``--extract-batch-tokens``) caps each forward pass at that many tokens."""
    resolved = registry.resolve_model(spec)
    check_model_site(resolved, site)
    options = {"batch_size": batch_size, **resolved.options,
               **({"dtype": dtype} if dtype and dtype != "float32" else {}),
               **({"site": site} if site != "hidden" else {})}
    try:
        inspect.signature(resolved.entry.obj).bind(device=device, aggregation=aggregation, **options)
    except TypeError as exc:
        raise NeuroscopeError(f"model {spec!r} (adapter {resolved.entry.name!r}, options from {resolved.origin}): "
                              f"{exc}; e.g. use --model hf:<name-or-path> for the transformers adapter") from None
    adapter = resolved.entry.obj(device=device, aggregation=aggregation, **options)
    if not isinstance(adapter, ModelAdapter):
        raise NeuroscopeError(f"model adapter {resolved.entry.name!r} returned {type(adapter).__name__}, "
                              "not a neuroscope.ModelAdapter")
    if batch_tokens:  # --extract-batch-tokens: the adapter's batches() keeps a token budget
        adapter.batch_tokens = int(batch_tokens)
    return LayerSubset(adapter, layers) if layers else adapter


#: options a [models.NAME] entry may not set: the run's own options set them
MODEL_OPTIONS_OF_THE_RUN = {"device": "--device", "aggregation": "--aggregation", "batch_size": "--extract-batch-size"}
#: options a [probes.NAME] entry may not set: the protocol sets them for every probe it trains
PROBE_OPTIONS_OF_THE_RUN = {"seed": "--seeds", "l1": "--l1 and --l2 (or the lambda search)",
                            "l2": "--l1 and --l2 (or the lambda search)", "lr": "--lr", "batch_size": "--batch-size",
                            "epochs": "--epochs", "device": "--device", "shuffle": "--no-shuffle",
                            "l2_form": "--l2-form", "precision": "--precision",
                            "neurons": "nothing: the protocol chooses the neurons"}


def returned_class(fn: Callable[..., Any]) -> type | None:
    """The class ``fn``'s return annotation names, or None when it names none or does not
    resolve (then nothing more is known)."""
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve
        return None
    return returned if inspect.isclass(returned) else None


def accepted_options(fn: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``fn`` (a class or a factory) accepts, or None when it takes
    any: a factory that forwards ``**options`` to the class its return annotation names
    accepts that class's arguments too."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    parameters = inspect.signature(target).parameters
    names = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return names
    returned = returned_class(target)
    if returned is not None and returned is not fn:
        inner = accepted_options(returned)
        return None if inner is None else names | inner
    return None


def check_entry_options(kind: str, resolved: Resolved, owned: dict[str, str]) -> None:
    """Refuse, before anything loads, an entry's options that its plugin does not accept or
    that the run itself sets (naming the option to use instead)."""
    where = f"{resolved.origin}: [{kind}.{resolved.requested}]"
    for key in sorted(resolved.options):
        if key in owned:
            raise RegistryError(f"{where}: option {key!r} is set by the run; use {owned[key]} instead")
    accepted = accepted_options(resolved.entry.obj)
    if accepted is None:
        return
    unknown = sorted(set(resolved.options) - accepted)
    if unknown:
        takes = sorted(accepted - set(owned))
        raise RegistryError(f"{where}: unknown option(s) {', '.join(unknown)}; {resolved.entry.name!r} takes: "
                            f"{', '.join(takes) or 'none'}")


#: model options that say where a checkpoint is: a local path, a URL, a hub id or package:...
LOCATION_OPTIONS = ("location", "checkpoint", "archive", "options", "weights")


def check_model_location(resolved: Resolved) -> None:
    """Refuse, before any corpus is read, a checkpoint option that is plainly a local path
    (absolute, ``./``, ``../`` or ``~``) and does not exist. URLs, ``package:`` names and
    hub ids (``org/name``) are left to the adapter, which alone knows how to find them."""
    for key in LOCATION_OPTIONS:
        value = resolved.options.get(key)
        if not isinstance(value, str) or not value.startswith(("/", "./", "../", "~")):
            continue
        path = Path(value).expanduser()
        if not path.exists():
            where = (f"--model {resolved.requested}" if resolved.origin == "command line" else
                     f"{resolved.origin}: [models.{resolved.requested}] {key}")
            raise ModelLoadError(f"{where}: {path}: no such file or directory")


def model_sites(resolved: Resolved) -> tuple[str, ...]:
    """The sites a registered model offers (its adapter class's ``sites``, the entry itself
    or the class its factory's return annotation names; docs/plugins.md)."""
    obj = resolved.entry.obj
    cls = obj if inspect.isclass(obj) else returned_class(obj)
    return tuple(getattr(cls, "sites", ModelAdapter.sites)) if cls is not None else ModelAdapter.sites


def check_model_site(resolved: Resolved, site: str) -> None:
    """Refuse, before the model loads, a site its adapter does not offer."""
    sites = model_sites(resolved)
    if site not in sites:
        raise ValidationError(f"--site {site}: model {resolved.requested!r} (adapter {resolved.entry.name!r}) "
                              f"offers the site{'s' if len(sites) > 1 else ''} {', '.join(sites)}")


def check_model_options(resolved: Resolved) -> None:
    """A model's registry.toml options and its checkpoint location, checked before anything loads."""
    check_entry_options("models", resolved, MODEL_OPTIONS_OF_THE_RUN)
    check_model_location(resolved)


def check_probe_options(resolved: Resolved) -> None:
    check_entry_options("probes", resolved, PROBE_OPTIONS_OF_THE_RUN)
