"""The model adapter contract: words in, per-layer word vectors out.

An adapter turns pre-tokenised sentences into one vector per word per layer
(paper section 2: "we map each word w_i in the data D to a sequence of latent
representations"). Sub-word models choose which sub-token stands for the word
(``aggregation``; the paper uses the last one, section 3 "Classifier
Settings").
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from neuroscope.errors import NeuroscopeError
from neuroscope.types import NeuronIndex



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
    #: the sites the adapter can read (docs/models.md, "Sites"): "hidden" is the paper's
    #: hidden states; an adapter offering more takes ``site=`` in its factory and its
    #: ``neuron_index``, ``embed`` and ``intervene`` are then of that site
    sites: tuple[str, ...] = ("hidden",)

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

    def embed_rows(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One float32 array (words, neurons) per sentence (per condition and sentence inside
        :meth:`intervene`): :meth:`embed`'s layers side by side, the store's row layout
        (neuron ``layer * hidden_size + unit``), each checked against the neuron index. What
        the store, the causal step and ``show`` read; a screened adapter
        (:class:`NeuronSubset`) gives its neurons' columns only."""
        index = self.neuron_index
        out = []
        for k, v in enumerate(self.embed(sentences)):
            if v.ndim != 3 or (v.shape[0], v.shape[2]) != (index.n_layers, index.hidden_size):
                raise NeuroscopeError(f"adapter {self.name} returned shape {v.shape} for sentence {k} of a batch; "
                                      f"expected ({index.n_layers}, words, {index.hidden_size})")
            out.append(v.transpose(1, 0, 2).reshape(v.shape[1], v.shape[0] * v.shape[2]))
        return out

    #: sentences per forward pass (adapters set it from their ``batch_size`` option)
    batch_size: int = 32
    #: ``--extract-batch-tokens``: the most tokens (padding included) a forward pass holds,
    #: instead of ``batch_size`` sentences; 0: batches of ``batch_size`` sentences
    batch_tokens: int = 0

    def token_counts(self, sentences: Sequence[Sequence[str]]) -> list[int]:
        """The tokens each sentence takes in a forward pass (for ``batch_tokens``): its words
        here; sub-word adapters count their sub-tokens and special tokens."""
        return [len(s) for s in sentences]

    def batches(self, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
        """Sentence indices grouped into forward-pass batches, longest first so that padding
        is small: of ``batch_size`` sentences, or with ``batch_tokens`` of as many sentences
        as keep (sentences x the longest one's tokens) within it, so that one long sentence
        cannot take a batch's memory (a sentence longer than the budget runs alone).
        Adapters may override."""
        if not self.batch_tokens:
            order = sorted(range(len(sentences)), key=lambda i: (-len(sentences[i]), i))
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        counts = self.token_counts(sentences)
        order = sorted(range(len(sentences)), key=lambda i: (-counts[i], i))
        batches: list[list[int]] = []
        for i in order:  # longest first: a batch's first sentence is its longest
            if batches and (len(batches[-1]) + 1) * counts[batches[-1][0]] <= self.batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def device_name(self) -> str:
        return "cpu"

    @contextlib.contextmanager
    def intervene(self, ablation: Any) -> Iterator[Any]:
        """Remove neurons inside the forward pass (``neuroscope run --causal``,
        docs/plugins.md). ``ablation`` is a :class:`neuroscope.causal.Ablation`; inside the
        context, ``embed(sentences)`` returns ``ablation.n_conditions x len(sentences)``
        arrays, condition-major, each computed with that condition's neurons replaced at
        each layer's output (so the change reaches every later layer). Yields a
        :class:`neuroscope.causal.InterventionRecord` the adapter fills with its own
        objective's loss where it has one. Leaving the context restores the model exactly.
        An adapter that cannot intervene keeps this default, which says so."""
        from neuroscope.causal import InterventionUnsupported

        raise InterventionUnsupported(f"model adapter {self.name!r} cannot remove neurons inside its forward pass "
                                      "(it does not implement intervene(); docs/plugins.md)")
        yield  # pragma: no cover - unreachable, makes this a generator

    def attribution_objective(self) -> str:
        """The objective :meth:`attribution` differentiates ("next-token loss", "masked-LM
        loss"); raises :class:`AttributionUnsupported` with the reason where there is none.
        Checked before anything is extracted when a run has a ranker that needs the model."""
        raise AttributionUnsupported(f"model adapter {self.name!r} gives no gradients of its objective (it does "
                                     "not implement attribution(); docs/plugins.md)")

    def attribution(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Attribution patching (the ``attribution`` ranker, :mod:`neuroscope.rankers.attribution`):
        per sentence a float32 (words, neurons) array in the store's row layout, for every
        word and neuron the sum over the word's sub-tokens of ``activation x d objective /
        d activation``, the objective (:meth:`attribution_objective`) summed over the
        sentence. Minus it is the first-order change of the objective when the neuron is
        zeroed at that word. The default says the adapter cannot."""
        raise AttributionUnsupported(f"model adapter {self.name!r} gives no gradients of its objective (it does "
                                     "not implement attribution(); docs/plugins.md)")


    def output_tokens(self, neurons: Sequence[tuple[str, int]], k: int = 10) -> list[dict[str, Any]] | None:
        """Per neuron (layer name, unit), the tokens its output weights promote and
        suppress through the model's unembedding (the neuron dashboards' "output tokens",
        docs/results.md): dicts with ``promoted`` and ``suppressed`` lists of (token,
        logit) pairs, largest effect first, and ``histogram`` (``centres``, ``tokens``) of
        the effect over the vocabulary. None (this default) where the adapter has no
        answer: a site without output weights, a model without an unembedding."""
        return None

class AttributionUnsupported(NeuroscopeError):
    """The model adapter cannot give gradients of its own objective (no objective, or not implemented)."""


class AdapterSubset(ModelAdapter):
    """Some neurons of another adapter, ``inner``: the forward pass, its batches and
    device are the inner adapter's; subset neuron j is the inner adapter's neuron
    ``columns[j]``, so an intervention on the subset's neurons is mapped onto the inner
    adapter's (:func:`widened`). Subclasses set ``columns`` and ``_index``."""

    columns: np.ndarray
    _index: NeuronIndex

    def __init__(self, inner: ModelAdapter):
        self.inner = inner
        self.name = inner.name
        self.sites = inner.sites
        self.batch_size = inner.batch_size

    @property
    def neuron_index(self) -> NeuronIndex:
        return self._index

    def batches(self, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
        return self.inner.batches(sentences)

    @property  # type: ignore[override]
    def batch_tokens(self) -> int:
        """The inner adapter's (its batches are the inner's, and so is the store key's record)."""
        return self.inner.batch_tokens

    def device_name(self) -> str:
        return self.inner.device_name()

    @contextlib.contextmanager
    def intervene(self, ablation: Any) -> Iterator[Any]:
        with self.inner.intervene(widened(ablation, self.columns, self.inner.neuron_index.n_neurons)) as record:
            yield record

    def attribution_objective(self) -> str:
        return self.inner.attribution_objective()

    def output_tokens(self, neurons: Sequence[tuple[str, int]], k: int = 10) -> list[dict[str, Any]] | None:
        return self.inner.output_tokens(neurons, k)

    def attribution(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [np.ascontiguousarray(rows[:, self.columns]) for rows in self.inner.attribution(sentences)]


class LayerSubset(AdapterSubset):
    """Only some layers of another adapter (``--layers``): its neuron index, store and
    analyses hold those layers alone, so a large model's store stays small. The forward
    pass is the full model's; an intervention on the subset's neurons is mapped onto the
    full model's."""

    def __init__(self, inner: ModelAdapter, layers: Sequence[int]):
        index = inner.neuron_index
        bad = [x for x in layers if x >= index.n_layers]
        if bad:
            raise NeuroscopeError(f"--layers: {bad} out of range; the model has layers 0-{index.n_layers - 1} "
                                  f"({', '.join(index.layer_names)})")
        super().__init__(inner)
        self.layers = tuple(layers)
        hidden = index.hidden_size
        self.columns = np.concatenate([np.arange(x * hidden, (x + 1) * hidden) for x in self.layers])
        self._index = NeuronIndex(tuple(index.layer_names[x] for x in self.layers), hidden)

    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity(), "layers": list(self.layers)}

    def embed(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [v[list(self.layers)] for v in self.inner.embed(sentences)]

    def subwords(self, words: Sequence[str]) -> tuple[list[str], list[int], np.ndarray]:
        if not hasattr(self.inner, "subwords"):
            raise AttributeError("subwords")
        tokens, owners, layers = self.inner.subwords(words)
        return tokens, owners, layers[list(self.layers)]


def widened(ablation: Any, columns: np.ndarray, n_neurons: int) -> Any:
    """An ablation of a subset's neurons as one of the ``n_neurons`` of the adapter it
    wraps: subset neuron j is the inner adapter's ``columns[j]``."""
    masks = np.zeros((ablation.masks.shape[0], n_neurons), dtype=bool)
    masks[:, columns] = ablation.masks
    values = None
    if ablation.values is not None:
        values = np.zeros(n_neurons, dtype=np.float32)
        values[columns] = ablation.values
    return type(ablation)(masks, values, ablation.positions, ablation.objective)


class NeuronSubset(AdapterSubset):
    """The screened neurons of another adapter (``--screen``, :mod:`neuroscope.screening`):
    its neuron index numbers them alone (``NeuronIndex.neurons``: their ids in the inner
    adapter), its rows hold their columns only, so a store of it is tokens x K, and an
    intervention on them is mapped onto the inner adapter's neurons. ``rule`` (how they
    were chosen) is part of its identity, and so of the store's key."""

    def __init__(self, inner: ModelAdapter, neurons: Sequence[int] | np.ndarray, rule: dict[str, Any]):
        index = inner.neuron_index
        if index.screened:
            raise NeuroscopeError("a screened adapter cannot be screened again")
        super().__init__(inner)
        self.columns = np.unique(np.asarray(neurons, dtype=np.int64))
        self.rule = dict(rule)
        self._index = NeuronIndex(index.layer_names, index.hidden_size, self.columns)

    def identity(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.columns.astype("<i8").tobytes()).hexdigest()
        return {**self.inner.identity(), "screen": {**self.rule, "neurons": len(self.columns),
                                                    "neurons_sha256": digest}}

    def embed(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """The inner adapter's layers (a screened neuron index has no per-layer shape: read
        :meth:`embed_rows`)."""
        return self.inner.embed(sentences)

    def embed_rows(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [np.ascontiguousarray(rows[:, self.columns]) for rows in self.inner.embed_rows(sentences)]
