"""Core data types shared by the core and every plugin (DESIGN.md, layer 5).

All are attrs classes, frozen where the value never changes after creation,
so that they can be hashed, compared and serialised without surprises.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from typing import Any, Iterable, Sequence

import attrs
import numpy as np

from neuroscope.errors import ValidationError


def _as_str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@attrs.frozen
class Sentence:
    """One annotated sentence: words and one label per word (paper section 2, D and T)."""

    words: tuple[str, ...] = attrs.field(converter=_as_str_tuple)
    labels: tuple[str, ...] = attrs.field(converter=_as_str_tuple)

    def __attrs_post_init__(self) -> None:
        if len(self.words) != len(self.labels):
            raise ValidationError(
                f"a sentence needs one label per word: {len(self.words)} words, {len(self.labels)} labels"
            )
        if not self.words:
            raise ValidationError("a sentence needs at least one word")

    def __len__(self) -> int:
        return len(self.words)


@attrs.frozen
class Corpus:
    """One split of a task (train, dev or test): an ordered list of sentences.

    ``source`` says where the sentences came from (files), for provenance.
    """

    name: str
    sentences: tuple[Sentence, ...] = attrs.field(converter=tuple)
    source: str = ""

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.sentences)

    def words(self) -> list[tuple[str, ...]]:
        return [s.words for s in self.sentences]

    def labels(self) -> list[str]:
        """All labels of the split, token by token, in corpus order."""
        return [label for s in self.sentences for label in s.labels]

    def label_counts(self) -> dict[str, int]:
        counts = Counter(self.labels())
        return {k: counts[k] for k in sorted(counts)}

    def text_checksum(self) -> str:
        """sha256 of the words and sentence boundaries only.

        Activations depend on the words, not the labels, so two tasks over the
        same sentences (e.g. sem and ccg on the PMB) share one activation store.
        """
        h = hashlib.sha256()
        for s in self.sentences:
            h.update("\x1f".join(s.words).encode("utf-8"))
            h.update(b"\x1e")
        return h.hexdigest()

    def checksum(self) -> str:
        """sha256 of words and labels: identifies the annotated data in manifests."""
        h = hashlib.sha256()
        for s in self.sentences:
            h.update("\x1f".join(s.words).encode("utf-8"))
            h.update(b"\x1d")
            h.update("\x1f".join(s.labels).encode("utf-8"))
            h.update(b"\x1e")
        return h.hexdigest()

    def head(self, n: int | None) -> "Corpus":
        """The first ``n`` sentences (all when ``n`` is None): for small slices."""
        if n is None or n >= len(self.sentences):
            return self
        return Corpus(self.name, self.sentences[:n], self.source + f" (first {n} sentences)")


@attrs.frozen
class TaskData:
    """A tagging task with its three splits (paper section 3, 'Language Tasks')."""

    name: str
    train: Corpus
    dev: Corpus
    test: Corpus
    description: str = ""

    @property
    def splits(self) -> dict[str, Corpus]:
        return {"train": self.train, "dev": self.dev, "test": self.test}

    @property
    def labels(self) -> tuple[str, ...]:
        """The label set the probe learns: labels seen in train, sorted."""
        return tuple(sorted(set(self.train.labels())))

    def unseen_labels(self) -> dict[str, dict[str, int]]:
        """Per dev/test split, labels absent from train and their token counts."""
        known = set(self.labels)
        out: dict[str, dict[str, int]] = {}
        for name in ("dev", "test"):
            counts = self.splits[name].label_counts()
            out[name] = {k: v for k, v in counts.items() if k not in known}
        return out

    def head(self, train: int | None = None, dev: int | None = None, test: int | None = None) -> "TaskData":
        return TaskData(self.name, self.train.head(train), self.dev.head(dev), self.test.head(test), self.description)


def _as_neurons(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(x) for x in np.asarray(value, dtype=np.int64).ravel())


@functools.lru_cache(maxsize=16)
def _neuron_array(neurons: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(neurons, dtype=np.int64)
    out.setflags(write=False)
    return out


@attrs.frozen
class NeuronIndex:
    """Maps a flat neuron number to (layer, unit): neuron j = layer * hidden_size + unit.

    Layer 0 is the embedding (token) layer where the model has one; the paper
    counts it ("13 layers" for BERT-base, section 3).

    A screened index (``neurons`` given, :mod:`neuroscope.screening`) numbers only the
    screened neurons: neuron j of the run is network neuron ``neurons[j]`` (ascending),
    whose layer and unit it reports; :meth:`network` gives those ids.
    """

    layer_names: tuple[str, ...] = attrs.field(converter=_as_str_tuple)
    hidden_size: int
    neurons: tuple[int, ...] | None = attrs.field(default=None, converter=_as_neurons)

    def __attrs_post_init__(self) -> None:
        if self.neurons is not None:
            ids = _neuron_array(self.neurons)
            total = len(self.layer_names) * self.hidden_size
            if len(ids) == 0 or (ids[1:] <= ids[:-1]).any() or ids[0] < 0 or ids[-1] >= total:
                raise ValueError(f"screened neurons: expected ascending distinct ids in 0 .. {total - 1}")

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def n_neurons(self) -> int:
        if self.neurons is not None:
            return len(self.neurons)
        return self.n_layers * self.hidden_size

    @property
    def screened(self) -> bool:
        return self.neurons is not None

    def full(self) -> "NeuronIndex":
        """The index of every neuron of the network (itself when not screened)."""
        return self if self.neurons is None else NeuronIndex(self.layer_names, self.hidden_size)

    def network(self, neurons: Sequence[int] | np.ndarray) -> np.ndarray:
        """The network's flat ids (``layer * hidden_size + unit``) of the run's neurons."""
        ids = np.asarray(neurons, dtype=np.int64)
        return ids if self.neurons is None else _neuron_array(self.neurons)[ids]

    def local(self, network_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The run's ids of network neurons (-1 where one was screened out)."""
        ids = np.asarray(network_ids, dtype=np.int64)
        if self.neurons is None:
            return ids
        kept = _neuron_array(self.neurons)
        at = np.minimum(np.searchsorted(kept, ids), len(kept) - 1)
        return np.where(kept[at] == ids, at, -1)

    def layer_of(self, neurons: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.network(neurons) // self.hidden_size

    def unit_of(self, neurons: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.network(neurons) % self.hidden_size

    def name(self, neuron: int) -> str:
        layer, unit = self.locate(neuron)
        return f"{self.layer_names[layer]}:{unit}"

    def locate(self, neuron: int) -> tuple[int, int]:
        """(layer, unit) of flat neuron ``neuron``."""
        j = int(neuron) if self.neurons is None else int(self.neurons[int(neuron)])
        return j // self.hidden_size, j % self.hidden_size

    def to_json(self) -> dict:
        out: dict[str, Any] = {"layer_names": list(self.layer_names), "hidden_size": self.hidden_size}
        if self.neurons is not None:  # unscreened indexes keep the JSON (and store keys) they always had
            out["neurons"] = list(self.neurons)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "NeuronIndex":
        return cls(tuple(data["layer_names"]), int(data["hidden_size"]), data.get("neurons"))
