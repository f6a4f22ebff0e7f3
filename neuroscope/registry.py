"""The plugin registry: loads plugins with pluggy and resolves the names users type.

Built-in plugins (listed in registry.toml) and third-party plugins (entry-point
group ``neuroscope``) load through the same path: import, ``pm.register``,
then each plugin's register-callback hooks are called one plugin at a time so
that every name is attributed to the plugin that registered it.

* ``NEUROSCOPE_LOAD_PLUGINS`` (comma-separated entry-point or distribution
  names) limits which third-party plugins load; empty means none. Built-ins
  always load: they are part of neuroscope.
* A plugin that fails to import or whose hook raises is recorded with its name
  and error and skipped; the rest keep working.
* A plugin may register a deferred reference ``"module:attribute"`` instead of the
  object (:class:`Entry`): the built-in models and probes do, so listing plugins
  imports neither torch nor transformers.
* Two plugins registering the same name (or alias) of one kind is a conflict:
  the name is unusable, and only a command that asks for it fails, naming both
  plugins; ``neuroscope plugins`` still lists everything and shows the
  conflict. A plugin name that a registry.toml alias shadows is warned about.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import logging
import os
import re
from typing import Any, Callable, Mapping

import attrs
import pluggy

from neuroscope import hookspecs
from neuroscope.errors import RegistryError
from neuroscope.registry_file import load_registry_file

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "neuroscope"
KINDS = tuple(hookspecs.HOOK_KINDS.values())
#: a deferred reference to a registered object: ``"package.module:attribute"``
DEFERRED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


@attrs.frozen
class PluginInfo:
    """A loaded plugin: its name, where it came from and what it registered."""

    name: str
    origin: str  # "builtin" or "entry point"
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    provides: dict[str, tuple[str, ...]] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "provides": {k: list(v) for k, v in self.provides.items()},
        }


@attrs.frozen
class PluginFailure:
    name: str
    error: str


@attrs.frozen
class Entry:
    """One registered object of a kind, under its canonical name.

    ``target`` is the object itself or a deferred reference ``"module:attribute"``
    (docs/plugins.md): the module is imported the first time :attr:`obj` is read, so
    listing plugins never imports a model's or a probe's heavy dependencies.
    """

    kind: str
    name: str
    target: Any
    plugin: str
    aliases: tuple[str, ...] = ()

    @property
    def obj(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        try:
            value: Any = importlib.import_module(module)
            for part in attribute.split("."):
                value = getattr(value, part)
        except Exception as exc:
            raise RegistryError(f"plugin {self.plugin!r} registered {self.kind[:-1]} {self.name!r} as "
                                f"{self.target!r}, which cannot be loaded: {type(exc).__name__}: {exc}") from exc
        return value


@attrs.frozen
class Resolved:
    """A user-typed name resolved to a registered object plus the options to call it with."""

    kind: str
    requested: str
    entry: Entry
    options: dict[str, Any]
    origin: str


def _neuroscope_version() -> str:
    from neuroscope.version import __version__

    return __version__


class Registry:
    """Every registered model, task, probe and ranker, plus registry.toml aliases."""

    def __init__(self, env: Mapping[str, str] | None = None, extra_plugins: Mapping[str, Any] | None = None):
        self.env = dict(os.environ if env is None else env)
        self.file = load_registry_file(self.env)
        self.pm = pluggy.PluginManager("neuroscope")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self._names: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        #: kind -> name -> the plugins that all registered it (the name is then unusable)
        self.conflicts: dict[str, dict[str, list[str]]] = {k: {} for k in KINDS}
        self._load(extra_plugins or {})
        self.shadowed = self._shadowed()
        for message in self.shadowed:
            log.warning("%s", message)

    def _load(self, extra_plugins: Mapping[str, Any]) -> None:
        candidates: list[tuple[str, str, Callable[[], Any], str, str]] = []
        version = _neuroscope_version()
        for module_name in self.file["plugins"]["builtin"]:
            short = module_name.rsplit(".", 1)[-1]
            candidates.append(
                (short, "builtin", lambda m=module_name: importlib.import_module(m), "neuroscope-nlp", version)
            )
        allowed = self._allowed_entry_points()
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            dist_version = ep.dist.version if ep.dist is not None else "?"
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                log.info("plugin %s not loaded: not in NEUROSCOPE_LOAD_PLUGINS", ep.name)
                continue
            candidates.append((ep.name, "entry point", ep.load, dist, dist_version))
        for name, obj in extra_plugins.items():
            candidates.append((name, "explicit", lambda o=obj: o, "?", "?"))

        for name, origin, loader, dist, dist_version in candidates:
            if self.pm.has_plugin(name):
                raise RegistryError(f"two plugins are both named {name!r}; rename one of them")
            try:
                plugin = loader()
                self.pm.register(plugin, name=name)
            except Exception as exc:  # a broken plugin must not take down the others
                self._fail(name, exc)
                continue
            module = getattr(plugin, "__name__", type(plugin).__name__)
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            provides = self._call_hooks(name, plugin)
            if provides is None:
                continue
            self.plugins.append(PluginInfo(name, origin, module, dist, dist_version, hooks, provides))

    def _fail(self, name: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.warning("plugin %s failed to load and is skipped: %s", name, message)
        self.failures.append(PluginFailure(name, message))
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)

    def _allowed_entry_points(self) -> set[str] | None:
        raw = self.env.get("NEUROSCOPE_LOAD_PLUGINS")
        if raw is None:
            return None
        return {p.strip() for p in raw.split(",") if p.strip()}

    def _call_hooks(self, plugin_name: str, plugin: Any) -> dict[str, tuple[str, ...]] | None:
        staged: list[Entry] = []
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(name: str, obj: Any, aliases: tuple[str, ...] | list[str] = (), _kind: str = kind) -> None:
                    if isinstance(obj, str) and not DEFERRED.fullmatch(obj):
                        raise RegistryError(f"{_kind[:-1]} {name!r}: a string registers a deferred reference and "
                                            f"must read 'package.module:attribute', not {obj!r}")
                    staged.append(Entry(_kind, str(name), obj, plugin_name, tuple(aliases)))

                try:
                    impl.function(register=register)
                except Exception as exc:
                    self._fail(plugin_name, exc)
                    return None
        provides: dict[str, list[str]] = {}
        for entry in staged:
            self._add(entry)
            provides.setdefault(entry.kind, []).append(entry.name)
        return {k: tuple(v) for k, v in provides.items()}

    def _add(self, entry: Entry) -> None:
        names = self._names[entry.kind]
        conflicts = self.conflicts[entry.kind]
        for name in (entry.name, *entry.aliases):
            if name in conflicts:
                conflicts[name].append(entry.plugin)
            elif name in names and names[name].plugin != entry.plugin:
                conflicts[name] = [names.pop(name).plugin, entry.plugin]
            else:
                names[name] = entry
            if name in conflicts:
                log.warning("%s", self._conflict_message(entry.kind, name))
        if entry.name not in self._entries[entry.kind]:
            self._entries[entry.kind][entry.name] = entry

    def _conflict_message(self, kind: str, name: str) -> str:
        plugins = " and ".join(repr(p) for p in self.conflicts[kind][name])
        return (f"{kind[:-1]} name {name!r} is registered by plugins {plugins}, so it cannot be used; uninstall one "
                "of them or set NEUROSCOPE_LOAD_PLUGINS to the plugins to load")

    def _shadowed(self) -> list[str]:
        """Names a plugin registers that a registry.toml alias of the same kind hides."""
        out = []
        for kind, key in (("models", "adapter"), ("tasks", "reader")):
            for name, entry in sorted(self._names[kind].items()):
                alias = self.file[kind].get(name)
                if alias is not None and alias.get(key) != name:
                    out.append(f"plugin {entry.plugin!r} registers {kind[:-1]} {name!r}, but {alias['_origin']} "
                               f"defines the alias [{kind}.{name}] (using {alias.get(key)!r}), which takes "
                               f"precedence: the plugin's {kind[:-1]} is unreachable under that name")
        return out

    def problems(self) -> list[str]:
        """Conflicting and shadowed names, one sentence each (for ``neuroscope plugins``)."""
        return [self._conflict_message(kind, name) for kind in KINDS for name in sorted(self.conflicts[kind])] + \
            list(self.shadowed)

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][k] for k in sorted(self._entries[kind])]

    def get(self, kind: str, name: str) -> Entry:
        if name in self.conflicts[kind]:
            raise RegistryError(self._conflict_message(kind, name))
        try:
            return self._names[kind][name]
        except KeyError:
            raise RegistryError(self._unknown(kind, name, list(self._names[kind]))) from None

    def _unknown(self, kind: str, name: str, known: list[str]) -> str:
        singular = kind[:-1]
        msg = f"unknown {singular} {name!r}"
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        msg += f" (known: {', '.join(sorted(known))})"
        failed = [f.name for f in self.failures]
        if failed:
            msg += f"; plugins that failed to load: {', '.join(failed)}"
        return msg

    def model_names(self) -> list[str]:
        return sorted(set(self.file["models"]) | set(self._names["models"]) | set(self.conflicts["models"]))

    def task_names(self) -> list[str]:
        return sorted(set(self.file["tasks"]) | set(self._names["tasks"]) | set(self.conflicts["tasks"]))

    def resolve_model(self, spec: str) -> Resolved:
        """A registry.toml alias, a registered adapter name, or ``ADAPTER:LOCATION`` (e.g.
        ``hf:bert-base-cased``, ``elmo:/models/elmo``): the adapter with option ``location``."""
        if spec not in self.file["models"] and ":" in spec:
            prefix, _, location = spec.partition(":")
            if (prefix in self._names["models"] or prefix in self.conflicts["models"]) and location:
                return Resolved("models", spec, self.get("models", prefix), {"location": location}, "command line")
        return self._resolve("models", spec, "adapter", self.model_names())

    def resolve_task(self, spec: str) -> Resolved:
        """A registry.toml task, a registered reader name, or ``READER:LOCATION`` (e.g.
        ``parquet:/corpora/mychunk``, what :func:`neuroscope.corpus` returns): the reader with
        option ``location``, for readers that take one."""
        if spec not in self.file["tasks"] and ":" in spec:
            prefix, _, location = spec.partition(":")
            if (prefix in self._names["tasks"] or prefix in self.conflicts["tasks"]) and location:
                return Resolved("tasks", spec, self.get("tasks", prefix), {"location": location}, "command line")
        return self._resolve("tasks", spec, "reader", self.task_names())

    def resolve_ranker(self, spec: str) -> Resolved:
        """A registered ranker, with the options of a ``[rankers.NAME]`` table if one exists."""
        return self._resolve_analysis("rankers", spec, "ranker")

    def resolve_probe(self, spec: str) -> Resolved:
        """A registered probe, with the options of a ``[probes.NAME]`` table if one exists."""
        return self._resolve_analysis("probes", spec, "probe")

    def _resolve_analysis(self, kind: str, spec: str, key: str) -> Resolved:
        table = self.file[kind].get(spec)
        if table is None:
            entry = self.get(kind, spec)
            return Resolved(kind, spec, entry, {}, f"plugin {entry.plugin}")
        target = table.get(key, spec)
        try:
            entry = self.get(kind, target)
        except RegistryError as exc:
            raise RegistryError(f"{table['_origin']}: [{kind}.{spec}]: {exc}") from None
        options = {k: v for k, v in table.items() if k not in (key, "description", "_origin")}
        return Resolved(kind, spec, entry, options, table["_origin"])

    def _resolve(self, kind: str, spec: str, key: str, known: list[str]) -> Resolved:
        alias = self.file[kind].get(spec)
        if alias is not None:
            options = {k: v for k, v in alias.items() if k not in (key, "description", "licence", "_origin")}
            try:
                entry = self.get(kind, alias[key])
            except RegistryError as exc:
                raise RegistryError(f"{alias['_origin']}: [{kind}.{spec}] {key} = {alias[key]!r}: {exc}") from None
            return Resolved(kind, spec, entry, options, alias["_origin"])
        if spec in self._names[kind] or spec in self.conflicts[kind]:
            entry = self.get(kind, spec)
            return Resolved(kind, spec, entry, {}, f"plugin {entry.plugin}")
        raise RegistryError(self._unknown(kind, spec, known))
