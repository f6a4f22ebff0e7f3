"""The rotation baseline (issue 25; Gurnee et al. 2023, "Finding Neurons in a Haystack",
section 5): the same analysis in a seeded random orthonormal basis of each layer.

A claim "neuron j encodes X" says something about the neuron basis only if individual
neurons do better than random directions of the same space. Rotating each layer's
activations by a random orthonormal matrix keeps everything a linear probe can read (the
information, the all-neuron accuracy up to the penalty's basis dependence) and destroys
whatever is special about the coordinate axes. Ranking, Table 1's ablations and their
accuracies are then recomputed on the rotated "neurons" (directions); the gap between the
neuron basis and the random basis, per ranker, is the evidence for neuron-level claims.

Each layer l's (tokens, hidden) block X_l becomes X_l Q_l, Q_l drawn from the Haar measure
(QR of a standard normal matrix with the signs of R's diagonal moved into Q; Mezzadri
2007), from the seed and the layer. The rotated values are rounded to float16, as the
store holds them, and kept in memory (tokens x neurons x 2 bytes per split).
"""

from __future__ import annotations

import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.store import ActivationSet, MemoryActivations


def random_rotation(size: int, seed: int, layer: int) -> np.ndarray:
    """A (size, size) float64 orthonormal matrix, Haar-distributed, from ``seed`` and ``layer``."""
    rng = np.random.default_rng([seed, layer, 20230501])
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))[None, :]


def rotated(X: ActivationSet, seed: int, chunk_rows: int = 16384) -> MemoryActivations:
    """``X`` with each layer's block rotated (module docstring), in memory, under a key of
    its own."""
    index = X.index
    if index.screened:
        raise ValidationError("--baseline rotation rotates whole layers; a screened run (--screen) keeps some "
                              "neurons of each layer only: run the rotation baseline unscreened")
    hidden = index.hidden_size
    rotations = [random_rotation(hidden, seed, layer).astype(np.float32) for layer in range(index.n_layers)]
    out = np.empty((X.n_tokens, X.n_neurons), dtype=np.float16)
    for start in range(0, X.n_tokens, chunk_rows):
        block = X.rows(slice(start, min(start + chunk_rows, X.n_tokens)))
        for layer, q in enumerate(rotations):
            columns = slice(layer * hidden, (layer + 1) * hidden)
            out[start : start + len(block), columns] = block[:, columns] @ q
    if not np.isfinite(out).all():
        raise ValidationError(f"{X.path}: rotated activations overflow float16; the rotation baseline needs values "
                              "within float16's range")
    manifest = {**X.manifest, "key": f"{X.key}-rotation-{seed}", "rotation": {"seed": seed}}
    return MemoryActivations(manifest, out, np.asarray(X.offsets))
