"""Model adapter for any transformers encoder (BERT, XLNet, RoBERTa, DistilBERT, ...).

* All hidden states, the embedding layer included (paper section 3: BERT-base
  is "13 layers and 768 dimensions", 9,984 neurons).
* One vector per word from its sub-tokens: the last sub-token by default
  (paper section 3, "Classifier Settings"), ``first`` or ``mean`` as options.
  Sub-tokens are aligned to words with the fast tokenizer's ``word_ids()`` on
  pre-tokenised input; words are never re-tokenised in a dummy context.
* Batched, padded forward passes with attention masks; the tokenizer's own
  padding side and special tokens are used, so XLNet's left padding and its
  trailing ``<sep> <cls>`` are handled by position lookup, not by offsets.
* A sentence longer than the model's limit is split into overlapping windows
  of whole words (each at most the limit in sub-tokens, the next starting
  half-way through the previous); every word takes its vectors from the window
  in which it is farthest from a window edge (docs/models.md). A single word
  longer than the limit is an error naming the sentence.
* A word the tokenizer turns into no sub-token at all (e.g. a lone zero-width
  space) is replaced by the tokenizer's unknown token, and counted.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from neuroscope.plugin import (AGGREGATIONS, ModelAdapter, ModelLoadError, NeuronIndex, NeuroscopeError, hookimpl,
                               resolve_device)

from neuroscope_plugins.hub import checkpoint_sha256, resolve_checkpoint

log = logging.getLogger(__name__)

ADAPTER_VERSION = 1


def plan_windows(counts: Sequence[int], budget: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Overlapping windows of whole words with at most ``budget`` sub-tokens each,
    and for every word the window it takes its vector from."""
    n = len(counts)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, total = start, 0
        while end < n and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        if end == start:
            raise ValueError(f"word {start} alone has {counts[start]} sub-tokens, more than the limit {budget}")
        windows.append((start, end))
        if end == n:
            break
        start = max(start + 1, (start + end) // 2)
    owner = []
    for i in range(n):
        margins = [
            min(i - s if s > 0 else n, e - 1 - i if e < n else n) if s <= i < e else -1 for s, e in windows
        ]
        owner.append(int(np.argmax(margins)))
    return windows, owner


class TransformersAdapter(ModelAdapter):
    """Word activations of every layer of a transformers ``AutoModel``."""

    name = "transformers"

    def __init__(
        self,
        *,
        checkpoint: str,
        device: str = "auto",
        aggregation: str = "last",
        batch_size: int = 32,
        max_length: int | None = None,
        revision: str | None = None,
    ):
        if aggregation not in AGGREGATIONS:
            raise NeuroscopeError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.checkpoint = checkpoint
        self.aggregation = aggregation
        self.batch_size = int(batch_size)
        self.path = resolve_checkpoint(checkpoint, revision)
        self.device = resolve_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=False)
            if "ByteLevel" in str(getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", "")):
                tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=False, add_prefix_space=True)
            model = AutoModel.from_pretrained(self.path, trust_remote_code=False)
        except Exception as exc:  # damaged or foreign files surface as many types (OSError, SafetensorError, ...)
            raise ModelLoadError(f"{self.path}: cannot load a transformers model ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); check that the "
                                 "checkpoint's files are complete (e.g. download them again)") from exc
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError(f"{self.path}: needs a fast tokenizer (tokenizer.json) to align sub-words with word_ids()")
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.tokenizer = tokenizer
        self.model = model.eval().to(self.device)
        limits = [v for v in (tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None))
                  if isinstance(v, int) and 0 < v < 1_000_000]
        self.max_length = int(max_length) if max_length else (min(limits) if limits else None)
        self.n_special = tokenizer.num_special_tokens_to_add(pair=False)
        config = model.config
        hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
        n_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0))
        if not hidden or not n_layers:
            raise ModelLoadError(f"{self.path}: cannot read hidden size and layer count from the config")
        self._index = NeuronIndex(("emb",) + tuple(str(i) for i in range(1, n_layers + 1)), hidden)
        self._sha = checkpoint_sha256(self.path)
        self.replaced_words = 0
        self.windowed_sentences = 0

    @property
    def neuron_index(self) -> NeuronIndex:
        return self._index

    def identity(self) -> dict[str, Any]:
        return {
            "adapter": self.name,
            "adapter_version": ADAPTER_VERSION,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self._sha,
            "model_type": self.model.config.model_type,
            "aggregation": self.aggregation,
            "max_length": self.max_length,
        }

    def device_name(self) -> str:
        return str(self.device)

    def _subword_counts(self, sentences: list[list[str]]) -> list[list[int]]:
        enc = self.tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
        counts = []
        for k, words in enumerate(sentences):
            c = [0] * len(words)
            for wid in enc.word_ids(k):
                if wid is not None:
                    c[wid] += 1
            counts.append(c)
        return counts

    def embed(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        words = [list(s) for s in sentences]
        counts = self._subword_counts(words)
        unk = self.tokenizer.unk_token
        for k, c in enumerate(counts):
            empty = [i for i, n in enumerate(c) if n == 0]
            if empty:
                if unk is None:
                    raise NeuroscopeError(f"words {empty} of sentence {' '.join(words[k])!r} give no sub-tokens "
                                          "and the tokenizer has no unknown token")
                for i in empty:
                    words[k][i] = unk
                self.replaced_words += len(empty)
        if any(0 in c for c in counts):
            counts = self._subword_counts(words)
        segments: list[tuple[int, int, int]] = []  # (sentence, first word, end word)
        owners: list[list[int]] = []
        for k, c in enumerate(counts):
            if self.max_length is None or sum(c) + self.n_special <= self.max_length:
                segments.append((k, 0, len(c)))
                owners.append([len(segments) - 1] * len(c))
                continue
            try:
                windows, owner = plan_windows(c, self.max_length - self.n_special)
            except ValueError as exc:
                raise NeuroscopeError(f"sentence {' '.join(words[k][:12])!r}...: {exc}") from None
            base = len(segments)
            segments.extend((k, s, e) for s, e in windows)
            owners.append([base + o for o in owner])
            self.windowed_sentences += 1
        seg_vectors = self._forward([words[k][s:e] for k, s, e in segments])
        out = []
        for k, c in enumerate(counts):
            rows = []
            for i in range(len(c)):
                seg = owners[k][i]
                rows.append(seg_vectors[seg][:, i - segments[seg][1], :])
            out.append(np.stack(rows, axis=1))
        return out

    def _forward(self, segments: list[list[str]]) -> list[np.ndarray]:
        """(layers, words, hidden) float32 for each segment, in batches of batch_size."""
        out: list[np.ndarray] = []
        for start in range(0, len(segments), self.batch_size):
            chunk = segments[start : start + self.batch_size]
            enc = self.tokenizer(chunk, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.tokenizer.model_input_names}
            with torch.inference_mode():
                result = self.model(**inputs, output_hidden_states=True)
            hidden = torch.stack(result.hidden_states)  # (layers, batch, tokens, hidden)
            if hidden.shape[0] != self._index.n_layers:
                raise ModelLoadError(f"model returned {hidden.shape[0]} hidden states, expected {self._index.n_layers}")
            for b, seg in enumerate(chunk):
                out.append(self._words_of(hidden[:, b], enc.word_ids(b), len(seg)))
        return out

    def subwords(self, words: Sequence[str]) -> tuple[list[str], list[int], np.ndarray]:
        """One sentence's sub-tokens (special tokens left out): their strings, the word each
        belongs to, and their activations (layers, tokens, hidden) float32. For looking at
        neurons below the word level (``neuroscope show --subwords``)."""
        enc = self.tokenizer([list(words)], is_split_into_words=True, truncation=False, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.tokenizer.model_input_names}
        with torch.inference_mode():
            hidden = torch.stack(self.model(**inputs, output_hidden_states=True).hidden_states)[:, 0]
        keep = [pos for pos, wid in enumerate(enc.word_ids(0)) if wid is not None]
        tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        return ([tokens[p] for p in keep], [enc.word_ids(0)[p] for p in keep],
                hidden[:, keep, :].float().cpu().numpy())

    def _words_of(self, hidden: torch.Tensor, word_ids: list[int | None], n_words: int) -> np.ndarray:
        positions: list[list[int]] = [[] for _ in range(n_words)]
        for pos, wid in enumerate(word_ids):
            if wid is not None:
                positions[wid].append(pos)
        if self.aggregation == "mean":
            weights = torch.zeros(n_words, hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
            for w, pos in enumerate(positions):
                weights[w, pos] = 1.0 / len(pos)
            vectors = torch.einsum("lth,wt->lwh", hidden, weights)
        else:
            pick = [p[-1] if self.aggregation == "last" else p[0] for p in positions]
            vectors = hidden[:, torch.tensor(pick, device=hidden.device), :]
        return vectors.float().cpu().numpy()


def transformers_model(*, device: str = "auto", aggregation: str = "last", batch_size: int = 32,
                       checkpoint: str | None = None, location: str | None = None,
                       **options: Any) -> TransformersAdapter:
    """``checkpoint`` (registry.toml) or ``location`` (``--model hf:NAME-OR-PATH``): a hub id or a directory."""
    checkpoint = location or checkpoint
    if not checkpoint:
        raise ModelLoadError("the transformers adapter needs a checkpoint: --model hf:NAME-OR-PATH")
    return TransformersAdapter(checkpoint=checkpoint, device=device, aggregation=aggregation, batch_size=batch_size,
                               **options)


@hookimpl
def register_models(register):
    register("transformers", transformers_model, aliases=["hf"])
