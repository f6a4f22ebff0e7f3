"""Reading ``registry.toml``: built-in plugins, the names users type, and datasets.

The packaged ``registry.toml`` (repository root) names the built-in plugin
modules and the model and task aliases (``bert``, ``minilm``, ``pos`` ...).
A ``registry.toml`` in the working directory, or the file named by
``NEUROSCOPE_REGISTRY``, may add or override ``[models.*]``, ``[tasks.*]``,
``[datasets.*]``, ``[rankers.*]`` and ``[probes.*]`` entries with no code
(DESIGN.md, "registry.toml"). A ``[rankers.NAME]`` or ``[probes.NAME]`` table
gives options to the registered ranker or probe of that name, or, with a
``ranker`` / ``probe`` key, defines NAME as that one with these options.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from neuroscope.errors import RegistryError

log = logging.getLogger(__name__)

USER_SECTIONS = ("models", "tasks", "datasets", "rankers", "probes")


def packaged_registry_path() -> Path:
    """Where the built-in registry.toml lives.

    In a source checkout (editable install) it is the repository root; an
    installed wheel carries it as data under ``<prefix>/share/neuroscope``.
    """
    candidates = [Path(__file__).resolve().parent.parent / "registry.toml"]
    for scheme_path in {sysconfig.get_path("data"), sys.prefix}:
        candidates.append(Path(scheme_path) / "share" / "neuroscope" / "registry.toml")
    user_base = sysconfig.get_config_var("userbase")
    if user_base:
        candidates.append(Path(user_base) / "share" / "neuroscope" / "registry.toml")
    for path in candidates:
        if path.is_file():
            return path
    raise RegistryError(
        "the packaged registry.toml was not found; looked in: " + ", ".join(str(p) for p in candidates)
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from exc


def user_registry_paths(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    env = os.environ if env is None else env
    paths = []
    named = env.get("NEUROSCOPE_REGISTRY")
    if named:
        if not Path(named).is_file():
            raise RegistryError(f"NEUROSCOPE_REGISTRY names {named}, which is not a file")
        paths.append(Path(named))
    local = (cwd or Path.cwd()) / "registry.toml"
    if local.is_file() and local.resolve() != packaged_registry_path().resolve() and not is_packaged_registry(local):
        paths.append(local)
    return paths


def is_packaged_registry(path: Path) -> bool:
    """Whether ``path`` is a neuroscope checkout's own registry.toml: beside the source's
    ``setup.cfg`` and ``neuroscope/`` package, naming the built-in plugins in ``[plugins]``
    (which no user overlay may). It is found in the working directory when a command runs
    in a checkout whose package is installed from elsewhere (``pip install .``, or an
    editable install of another clone), and is not read: the installed package's own
    registry is, with its code."""
    folder = path.parent
    if not ((folder / "setup.cfg").is_file() and (folder / "neuroscope" / "__init__.py").is_file()):
        return False
    try:
        data = read_toml(path)
    except RegistryError:
        return False  # a broken overlay: reading it again reports it
    if isinstance(data.get("plugins"), dict) and "builtin" in data["plugins"]:
        log.debug("%s is a neuroscope checkout's own registry, not an overlay: not read", path)
        return True
    return False


def _check_entries(path: Path, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key, value in data.items():
        if key not in allowed:
            raise RegistryError(f"{path}: unknown section [{key}]; expected one of {', '.join(allowed)}")
        if key in USER_SECTIONS:
            if not isinstance(value, dict):
                raise RegistryError(f"{path}: [{key}] must be a table of tables")
            for name, entry in value.items():
                if not isinstance(entry, dict):
                    raise RegistryError(f"{path}: [{key}.{name}] must be a table")
                needed = {"models": ("adapter",), "tasks": ("reader",), "datasets": ("description", "licence"),
                          "rankers": (), "probes": ()}[key]
                for field in needed:
                    if field not in entry:
                        raise RegistryError(f"{path}: [{key}.{name}] needs a '{field}' key")
                if key == "datasets" and not ("files" in entry or "obtain" in entry):
                    raise RegistryError(f"{path}: [datasets.{name}] needs 'files' (to fetch) or 'obtain' (licensed)")


def load_registry_file(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """The packaged registry overlaid with the user's files (later wins per entry)."""
    base_path = packaged_registry_path()
    merged = read_toml(base_path)
    _check_entries(base_path, merged, ("plugins",) + USER_SECTIONS)
    merged.setdefault("plugins", {}).setdefault("builtin", [])
    for section in USER_SECTIONS:
        merged.setdefault(section, {})
        for entry in merged[section].values():
            entry.setdefault("_origin", str(base_path))
    merged["_files"] = [str(base_path)]
    for path in user_registry_paths(env, cwd):
        data = read_toml(path)
        _check_entries(path, data, USER_SECTIONS)
        for section in USER_SECTIONS:
            for name, entry in data.get(section, {}).items():
                merged[section][name] = {**entry, "_origin": str(path)}
        merged["_files"].append(str(path))
    return merged
