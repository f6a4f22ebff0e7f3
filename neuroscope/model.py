"""The model adapter contract: words in, per-layer word vectors out.

An adapter turns pre-tokenised sentences into one vector per word per layer
(paper section 2: "we map each word w_i in the data D to a sequence of latent
representations"). Sub-word models choose which sub-token stands for the word
(``aggregation``; the paper uses the last one, section 3 "Classifier
Settings").
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np
import torch

from neuroscope.errors import NeuroscopeError
from neuroscope.types import NeuronIndex

AGGREGATIONS = ("last", "first", "mean")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU, else the CPU; ``cpu`` and ``cuda[:N]`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NeuroscopeError(f"device {device!r} asked for, but torch sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise NeuroscopeError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from exc


class ModelAdapter(abc.ABC):
    """Base class for model adapters registered through ``register_models``."""

    #: short adapter name, e.g. "transformers"
    name: str = "adapter"

    @property
    @abc.abstractmethod
    def neuron_index(self) -> NeuronIndex:
        """Layer names (embedding layer first) and hidden size."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies the activations this adapter produces.

        Must change whenever the vectors could change: checkpoint content
        hash, aggregation, adapter version. It addresses the activation store.
        """

    @abc.abstractmethod
    def embed(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One float32 array (layers, words, hidden) per sentence, in order."""

    #: sentences per forward pass (adapters set it from their ``batch_size`` option)
    batch_size: int = 32

    def batches(self, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
        """Sentence indices grouped into forward-pass batches of ``batch_size``, longest
        first so that padding is small. Adapters may override."""
        order = sorted(range(len(sentences)), key=lambda i: (-len(sentences[i]), i))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def device_name(self) -> str:
        return "cpu"
