"""Error types: every failure a user can cause gets one clear message.

Data errors name the file, the line and what was expected, so a user can fix
the input without reading neuroscope's code. Every error type can also be
raised with one message, as a plugin author would first try
(``DataFormatError("bad header")``).
"""

from __future__ import annotations

from pathlib import Path


class NeuroscopeError(Exception):
    """Base class of every error neuroscope raises on purpose.

    The command line prints it as one line and exits with status 2; anything
    else that escapes is a bug and is reported as one.
    """


class ValidationError(NeuroscopeError, ValueError):
    """A setting or an input value outside what the method allows (NaN, inf, zero,
    out of range, a single class, an empty training set). It is also a
    ``ValueError``, as scikit-learn and numpy users expect of a bad value."""


class DataFormatError(NeuroscopeError):
    """Malformed input data: names the file, the line and the expectation.

    ``DataFormatError(path, line, expected, found=None)`` builds the message
    "PATH, line N: expected ..., found '...'"; ``DataFormatError(message)``
    with a single argument uses the message as it is.
    """

    def __init__(self, path: str | Path, line: int | None = None, expected: str | None = None,
                 found: str | None = None):
        self.line = line
        self.expected = expected
        self.found = found
        if expected is None and line is None and found is None:
            self.path = None
            super().__init__(str(path))
            return
        self.path = str(path)
        where = f"{self.path}, line {line}" if line is not None else self.path
        msg = f"{where}: expected {expected or 'valid data'}"
        if found is not None:
            msg += f", found {found!r}"
        super().__init__(msg)


class RegistryError(NeuroscopeError):
    """A plugin or name problem: unknown name, collision, bad registry.toml."""


class ModelLoadError(NeuroscopeError):
    """A model checkpoint cannot be found, downloaded or read."""


class StoreError(NeuroscopeError):
    """The activation store is missing, incomplete, inconsistent or damaged."""


class RunDirectoryError(NeuroscopeError):
    """A run directory cannot be used: taken by another run, not a run, or damaged."""
