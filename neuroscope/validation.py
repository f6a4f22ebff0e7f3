"""One place that says which numbers are allowed: the run's settings and the
arrays handed to the library's functions.

Every check raises :class:`~neuroscope.errors.ValidationError` with one line
naming the option (or argument), the value and the allowed range, so NaN, inf,
zero and out-of-range values never reach a computation whose numbers would
then be meaningless.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neuroscope.errors import ValidationError


def describe_range(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False,
                   integer: bool = False) -> str:
    """The allowed numbers in words: "an integer >= 1", "a finite number > 0 and <= 1"."""
    kind = "an integer" if integer else "a finite number"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return kind + (" " + " and ".join(parts) if parts else "")


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
    """Raise unless ``value`` is a finite number (an integer if ``integer``) in the range.

    ``low_open`` / ``high_open`` exclude the bound itself: ``low=0, low_open=True``
    is "> 0"."""
    expected = describe_range(low, high, low_open, high_open, integer)
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(float(value))
    if ok and integer:
        ok = float(value) == int(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValidationError(f"{name}: {value!r} is not allowed; expected {expected}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValidationError(f"{name}: {value!r} is not allowed; expected one of {', '.join(choices)}")


def check_finite_array(name: str, array: np.ndarray) -> None:
    """Raise if ``array`` holds NaN or inf, naming the first bad position."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValidationError(f"{name}: non-finite value {array[where]!r} at position {where}; "
                              "NaN and inf are not allowed")


def check_class_ids(name: str, y: np.ndarray, n_rows: int, n_classes: int | None = None) -> np.ndarray:
    """``y`` as int64 class ids, one per row, in [0, n_classes)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise ValidationError(f"{name}: expected integer class ids, found dtype {y.dtype} "
                              "(map label strings to ids first, e.g. with numpy.unique(..., return_inverse=True))")
    if y.shape != (n_rows,):
        raise ValidationError(f"{name}: shape {y.shape}, expected ({n_rows},): one label per row")
    if n_classes is not None and len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValidationError(f"{name}: class ids outside [0, {n_classes})")
    return y.astype(np.int64, copy=False)


def check_training_labels(name: str, n_rows: int, n_classes: int) -> None:
    """A probe needs rows to learn from and at least two classes to tell apart."""
    if n_rows == 0:
        raise ValidationError(f"{name}: the training set is empty")
    if n_classes < 2:
        raise ValidationError(f"{name}: {n_classes} class(es); a probe needs at least two labels to tell apart")
