"""Model adapter for transformers encoders (BERT, XLNet, RoBERTa, DistilBERT, ...) and
decoder LMs (GPT-2, GPT-NeoX / Pythia, Llama / Qwen / Mistral style).

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
* Decoder LMs (docs/models.md): byte-level BPE tokenizers get ``add_prefix_space`` so
  every pre-split word is encoded as it is in running text (with its leading space);
  sentencepiece (Metaspace) tokenizers mark every word with ``▁`` themselves. Batches
  are padded on the right (a causal model's real tokens never attend to later pads, and
  left padding would shift rotary / absolute positions); a tokenizer without a pad token
  pads with its end-of-text token (masked out). ``dtype`` loads float32 (default),
  bfloat16 or float16 weights; ``device_map`` (e.g. "auto", needs ``accelerate``)
  places a large model over the GPUs present.
* ``intervene()`` removes neurons inside the forward pass (``--causal``,
  :mod:`neuroscope.causal`): forward hooks at each hidden state's producer (the input of
  the first block, each block's output, the final norm where the last hidden state is
  normalised), located once per model by comparing with ``output_hidden_states``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from neuroscope.plugin import (AGGREGATIONS, AttributionUnsupported, InterventionRecord, ModelAdapter, ModelLoadError,
                               NeuronIndex, NeuroscopeError, edit_hidden, is_loaded_model, loaded_model, resolve_device)
from neuroscope_plugins.hub import checkpoint_sha256, local_checkpoint, resolve_checkpoint

log = logging.getLogger(__name__)

ADAPTER_VERSION = 1

#: model types loaded with their causal-LM head (decoder LMs); others load the bare encoder
CAUSAL_TYPES = frozenset({"gpt2", "gpt_neox", "llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gptj", "opt",
                          "bloom", "falcon", "phi", "phi3", "olmo", "olmo2", "stablelm", "gpt_neo", "codegen",
                          "starcoder2", "smollm3"})
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: share of word sub-tokens masked for the masked-LM objective (BERT's 15 %)
MLM_RATE = 0.15
#: tokens listed per neuron as promoted and as suppressed by its output weights (output_tokens)
OUTPUT_TOKENS = 10
#: bins of the histogram of a neuron's logit effect over the vocabulary
OUTPUT_BINS = 40
#: neurons per product with the unembedding (a (vocab x chunk) float32 block)
OUTPUT_CHUNK = 64


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


def with_prefix_space(tokenizer: Any) -> bool:
    """Make a byte-level BPE tokenizer encode every pre-split word with its leading space
    ("Ġword"), as the word appears in running text. Without it, each word after the first
    is encoded as if glued to the previous one ("o", "wners" instead of "Ġowners"): a
    re-tokenisation the model never saw. The ``add_prefix_space`` argument of
    ``from_pretrained`` is not honoured by every tokenizer class, so the flag is set in the
    backend's own pre-tokenizer (alone or inside a Sequence, as Llama-3 / Qwen have it).
    Returns whether anything changed."""
    import json

    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or "ByteLevel" not in str(backend.pre_tokenizer):
        return False
    state = json.loads(backend.to_str())
    changed = False

    def visit(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and "add_prefix_space" in node and not node["add_prefix_space"]:
                node["add_prefix_space"] = True
                changed = True
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(state.get("pre_tokenizer"))
    if changed:
        tokenizer._tokenizer = Tokenizer.from_str(json.dumps(state))
        if hasattr(tokenizer, "add_prefix_space"):
            tokenizer.add_prefix_space = True
    return changed


class TransformersAdapter(ModelAdapter):
    """Word activations of every layer of a transformers ``AutoModel``, at one site:
    ``hidden`` (the hidden states, the paper's), ``mlp`` (each block's feed-forward
    neurons after the nonlinearity: the input of the MLP's output projection) or ``attn``
    (the heads' outputs: the input of the attention output projection), each located in
    every block by its structure (:meth:`_projections`)."""

    name = "transformers"
    sites = ("hidden", "mlp", "attn")

    def __init__(
        self,
        *,
        checkpoint: str,
        device: str = "auto",
        aggregation: str = "last",
        batch_size: int = 32,
        max_length: int | None = None,
        revision: str | None = None,
        dtype: str = "float32",
        device_map: str | None = None,
        site: str = "hidden",
    ):
        if site not in self.sites:
            raise NeuroscopeError(f"site must be one of {', '.join(self.sites)}, got {site!r}")
        if aggregation not in AGGREGATIONS:
            raise NeuroscopeError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        if dtype not in DTYPES:
            raise NeuroscopeError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.checkpoint = checkpoint
        self.aggregation = aggregation
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self._loaded_digest: str | None = None
        if is_loaded_model(checkpoint):
            tokenizer, model = self._take_loaded(checkpoint, device, device_map)
        else:
            tokenizer, model = self._load(checkpoint, revision, device, device_map)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError(f"{self.path}: needs a fast tokenizer (tokenizer.json) to align sub-words with word_ids()")
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        if self.causal:
            tokenizer.padding_side = "right"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
        self.tokenizer = tokenizer
        head = model is not model.base_model  # a decoder's LM head, or a loaded object's task head
        self.lm = model.eval() if self.causal and head else None  # the model with its LM head (decoders)
        base = model.base_model if self.causal or head else model
        self.model = base.eval() if self._placed else base.eval().to(self.device)
        if self._placed:
            self.device = next(self.model.parameters()).device
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
        self.site = site
        #: at the mlp and attn sites: per block, the linear map whose input is read (and whether sequence-first)
        self._block_list: torch.nn.ModuleList | None = None
        self._mlp: list[tuple[Any, bool]] | None = None
        self._gated: list[Any] | None = None  # _gates(): found once ([] when the MLP is not gated)
        self._glu_read: int | None = None  # inside glu_parts(): 0 reads the gate projection, 1 the up
        if site != "hidden":
            self._mlp = self._projections(site)
            self._index = NeuronIndex(tuple(f"{site}{i}" for i in range(1, n_layers + 1)), self._site_width)
        self._sha = self._loaded_digest or checkpoint_sha256(self.path)
        self.replaced_words = 0
        self.windowed_sentences = 0
        self._ablation: tuple[Any, Any] | None = None  # (Ablation, InterventionRecord) inside intervene()
        self._positions: torch.Tensor | None = None  # (rows, tokens) bool: where the current batch is edited
        self._sites_found: list[tuple[Any, str, bool]] | None = None
        self._mlm: Any = None
        self._mlm_missing: str | None = None
        if self._loaded_digest is not None and not self.causal:  # a loaded encoder: its own head or none
            if head and type(model).__name__.endswith("ForMaskedLM"):
                self._mlm = model.eval()
            else:
                self._mlm, self._mlm_missing = False, (f"the loaded {type(model).__name__} has no masked-LM head "
                                                       "(pass an AutoModelForMaskedLM object for the model's own loss)")

    def _load(self, checkpoint: str, revision: str | None, device: str, device_map: str | None
              ) -> tuple[Any, Any]:
        """(tokenizer, model) read from the checkpoint's files, placed by ``device_map`` if given."""
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

        self.path = resolve_checkpoint(checkpoint, revision)
        self.device = resolve_device(device)
        placement: dict[str, Any] = {}
        if device_map:
            try:
                import accelerate  # noqa: F401 - transformers needs it for device_map
            except ImportError:
                raise ModelLoadError("device_map needs the accelerate package: pip install accelerate") from None
            placement = {"device_map": device_map}
        self._placed = bool(placement)
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=False)
            self.prefix_space = with_prefix_space(tokenizer)
            config = AutoConfig.from_pretrained(self.path, trust_remote_code=False)
            self.causal = config.model_type in CAUSAL_TYPES
            loader = AutoModelForCausalLM if self.causal else AutoModel
            model = loader.from_pretrained(self.path, trust_remote_code=False, dtype=DTYPES[self.dtype], **placement)
        except Exception as exc:  # damaged or foreign files surface as many types (OSError, SafetensorError, ...)
            raise ModelLoadError(f"{self.path}: cannot load a transformers model ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); check that the "
                                 "checkpoint's files are complete (e.g. download them again)") from exc
        return tokenizer, model

    def _take_loaded(self, checkpoint: str, device: str, device_map: str | None) -> tuple[Any, Any]:
        """(tokenizer, model) of a model object registered by :func:`neuroscope.loaded.register`:
        used where it is (its device, its dtype, which must be the run's), never copied."""
        model, tokenizer, self._loaded_digest = loaded_model(checkpoint)
        self.path = Path(checkpoint)
        where = next(model.parameters()).device
        if device_map:
            raise ModelLoadError(f"{checkpoint}: a loaded model is used where it is; place it before passing it "
                                 "(from_pretrained(..., device_map=...)) instead of giving device_map")
        if device != "auto" and resolve_device(device) != where:
            raise ModelLoadError(f"{checkpoint}: the loaded model is on {where}, the run asks for {device}; move it "
                                 f"(model.to({str(resolve_device(device))!r})) or leave device at auto")
        weights = {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
        if weights != {self.dtype}:
            raise ModelLoadError(f"{checkpoint}: the loaded model's weights are {', '.join(sorted(weights))}, the run's "
                                 f"dtype is {self.dtype}; pass dtype={sorted(weights)[0]!r} or convert the model")
        self.device, self._placed = where, True
        self.prefix_space = with_prefix_space(tokenizer)
        self.causal = model.config.model_type in CAUSAL_TYPES
        return tokenizer, model

    @property
    def neuron_index(self) -> NeuronIndex:
        return self._index

    def identity(self) -> dict[str, Any]:
        identity = {
            "adapter": self.name,
            "adapter_version": ADAPTER_VERSION,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self._sha,
            "model_type": self.model.config.model_type,
            "aggregation": self.aggregation,
            "max_length": self.max_length,
        }
        if self.dtype != "float32":  # float32 stores keep the identity (and cache key) they always had
            identity["dtype"] = self.dtype
        if self.prefix_space:  # byte-level BPE: words encoded with their leading space (with_prefix_space)
            identity["prefix_space"] = True
        if self.site != "hidden":  # hidden-state stores keep the identity they always had
            identity["site"] = self.site
        return identity

    def device_name(self) -> str:
        return str(self.device)

    def token_counts(self, sentences: Sequence[Sequence[str]]) -> list[int]:
        """Sub-tokens of each sentence plus its special tokens, at most one window
        (``max_length``): what a sentence takes in a forward pass (``batch_tokens``)."""
        counts = [sum(c) + self.n_special for c in self._subword_counts([list(s) for s in sentences])]
        return [min(c, self.max_length) if self.max_length else c for c in counts]

    def _subword_counts(self, sentences: list[list[str]]) -> list[list[int]]:
        enc = self.tokenizer(sentences, is_split_into_words=True, add_special_tokens=False, verbose=False)
        counts = []
        for k, words in enumerate(sentences):
            c = [0] * len(words)
            for wid in enc.word_ids(k):
                if wid is not None:
                    c[wid] += 1
            counts.append(c)
        return counts

    def embed(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        words, counts, segments, owners = self._segments(sentences)
        by_condition = self._forward([words[k][s:e] for k, s, e in segments])
        return [array for seg_vectors in by_condition  # one condition unless inside intervene()
                for array in _assembled(seg_vectors, counts, segments, owners, axis=1)]

    def _segments(self, sentences: Sequence[Sequence[str]], count: bool = True
                  ) -> tuple[list[list[str]], list[list[int]], list[tuple[int, int, int]], list[list[int]]]:
        """The forward pass's segments of ``sentences``: the words (a word without
        sub-tokens replaced by the unknown token), each word's sub-token count, the segments
        (sentence, first word, end word; a sentence longer than the model's window split by
        :func:`plan_windows`) and, per sentence, the segment each word is read from.
        ``count``: add the replaced words and windowed sentences to the extraction's tallies."""
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
                self.replaced_words += len(empty) if count else 0
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
            self.windowed_sentences += 1 if count else 0
        return words, counts, segments, owners

    def _forward(self, segments: list[list[str]]) -> list[list[np.ndarray]]:
        """Per condition (one outside :meth:`intervene`), (layers, words, hidden) float32
        for each segment, in batches of batch_size (each repeated once per condition)."""
        conditions = self._ablation[0].n_conditions if self._ablation else 1
        out: list[list[np.ndarray]] = [[] for _ in range(conditions)]
        step = max(len(segments), 1) if self.batch_tokens else self.batch_size  # batches() kept the budget
        for start in range(0, len(segments), step):
            chunk = segments[start : start + step]
            enc = self.tokenizer(chunk, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt")
            inputs = {k: v.to(self.device).repeat(conditions, *([1] * (v.dim() - 1)))
                      for k, v in enc.items() if k in self.tokenizer.model_input_names}
            if self._ablation:
                self._positions = self._edit_positions(enc, conditions)
            with torch.inference_mode():
                with self._reading_mlp() as mlp:
                    if self.lm is not None:
                        result = self.lm(**inputs, output_hidden_states=mlp is None)
                    else:
                        result = self.model(**inputs, output_hidden_states=mlp is None)
                if self._ablation and self._ablation[1].objective:
                    if self.lm is not None:
                        self._next_token_loss(result.logits, inputs, conditions)
                    else:
                        self._masked_lm_loss(enc, inputs, conditions)
            if mlp is not None:  # (layers, conditions x batch, tokens, width), edited where intervened
                hidden = torch.stack(mlp)
            else:
                hidden = torch.stack(result.hidden_states)  # (layers, conditions x batch, tokens, hidden)
                if self._ablation:  # a state recorded before its hook ran (e.g. XLNet's first) shows the edit too
                    hidden = torch.stack([self._edited(layer, h) for layer, h in enumerate(hidden)])
            if hidden.shape[0] != self._index.n_layers:
                raise ModelLoadError(f"model returned {hidden.shape[0]} {self.site} states, expected "
                                     f"{self._index.n_layers}")
            for k in range(conditions):
                for b, seg in enumerate(chunk):
                    out[k].append(self._words_of(hidden[:, k * len(chunk) + b], enc.word_ids(b), len(seg)))
        return out

    # ---- intervention (neuroscope run --causal)

    def _word_positions(self, enc: Any) -> torch.Tensor:
        """(batch, tokens) bool: the sub-tokens of words (not special tokens, not padding)."""
        return torch.tensor([[w is not None for w in enc.word_ids(b)] for b in range(len(enc["input_ids"]))],
                            dtype=torch.bool, device=self.device)

    def _edit_positions(self, enc: Any, conditions: int) -> torch.Tensor:
        """(conditions x batch, tokens) bool: the positions an ablation edits."""
        if self._ablation[0].positions == "all":
            shape = enc["input_ids"].shape
            return torch.ones(conditions * shape[0], shape[1], dtype=torch.bool, device=self.device)
        return self._word_positions(enc).repeat(conditions, 1)

    def _blocks(self) -> torch.nn.ModuleList:
        """The model's list of transformer blocks (one per hidden state after the first),
        found once (before the mlp and attn sites rename the layers)."""
        if self._block_list is None:
            n = self._index.n_layers - 1
            lists = [m for _, m in self.model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
            if len(lists) != 1:
                raise ModelLoadError(f"{self.path}: cannot find its {n} transformer blocks for intervention "
                                     f"({len(lists)} module lists of that length)")
            self._block_list = lists[0]
        return self._block_list

    def _probe_pass(self, handles: list[Any], **kwargs: Any) -> tuple[Any, tuple[int, int]]:
        """One forward pass over a tiny padded batch (sentences of 3 and 5 words), to locate
        sites by what flows through the model; ``handles`` (its hooks) are removed after
        it. The model's output and the batch's (rows, tokens)."""
        enc = self.tokenizer([["a", "b", "c"], ["a", "b", "c", "d", "e"]], is_split_into_words=True, padding=True,
                             return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.tokenizer.model_input_names}
        try:
            with torch.inference_mode():
                result = self.model(**inputs, **kwargs)
        finally:
            for h in handles:
                h.remove()
        rows, tokens = enc["input_ids"].shape
        return result, (int(rows), int(tokens))

    def _projections(self, site: str) -> list[tuple[Any, bool]]:
        """Per block, the linear map whose input is the site, and whether that input is
        sequence-first. Found by structure, not by module names, from one forward pass
        that records the input of every linear map (an ``nn.Linear``, or GPT-2's
        ``Conv1D``) of every block:

        * ``mlp``: the one map from a width other than the hidden size back to the hidden
          size, the MLP's output projection. Its input is the post-nonlinearity
          activation: BERT's ``intermediate`` output, GPT-2's ``c_proj`` input, GPT-NeoX's
          ``dense_4h_to_h`` input, a gated MLP's ``act(gate_proj(x)) * up_proj(x)`` (Llama,
          Mistral, Qwen2, Gemma), XLNet's ``ff.layer_2`` input.
        * ``attn``: the one other map to the hidden size whose input no other map of the
          block reads (queries, keys and values share theirs): the attention output
          projection, whose input is the heads' outputs side by side (BERT's
          ``attention.output.dense``, GPT-2's ``attn.c_proj``, GPT-NeoX's
          ``attention.dense``, Llama's ``o_proj``)."""
        hidden = self._index.hidden_size
        blocks = list(self._blocks())
        linears = [[m for m in block.modules() if _linear_shape(m)] for block in blocks]
        seen: dict[int, list[torch.Tensor]] = {}
        handles = [m.register_forward_pre_hook(lambda mod, args: seen.setdefault(id(mod), []).append(args[0]))
                   for maps in linears for m in maps]
        _, (rows, tokens) = self._probe_pass(handles)

        def shared(m: Any, maps: list) -> bool:
            mine = seen.get(id(m), [None])[0]
            return any(o is not m and (theirs := seen.get(id(o), [None])[0]) is not None and mine is not None
                       and theirs.shape == mine.shape and torch.equal(theirs, mine) for o in maps)

        found: list[tuple[Any, bool]] = []
        for b, maps in enumerate(linears):
            down = [m for m in maps if _linear_shape(m)[1] == hidden and _linear_shape(m)[0] != hidden]
            if site == "mlp":
                chosen = down
                what = "linear maps from another width back to the hidden size"
            else:
                chosen = [m for m in maps if _linear_shape(m)[1] == hidden and m not in down and not shared(m, maps)]
                what = "linear maps to the hidden size with an input of their own (attention output projections)"
            if len(chosen) != 1:
                raise ModelLoadError(f"{self.path}: block {b} has {len(chosen)} {what}, so the {site} site cannot "
                                     f"be located; --site {site} needs exactly one (a mixture of experts has several)")
            module = chosen[0]
            calls = seen.get(id(module), [])
            width = _linear_shape(module)[0]
            if len(calls) != 1:
                raise ModelLoadError(f"{self.path}: block {b}'s {site} projection ran {len(calls)} times in one "
                                     "forward pass, expected once")
            shape = tuple(calls[0].shape)
            if shape not in ((rows, tokens, width), (tokens, rows, width)):
                raise ModelLoadError(f"{self.path}: block {b}'s {site} input has shape {shape}, expected "
                                     f"({rows}, {tokens}, {width}) or sequence-first")
            found.append((module, shape == (tokens, rows, width) and rows != tokens))
        widths = {_linear_shape(m)[0] for m, _ in found}
        if len(widths) != 1:
            raise ModelLoadError(f"{self.path}: the {site} site differs in width between blocks ({sorted(widths)})")
        self._site_width = widths.pop()
        return found

    def _gates(self) -> list[tuple[tuple[Any, int | None], tuple[Any, int | None]]] | None:
        """At the mlp site of a gated MLP (Llama, Mistral, Qwen2, Gemma, Phi-3's fused map),
        per block its gate and up projections, each as (linear map, None) or, for a fused
        map of twice the MLP width, (map, 0 or 1: its first or second half); None when the
        MLP is not gated. Found by structure from one forward pass: the gate is the map
        whose output is the input of a parameter-free module (the activation), and the up
        projection the other map of the MLP width whose output, times that activation's
        output, is the MLP's value (the input of its output projection, :meth:`_projections`)."""
        if self._gated is not None:
            return self._gated or None
        if self.site != "mlp":
            raise NeuroscopeError(f"gate and up projections are read at the mlp site; this adapter reads {self.site}")
        width, hidden = self._site_width, _linear_shape(self._mlp[0][0])[1]  # the down projection's output
        blocks = list(self._blocks())
        outputs: dict[int, list[torch.Tensor]] = {}
        acts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        values: dict[int, list[torch.Tensor]] = {}
        handles, maps, activations = [], [], []
        for b, block in enumerate(blocks):
            mine = [m for m in block.modules() if _linear_shape(m) in ((hidden, width), (hidden, 2 * width))]
            free = [m for m in block.modules() if not list(m.children()) and not list(m.parameters(recurse=False))]
            maps.append(mine)
            activations.append(free)
            handles += [m.register_forward_hook(lambda mod, args, out: outputs.setdefault(id(mod), []).append(out))
                        for m in mine]
            handles += [m.register_forward_hook(lambda mod, args, out: acts.setdefault(id(mod), []).append(
                (args[0], out)) if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor)
                else None) for m in free]
            down = self._mlp[b][0]
            handles.append(down.register_forward_pre_hook(
                lambda mod, args, b=b: values.setdefault(b, []).append(args[0])))
        self._probe_pass(handles)
        found = []
        for b in range(len(blocks)):
            parts = []  # (map, half, its output of the MLP width)
            for m in maps[b]:
                out = outputs.get(id(m), [])
                if len(out) != 1:
                    continue
                if _linear_shape(m)[1] == width:
                    parts.append((m, None, out[0]))
                else:
                    parts += [(m, 0, out[0][..., :width]), (m, 1, out[0][..., width:])]
            value = values.get(b, [])
            calls = [call for act in activations[b] for call in acts.get(id(act), [])]
            pair = next((((g[0], g[1]), (u[0], u[1])) for a_in, a_out in calls for g in parts
                         if len(value) == 1 and g[2].shape == a_in.shape and torch.equal(g[2], a_in)
                         for u in parts if u is not g and u[2].shape == a_out.shape
                         and torch.allclose(a_out * u[2], value[0], rtol=1e-4, atol=1e-6)), None)
            if pair is None:
                self._gated = []
                return None
            found.append(pair)
        self._gated = found
        return found

    def glu_parts(self, sentences: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """At the mlp site of a gated MLP: per sentence its words' gate projection
        (before the activation, whose sign it shares for SiLU and GELU) and up projection,
        two (layers, words, width) float32 arrays read at the same sub-token as the mlp
        values (their product after the gate's activation). GLUScope's view of a neuron
        (Gerstner & Schuetze 2026): gate and up can each be positive or negative. None when
        the MLP is not gated (BERT, GPT-2, GPT-NeoX)."""
        if self._gates() is None:
            return None
        parts = []
        for which in (0, 1):
            self._glu_read = which
            try:
                parts.append(self.embed(sentences))
            finally:
                self._glu_read = None
        return list(zip(parts[0], parts[1]))

    def output_tokens(self, neurons: Sequence[tuple[str, int]], k: int = OUTPUT_TOKENS,
                      bins: int = OUTPUT_BINS) -> list[dict[str, Any]] | None:
        """At the mlp site of a model with an unembedding (a decoder's LM head): per neuron
        (layer name, unit) the tokens its output weights promote and suppress, the direct
        logit effect ``W_U @ w_out`` (Geva et al. 2022; the "logits" of SAEDashboard and
        Neuronpedia pages), ``w_out`` the neuron's column of its block's MLP output
        projection and ``W_U`` the output embedding, with no final norm folded in (the norm
        scales every direction of the residual stream, the order of a neuron's tokens
        changes little). Each: ``promoted`` and ``suppressed``, ``k`` (token, logit)
        pairs, largest effect first, and ``histogram`` of the effect over the whole
        vocabulary (``bins`` bins: centres and token counts). None where the question has
        no answer: another site, or no unembedding (an encoder)."""
        unembed = self.lm.get_output_embeddings() if self.site == "mlp" and self.lm is not None else None
        if unembed is None or getattr(unembed, "weight", None) is None:
            return None
        names = list(self._index.layer_names)
        W_U = unembed.weight.detach().float()  # (vocab, hidden); float32 once, not per neuron
        columns = []
        for name, unit in neurons:
            if name not in names or not 0 <= int(unit) < self._site_width:
                raise NeuroscopeError(f"{self.path}: no mlp neuron {name}:{unit} (layers {names[0]} .. {names[-1]}, "
                                      f"units 0 .. {self._site_width - 1})")
            down = self._mlp[names.index(name)][0]
            weight = down.weight.detach()
            columns.append((weight[int(unit)] if type(down).__name__ == "Conv1D" else weight[:, int(unit)]).to(
                W_U.device).float())
        found = []
        for start in range(0, len(columns), OUTPUT_CHUNK):
            effects = (W_U @ torch.stack(columns[start:start + OUTPUT_CHUNK], dim=1)).cpu().double()  # (vocab, n)
            for effect in effects.T:
                order = torch.argsort(effect, descending=True, stable=True)
                counts, edges = np.histogram(effect.numpy(), bins=bins)
                found.append({
                    "promoted": [(self.tokenizer.decode([int(t)]), float(effect[t])) for t in order[:k]],
                    "suppressed": [(self.tokenizer.decode([int(t)]), float(effect[t])) for t in order.flip(0)[:k]],
                    "histogram": {"centres": ((edges[:-1] + edges[1:]) / 2).tolist(), "tokens": counts.tolist()}})
        return found

    @contextlib.contextmanager
    def _reading_mlp(self) -> Iterator[list[torch.Tensor] | None]:
        """At the mlp and attn sites: the input of every block's site projection
        (:meth:`_projections`) during the forward passes inside the context, batch-first,
        one tensor per layer (inside :meth:`intervene` after the edit, which runs first);
        None at the hidden site. Inside :meth:`glu_parts` the gate (or up) projection's
        output instead."""
        if self._mlp is None:
            yield None
            return
        values: list[torch.Tensor] = []

        def keep(module: Any, args: tuple, seq_first: bool) -> None:
            values.append(args[0].transpose(0, 1) if seq_first else args[0])

        if self._glu_read is not None:
            width = self._site_width
            handles = [m.register_forward_hook(lambda mod, args, out, half=half: values.append(
                out if half is None else out[..., half * width:(half + 1) * width]))
                for m, half in (pair[self._glu_read] for pair in self._gated)]
        else:
            handles = [m.register_forward_pre_hook(lambda mod, args, s=s: keep(mod, args, s)) for m, s in self._mlp]
        try:
            yield values
        finally:
            for h in handles:
                h.remove()

    def _sites(self) -> list[tuple[Any, str, bool]]:
        """Where each hidden state is produced, found once by a forward pass that compares
        every candidate's value with ``output_hidden_states``: per layer (module, "input"
        of the first block or "output", sequence-first layout)."""
        if self._sites_found is not None:
            return self._sites_found
        blocks = self._blocks()
        block_ids = {id(m) for m in blocks.modules()}
        candidates = [("input", blocks[0])] + [("output", b) for b in blocks] + \
            [("output", m) for _, m in self.model.named_modules() if id(m) not in block_ids and m is not self.model]
        seen: dict[int, list[torch.Tensor]] = {}

        def keep(key: int, value: Any) -> None:
            value = value[0] if isinstance(value, tuple) and value else value
            if isinstance(value, torch.Tensor) and value.dim() == 3:
                seen.setdefault(key, []).append(value.detach().clone())

        handles = []
        for k, (kind, module) in enumerate(candidates):
            if kind == "input":
                handles.append(module.register_forward_pre_hook(
                    lambda m, args, kwargs, k=k: keep(k, args[0] if args else kwargs.get("hidden_states")),
                    with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(lambda m, args, out, k=k: keep(k, out)))
        states = self._probe_pass(handles, output_hidden_states=True)[0].hidden_states

        def match(k: int, target: torch.Tensor) -> bool | None:
            """Sequence-first flag if candidate ``k``'s value (one call) equals ``target``."""
            values = seen.get(k, [])
            if len(values) != 1:  # a module called several times cannot tell the calls apart
                return None
            v = values[0]
            if v.shape == target.shape and torch.equal(v, target):
                return False
            if v.transpose(0, 1).shape == target.shape and torch.equal(v.transpose(0, 1), target):
                return True
            return None

        sites: list[tuple[Any, str, bool]] = []
        for layer, target in enumerate(states):
            order = [0] if layer == 0 else [layer] + ([] if layer < len(blocks) else
                                                     list(range(len(blocks) + 1, len(candidates))))
            found = next(((candidates[k][1], candidates[k][0], flag) for k in order
                          if (flag := match(k, target)) is not None), None)
            if found is None:
                raise ModelLoadError(f"{self.path}: cannot locate hidden state {layer} in the model for intervention")
            sites.append(found)
        self._sites_found = sites
        return sites

    def _edited(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """A recorded hidden state with the current ablation applied (idempotent)."""
        edit = self._ablation[0].layer(self._index, layer, hidden.device, hidden.dtype)
        return hidden if edit is None else edit_hidden(hidden, edit, self._positions)

    @contextlib.contextmanager
    def intervene(self, ablation: Any) -> Iterator[Any]:
        """Neurons removed inside the forward pass (:meth:`ModelAdapter.intervene`)."""
        record = InterventionRecord(ablation.n_conditions)
        if ablation.objective:
            if self.lm is not None:
                record.objective = "next-token loss"
            elif self._masked_lm() is not None:
                record.objective = "masked-LM loss"
            else:
                record.unavailable = self._mlm_missing
        handles = []
        targets = self._sites() if self._mlp is None else [(m, "input", s) for m, s in self._mlp]
        for layer, (module, kind, seq_first) in enumerate(targets):
            edit = ablation.layer(self._index, layer, self.device, next(self.model.parameters()).dtype)
            if edit is None:
                continue

            def apply(value: Any, edit: Any = edit, seq_first: bool = seq_first) -> Any:
                if isinstance(value, tuple):
                    return (edit_hidden(value[0], edit, self._positions, seq_first),) + value[1:]
                return edit_hidden(value, edit, self._positions, seq_first)

            if kind == "input":  # the first block's input; at the mlp / attn site each projection's input
                def pre(module: Any, args: tuple, kwargs: dict, apply: Any = apply) -> Any:
                    if args:
                        return (apply(args[0]),) + args[1:], kwargs
                    return args, {**kwargs, "hidden_states": apply(kwargs["hidden_states"])}
                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
            else:  # prepend: before transformers' own hooks that record hidden states
                handles.append(module.register_forward_hook(lambda m, args, out, apply=apply: apply(out), prepend=True))
        self._ablation = (ablation, record)
        try:
            yield record
        finally:
            for h in handles:
                h.remove()
            self._ablation = None
            self._positions = None

    def _next_token_loss(self, logits: torch.Tensor, inputs: dict[str, torch.Tensor], conditions: int) -> None:
        """Sum over the batch of each real token's next-token cross-entropy, per condition."""
        ids, mask = inputs["input_ids"], inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
        target = mask[:, 1:].bool() & mask[:, :-1].bool()
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
        per_row = (loss * target).sum(1)
        self._ablation[1].add(per_row.view(conditions, -1).sum(1), int(target.sum()) // conditions)

    def _masked_lm(self) -> Any:
        """The checkpoint's masked-LM head on this adapter's encoder, or None (and the reason
        in ``_mlm_missing``) when the checkpoint has no trained head."""
        if self._mlm is None:
            from transformers import AutoModelForMaskedLM

            from transformers.utils import logging as hf_logging

            self._mlm_missing = None
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # a missing head is reported below, in one line
            try:
                mlm, info = AutoModelForMaskedLM.from_pretrained(self.path, output_loading_info=True,
                                                                 dtype=DTYPES[self.dtype])
            except Exception as exc:  # no masked-LM class for this model type, or unreadable head
                self._mlm, self._mlm_missing = False, f"no masked-LM head for this model ({type(exc).__name__})"
                return None
            finally:
                hf_logging.set_verbosity(verbosity)
            base_prefix = mlm.base_model_prefix + "."
            missing = [k for k in info["missing_keys"] if not k.startswith(base_prefix)]
            if missing:
                self._mlm, self._mlm_missing = False, (f"the checkpoint has no trained masked-LM head (missing "
                                                       f"{len(missing)} weights, e.g. {missing[0]})")
            else:
                setattr(mlm, mlm.base_model_prefix, self.model)  # the head on the very encoder that is hooked
                self._mlm = mlm.eval().to(self.device)
        return self._mlm or None

    def _masked(self, enc: Any, inputs: dict[str, torch.Tensor], conditions: int = 1
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The masked-LM objective's input: 15 % of the word sub-tokens of each sentence
        replaced by the mask token (seeded by the batch's ids, the same in every condition),
        and the (rows, tokens) bool mask of the replaced positions."""
        ids = inputs["input_ids"]
        rows = ids.shape[0] // conditions
        words = self._word_positions(enc)
        generator = torch.Generator().manual_seed(int(ids[:rows].sum()) % (2**31))
        chosen = (torch.rand(words.shape, generator=generator) < MLM_RATE).to(ids.device) & words
        chosen = chosen.repeat(conditions, 1)
        return {**inputs, "input_ids": torch.where(chosen, self.tokenizer.mask_token_id, ids)}, chosen

    def _masked_lm_loss(self, enc: Any, inputs: dict[str, torch.Tensor], conditions: int) -> None:
        """Masked-LM loss of the (hooked) encoder on :meth:`_masked` input."""
        mlm = self._masked_lm()
        if mlm is None or self.tokenizer.mask_token_id is None:
            return
        masked, chosen = self._masked(enc, inputs, conditions)
        logits = mlm(**masked).logits
        loss = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), inputs["input_ids"], reduction="none")
        self._ablation[1].add((loss * chosen).sum(1).view(conditions, -1).sum(1), int(chosen.sum()) // conditions)

    # ---- attribution patching (the attribution ranker)

    def attribution_objective(self) -> str:
        """The objective :meth:`attribution` differentiates, the one ``--causal`` measures."""
        if self.lm is not None:
            return "next-token loss"
        if self._masked_lm() is not None and self.tokenizer.mask_token_id is not None:
            return "masked-LM loss"
        reason = self._mlm_missing or "the tokenizer has no mask token"
        raise AttributionUnsupported(f"{self.path}: gradients of the model's own objective need a decoder's LM head "
                                     f"or an encoder's masked-LM head: {reason}")

    def attribution(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence (words, neurons) float32: the sum over each word's sub-tokens of
        activation x d objective / d activation (:meth:`ModelAdapter.attribution`). The
        objective is the one ``--causal`` measures, summed over each batch: the next-token
        loss of every real token (decoders), or the masked-LM loss of :meth:`_masked` input
        (encoders; the activations are those of that masked input). Batches of
        ``batch_size`` segments (sentences, or the windows of a sentence longer than the
        model's, as :meth:`embed` reads them), in order, as the causal step's (the masking
        is seeded by each batch's ids)."""
        objective = self.attribution_objective()
        targets = self._sites() if self._mlp is None else [(m, "input", s) for m, s in self._mlp]
        words, counts, segments, owners = self._segments(sentences, count=False)
        pieces = [words[k][s:e] for k, s, e in segments]
        out: list[np.ndarray] = []
        for start in range(0, len(pieces), self.batch_size):
            batch = pieces[start : start + self.batch_size]
            enc = self.tokenizer(batch, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.tokenizer.model_input_names}
            captured: list[torch.Tensor | None] = [None] * len(targets)
            handles = []
            for layer, (module, kind, _) in enumerate(targets):
                if kind == "input":
                    def pre(m: Any, args: tuple, kwargs: dict, layer: int = layer) -> None:
                        captured[layer] = args[0] if args else kwargs["hidden_states"]
                    handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
                else:
                    def post(m: Any, args: tuple, value: Any, layer: int = layer) -> None:
                        captured[layer] = value[0] if isinstance(value, tuple) else value
                    handles.append(module.register_forward_hook(post))
            try:
                with torch.enable_grad():
                    if objective == "next-token loss":
                        logits = self.lm(**inputs).logits
                        ids, mask = inputs["input_ids"], inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
                        target = mask[:, 1:].bool() & mask[:, :-1].bool()
                        loss = (torch.nn.functional.cross_entropy(_at_least_float32(logits[:, :-1]).transpose(1, 2),
                                                                  ids[:, 1:], reduction="none") * target).sum()
                    else:
                        masked, chosen = self._masked(enc, inputs)
                        logits = self._masked_lm()(**masked).logits
                        loss = (torch.nn.functional.cross_entropy(_at_least_float32(logits).transpose(1, 2),
                                                                  inputs["input_ids"], reduction="none") * chosen).sum()
                    if any(c is None for c in captured):
                        raise ModelLoadError(f"{self.path}: the forward pass did not reach every {self.site} site")
                    grads = torch.autograd.grad(loss, captured, allow_unused=True)
            finally:
                for h in handles:
                    h.remove()
            layers = []
            for (module, kind, seq_first), value, grad in zip(targets, captured, grads):
                product = torch.zeros_like(value) if grad is None else _at_least_float32(value.detach() * grad)
                layers.append(product.transpose(0, 1) if seq_first else product)
            effect = torch.stack(layers)  # (layers, batch, tokens, hidden)
            for b, piece in enumerate(batch):
                weights = torch.zeros(len(piece), effect.shape[2], dtype=effect.dtype, device=effect.device)
                for pos, wid in enumerate(enc.word_ids(b)):
                    if wid is not None:
                        weights[wid, pos] = 1.0
                per_word = torch.einsum("lth,wt->wlh", effect[:, b], weights)  # (words, layers, hidden)
                out.append(per_word.reshape(len(piece), -1).cpu().numpy())
        return _assembled(out, counts, segments, owners, axis=0)

    def subwords(self, words: Sequence[str]) -> tuple[list[str], list[int], np.ndarray]:
        """One sentence's sub-tokens (special tokens left out): their strings, the word each
        belongs to, and their activations (layers, tokens, hidden) float32. For looking at
        neurons below the word level (``neuroscope show --subwords``)."""
        enc = self.tokenizer([list(words)], is_split_into_words=True, truncation=False, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.tokenizer.model_input_names}
        with torch.inference_mode(), self._reading_mlp() as mlp:
            states = self.model(**inputs, output_hidden_states=mlp is None).hidden_states
        hidden = torch.stack(mlp if mlp is not None else states)[:, 0]
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


def _assembled(per_segment: list[np.ndarray], counts: list[list[int]], segments: list[tuple[int, int, int]],
               owners: list[list[int]], axis: int) -> list[np.ndarray]:
    """Per sentence, its words' vectors, each from the segment that owns the word
    (:meth:`TransformersAdapter._segments`), stacked along ``axis`` (segment arrays hold
    their words along the same axis)."""
    out = []
    for k, c in enumerate(counts):
        rows = []
        for i in range(len(c)):
            seg = owners[k][i]
            rows.append(np.take(per_segment[seg], i - segments[seg][1], axis=axis))
        out.append(np.stack(rows, axis=axis))
    return out


def _at_least_float32(values: torch.Tensor) -> torch.Tensor:
    """float16 and bfloat16 as float32; float32 and float64 as they are."""
    return values.float() if values.dtype in (torch.float16, torch.bfloat16) else values


def _linear_shape(module: Any) -> tuple[int, int] | None:
    """(input width, output width) of a linear map: ``nn.Linear`` or transformers' ``Conv1D``
    (GPT-2, whose weight is stored input-first); None for any other module."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and module.weight.dim() == 2:
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def transformers_model(*, device: str = "auto", aggregation: str = "last", batch_size: int = 32,
                       checkpoint: str | None = None, location: str | None = None,
                       **options: Any) -> TransformersAdapter:
    """``checkpoint`` (registry.toml) or ``location`` (``--model hf:NAME-OR-PATH``): a hub id or a directory."""
    checkpoint = location or checkpoint
    if not checkpoint:
        raise ModelLoadError("the transformers adapter needs a checkpoint: --model hf:NAME-OR-PATH")
    return TransformersAdapter(checkpoint=checkpoint, device=device, aggregation=aggregation, batch_size=batch_size,
                               **options)


def weight_files(options: dict[str, Any]) -> Path | None:
    """Where the weights of the checkpoint ``options`` name lie on this machine, found
    without loading or downloading anything (a ``package:`` model, a directory, a hub model
    in the local cache), or None: what a unit running this model declares as memory is
    estimated from their size (``--unit-memory``, docs/distributed.md)."""
    return local_checkpoint(str(options.get("location") or options.get("checkpoint") or ""),
                            options.get("revision"))


transformers_model.weight_files = weight_files  # type: ignore[attr-defined]
