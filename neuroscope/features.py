"""Activation matrices as the methods read them: an in-memory (rows, neurons) array or an
out-of-core :class:`~neuroscope.store.ActivationSet`, in row chunks and without torch.

Probes, rankers, ablation and the lambda search all read their features through these
few functions, so every method runs unchanged on a memory-mapped store too large for
memory (DESIGN.md, "out-of-core activations").
"""

from __future__ import annotations

import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.store import ActivationSet
from neuroscope.validation import check_finite_array

Features = np.ndarray | ActivationSet


def n_rows(X: Features) -> int:
    return X.n_tokens if isinstance(X, ActivationSet) else int(X.shape[0])


def n_columns(X: Features) -> int:
    return X.n_neurons if isinstance(X, ActivationSet) else int(X.shape[1])


def read_rows(X: Features, rows: slice | np.ndarray, neurons: np.ndarray | None) -> np.ndarray:
    """float32 rows of an activation set or an in-memory array."""
    if isinstance(X, ActivationSet):
        return X.rows(rows, neurons)
    block = X[rows]
    if neurons is not None:
        block = np.take(block, neurons, axis=1)
    return np.asarray(block, dtype=np.float32)


def iter_chunks(X: Features, neurons: np.ndarray | None, chunk_rows: int = 65536):
    """(first row, float32 block) over all rows, in chunks the store finds efficient."""
    total = n_rows(X)
    if isinstance(X, ActivationSet):
        chunk_rows = X.chunk_rows(None if neurons is None else len(neurons))
    for start in range(0, total, chunk_rows):
        yield start, read_rows(X, slice(start, min(start + chunk_rows, total)), neurons)



def check_features(name: str, X: np.ndarray) -> None:
    """A 2-D in-memory activation matrix of real, finite numbers, checked in row blocks
    (a memory-mapped file is read once, never copied whole)."""
    if getattr(X, "ndim", None) != 2:
        raise ValidationError(f"{name}: expected a 2-D (rows, neurons) array, found shape "
                              f"{getattr(X, 'shape', type(X).__name__)}")
    if X.dtype.kind not in "fiu":
        raise ValidationError(f"{name}: expected real numbers, found dtype {X.dtype}")
    for start in range(0, X.shape[0], 65536):
        block = np.asarray(X[start : start + 65536])
        try:
            check_finite_array(name, block)
        except ValidationError:
            row, column = (int(i) for i in np.argwhere(~np.isfinite(block))[0])
            raise ValidationError(f"{name}: non-finite value {float(block[row, column])} at row {start + row}, "
                                  f"column {column}; NaN and inf are not allowed") from None
