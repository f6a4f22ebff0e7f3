"""Error types: every failure a user can cause gets one clear message.

Data errors name the file, the line and what was expected, so a user can fix
the input without reading neuroscope's code.
"""

from __future__ import annotations

from pathlib import Path


class NeuroscopeError(Exception):
    """Base class of every error neuroscope raises on purpose."""


class DataFormatError(NeuroscopeError):
    """Malformed input data: names the file, the line and the expectation."""

    def __init__(self, path: str | Path, line: int | None, expected: str, found: str | None = None):
        self.path = str(path)
        self.line = line
        self.expected = expected
        self.found = found
        where = f"{self.path}, line {line}" if line is not None else self.path
        msg = f"{where}: expected {expected}"
        if found is not None:
            msg += f", found {found!r}"
        super().__init__(msg)


class RegistryError(NeuroscopeError):
    """A plugin or name problem: unknown name, collision, bad registry.toml."""


class ModelLoadError(NeuroscopeError):
    """A model checkpoint cannot be found, downloaded or read."""


class StoreError(NeuroscopeError):
    """The activation store is missing, incomplete or inconsistent."""
