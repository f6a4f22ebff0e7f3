"""Transformer-ELMo in torch, read from its AllenNLP model archive (``model.tar.gz``
with ``config.json`` and ``weights.th``, as published with "Dissecting Contextual
Word Embeddings", Peters et al. 2018b; paper section 3: "7 layers" x 1,024).

The computation is AllenNLP's ``language_model`` as ``LanguageModelTokenEmbedder``
runs it, step for step: ELMo character ids with ``<S>`` / ``</S>``
(``elmo_chars``), a character embedding, max-pooled 1-D convolutions, highway
layers and projection (``cnn-highway``, projection after the highways by
default, optional layer norm), sinusoidal positions, then two stacks of pre-norm
transformer layers (``bidirectional_language_model_transformer``): a forward
stack that attends to the current and earlier words and a backward stack that
attends to the current and later words, 8 heads, the last layer of each stack
normalised. Layers exposed: the token layer duplicated to the contextual width
(as AllenNLP does) and every transformer layer (forward and backward
concatenated).

The archive is read without unpacking it to disk, and the weights with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tarfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from neuroscope.plugin import (InterventionRecord, ModelLoadError, NeuronIndex, edit_hidden, resolve_device,
                               sha256_of)

from neuroscope_plugins.downloads import fetch_file
from neuroscope_plugins.elmo_adapter import CharacterLmAdapter, Highway

log = logging.getLogger(__name__)

ADAPTER_VERSION = 1
TINY = 1e-13  # allennlp.nn.util.tiny_value_of_dtype(torch.float32)
HEADS = 8  # make_model's default, which BidirectionalLanguageModelTransformer uses


class AllenLayerNorm(torch.nn.Module):
    """AllenNLP's LayerNorm: gamma * (x - mean) / (biased std + tiny) + beta."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(dim), requires_grad=False)
        self.beta = torch.nn.Parameter(torch.zeros(dim), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, unbiased=False, keepdim=True)
        return self.gamma * (x - mean) / (std + TINY) + self.beta


class CnnHighwayEncoder(torch.nn.Module):
    def __init__(self, config: dict[str, Any], n_embeddings: int):
        super().__init__()
        dim = config["embedding_dim"]
        self.embedding = torch.nn.Embedding(n_embeddings, dim)
        self.activation = {"relu": torch.relu, "tanh": torch.tanh}[config.get("activation", "relu")]
        self.convs = torch.nn.ModuleList([torch.nn.Conv1d(dim, num, width) for width, num in config["filters"]])
        n_filters = sum(num for _, num in config["filters"])
        self.location = config.get("projection_location", "after_highway")
        if self.location not in ("after_highway", "after_cnn"):
            raise ModelLoadError(f"unknown projection_location {self.location!r} in the archive's config")
        highway_dim = config["projection_dim"] if self.location == "after_cnn" else n_filters
        self.highway = Highway(highway_dim, config["num_highway"])
        self.projection = torch.nn.Linear(n_filters, config["projection_dim"])
        self.layer_norm = AllenLayerNorm(config["projection_dim"]) if config.get("do_layer_norm") else None

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, steps, chars = char_ids.shape
        x = self.embedding(char_ids.view(-1, chars)).transpose(1, 2)
        token = torch.cat([self.activation(torch.max(conv(x), dim=-1)[0]) for conv in self.convs], dim=-1)
        if self.location == "after_cnn":
            token = self.projection(token)
        token = self.highway(token)
        if self.location == "after_highway":
            token = self.projection(token)
        if self.layer_norm is not None:
            token = self.layer_norm(token)
        return token.view(batch, steps, -1)


class MultiHeadedAttention(torch.nn.Module):
    def __init__(self, heads: int, dim: int):
        super().__init__()
        if dim % heads:
            raise ModelLoadError(f"transformer width {dim} is not a multiple of {heads} heads")
        self.heads, self.d_k = heads, dim // heads
        self.linears = torch.nn.ModuleList([torch.nn.Linear(dim, dim) for _ in range(4)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        q, k, v = [lin(x).view(batch, -1, self.heads, self.d_k).transpose(1, 2) for lin in self.linears[:3]]
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.linears[3](out.transpose(1, 2).contiguous().view(batch, -1, self.heads * self.d_k))


class EncoderLayer(torch.nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.self_attn = MultiHeadedAttention(HEADS, dim)
        self.w_1 = torch.nn.Linear(dim, hidden)
        self.w_2 = torch.nn.Linear(hidden, dim)
        self.norms = torch.nn.ModuleList([AllenLayerNorm(dim), AllenLayerNorm(dim)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norms[0](x), mask)
        return x + self.w_2(torch.relu(self.w_1(self.norms[1](x))))


class TransformerStack(torch.nn.Module):
    def __init__(self, dim: int, hidden: int, n_layers: int):
        super().__init__()
        self.layers = torch.nn.ModuleList([EncoderLayer(dim, hidden) for _ in range(n_layers)])
        self.norm = AllenLayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Every layer's output (the last one normalised); ``edit(layer, x)`` replaces a
        layer's output before the next layer reads it (``intervene()``)."""
        outputs = []
        for k, layer in enumerate(self.layers, start=1):
            x = layer(x, mask)
            if k == len(self.layers):
                x = self.norm(x)
            if edit is not None:
                x = edit(k, x)
            outputs.append(x)
        return outputs


def positional_encoding(max_len: int, dim: int) -> torch.Tensor:
    encoding = torch.zeros(max_len, dim)
    position = torch.arange(0, max_len).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, dim, 2).float() * -(math.log(10000.0) / dim))
    encoding[:, 0::2] = torch.sin(position * div_term)
    encoding[:, 1::2] = torch.cos(position * div_term)
    return encoding.unsqueeze(0)


class TransformerElmo(torch.nn.Module):
    def __init__(self, char_config: dict[str, Any], n_embeddings: int, contextualizer: dict[str, Any]):
        super().__init__()
        self.chars = CnnHighwayEncoder(char_config, n_embeddings)
        dim, hidden, n_layers = contextualizer["input_dim"], contextualizer["hidden_dim"], contextualizer["num_layers"]
        if char_config["projection_dim"] != dim:
            raise ModelLoadError(f"character encoder width {char_config['projection_dim']} differs from the "
                                 f"transformer width {dim}")
        self.forward_stack = TransformerStack(dim, hidden, n_layers)
        self.backward_stack = TransformerStack(dim, hidden, n_layers)
        self.register_buffer("position", positional_encoding(5000, dim))
        #: ``edit(layer, (batch, steps, 2 * width)) -> same`` applied to each layer's output
        #: before the next layer reads it (``intervene()``); None: the plain forward pass
        self.edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    def forward(self, char_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Every layer, (batch, steps, 2 * width), sentence markers included."""
        token = self.chars(char_ids)
        steps = mask.shape[1]
        if steps > self.position.shape[1]:
            raise ModelLoadError(f"a sentence of {steps - 2} words is longer than the positional encoding allows")
        forward_mask = mask.unsqueeze(-1) & torch.tril(torch.ones(steps, steps, dtype=torch.bool,
                                                                  device=mask.device)).unsqueeze(0)
        backward_mask = forward_mask.transpose(1, 2)
        if self.edit is None:
            x = token + self.position[:, :steps]
            forward_layers = self.forward_stack(x, forward_mask)
            backward_layers = self.backward_stack(x, backward_mask)
            layers = [torch.cat([token, token], dim=-1)]
            layers += [torch.cat([f, b], dim=-1) for f, b in zip(forward_layers, backward_layers)]
            return layers
        width = token.shape[-1]
        edit = self.edit

        def half(side: int) -> Callable[[int, torch.Tensor], torch.Tensor]:
            """Edit one direction's output as its half of the concatenated layer."""
            def apply(layer: int, x: torch.Tensor) -> torch.Tensor:
                both = torch.cat([x, x], dim=-1)
                return edit(layer, both)[..., side * width:(side + 1) * width]
            return apply

        first = edit(0, torch.cat([token, token], dim=-1))
        position = self.position[:, :steps]
        forward_layers = self.forward_stack(first[..., :width] + position, forward_mask, half(0))
        backward_layers = self.backward_stack(first[..., width:] + position, backward_mask, half(1))
        return [first] + [torch.cat([f, b], dim=-1) for f, b in zip(forward_layers, backward_layers)]


#: the largest config.json read from an archive, and how much larger than the archive its
#: weights may declare to be: float weights barely compress (about 1.1x), a run of zeros
#: a thousandfold, so a larger ratio is a crafted archive, not a checkpoint
MAX_CONFIG_BYTES = 1 << 20
MAX_EXPANSION = 20


def check_member_sizes(path: Path, config: tarfile.TarInfo, weights: tarfile.TarInfo) -> None:
    """Refuse an archive by its members' declared sizes before anything is read into memory."""
    if config.size > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{path}: config.json declares {config.size:,} bytes (at most {MAX_CONFIG_BYTES:,}); "
                             "not a Transformer-ELMo archive")
    archive = max(1, Path(path).stat().st_size)
    if weights.size > MAX_EXPANSION * archive:
        raise ModelLoadError(f"{path}: weights.th declares {weights.size:,} bytes, {weights.size / archive:.0f} times "
                             f"the {archive:,}-byte archive; trained weights do not compress like that, so it is "
                             "refused before anything is read")


def _read_archive(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        with tarfile.open(path, "r:*") as tar:
            names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
            if "config.json" not in names or "weights.th" not in names:
                raise ModelLoadError(f"{path}: a Transformer-ELMo archive needs config.json and weights.th, found "
                                     f"{sorted(names)[:10]}")
            check_member_sizes(path, names["config.json"], names["weights.th"])
            config = json.loads(tar.extractfile(names["config.json"]).read().decode("utf-8"))
            weights_bytes = tar.extractfile(names["weights.th"]).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable model archive ({type(exc).__name__}: {exc})") from exc
    try:
        with warnings.catch_warnings():  # AllenNLP saved with pickle protocol 4, which weights_only reads fine
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(io.BytesIO(weights_bytes), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: weights.th cannot be read safely ({type(exc).__name__}: {exc})") from exc
    return config, state


def load_telmo(path: Path) -> TransformerElmo:
    config, state = _read_archive(path)
    try:
        model_config = config["model"]
        contextualizer = model_config["contextualizer"]
        embedders = model_config["text_field_embedder"].get("token_embedders", model_config["text_field_embedder"])
    except (KeyError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: config.json is not a language_model config ({exc})") from exc
    if contextualizer.get("type") != "bidirectional_language_model_transformer":
        raise ModelLoadError(f"{path}: contextualizer {contextualizer.get('type')!r} is not "
                             "bidirectional_language_model_transformer")
    chars = [(name, e) for name, e in embedders.items() if e.get("type") == "character_encoding"]
    if len(chars) != 1 or chars[0][1]["encoder"].get("type") != "cnn-highway":
        raise ModelLoadError(f"{path}: expected one character_encoding embedder with a cnn-highway encoder")
    name, embedder = chars[0]
    model = TransformerElmo(embedder["encoder"], embedder["embedding"]["num_embeddings"], contextualizer)
    prefix = f"_text_field_embedder.token_embedder_{name}."
    mapping = {"chars.embedding.weight": prefix + "_embedding._module.weight",
               "chars.projection.weight": prefix + "_encoder._module._projection.weight",
               "chars.projection.bias": prefix + "_encoder._module._projection.bias",
               "position": "_contextualizer._position.positional_encoding"}
    for i in range(len(model.chars.convs)):
        for p in ("weight", "bias"):
            mapping[f"chars.convs.{i}.{p}"] = prefix + f"_encoder._module.char_conv_{i}.{p}"
    for i in range(len(model.chars.highway.layers)):
        for p in ("weight", "bias"):
            mapping[f"chars.highway.layers.{i}.{p}"] = prefix + f"_encoder._module._highways._layers.{i}.{p}"
    if model.chars.layer_norm is not None:
        for p in ("gamma", "beta"):
            mapping[f"chars.layer_norm.{p}"] = prefix + f"_encoder._module._layer_norm.{p}"
    for ours, theirs in (("forward_stack", "_forward_transformer"), ("backward_stack", "_backward_transformer")):
        base = f"_contextualizer.{theirs}."
        for p in ("gamma", "beta"):
            mapping[f"{ours}.norm.{p}"] = base + f"norm.{p}"
        for i in range(len(getattr(model, ours).layers)):
            for p in ("weight", "bias"):
                for j in range(4):
                    mapping[f"{ours}.layers.{i}.self_attn.linears.{j}.{p}"] = base + f"layers.{i}.self_attn.linears.{j}.{p}"
                mapping[f"{ours}.layers.{i}.w_1.{p}"] = base + f"layers.{i}.feed_forward.w_1.{p}"
                mapping[f"{ours}.layers.{i}.w_2.{p}"] = base + f"layers.{i}.feed_forward.w_2.{p}"
            for j in range(2):
                for p in ("gamma", "beta"):
                    mapping[f"{ours}.layers.{i}.norms.{j}.{p}"] = base + f"layers.{i}.sublayer.{j}.norm.{p}"
    own = model.state_dict()
    loaded = {}
    for ours, theirs in mapping.items():
        if theirs not in state:
            if ours == "position":
                continue  # a buffer; recomputed by the same formula
            raise ModelLoadError(f"{path}: weights.th lacks {theirs}")
        tensor = state[theirs]
        if tuple(tensor.shape) != tuple(own[ours].shape):
            raise ModelLoadError(f"{path}: {theirs} has shape {tuple(tensor.shape)}, the config implies "
                                 f"{tuple(own[ours].shape)}")
        loaded[ours] = tensor
    model.load_state_dict({**own, **loaded})
    return model.eval()


class TelmoAdapter(CharacterLmAdapter):
    """Word activations of a Transformer-ELMo archive at one site: ``hidden`` (the token
    layer and every transformer layer, the paper's), ``mlp`` (each layer's feed-forward
    neurons, relu(w_1(x)), the input of ``w_2``) or ``attn`` (the heads' outputs, the input
    of the attention output projection); at every site forward and backward stack
    concatenated, as AllenNLP concatenates the layers."""

    name = "telmo"
    sites = ("hidden", "mlp", "attn")
    _site_edits: list[Any] | None = None  # inside intervene() at the mlp and attn sites: per layer's edit

    def __init__(self, *, archive: str, device: str = "auto", aggregation: str = "last", batch_size: int = 32,
                 archive_sha256: str | None = None, site: str = "hidden"):
        if site not in self.sites:
            raise ModelLoadError(f"site must be one of {', '.join(self.sites)}, got {site!r}")
        self.archive_path = fetch_file(archive, archive_sha256, "Transformer-ELMo archive",
                                       f"to use a local copy, download {archive} and pass --model telmo:PATH with "
                                       "PATH the downloaded .tar.gz (an AllenNLP model archive)")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.model = load_telmo(self.archive_path).to(self.device)
        width = 2 * self.model.chars.projection.out_features
        n_layers = len(self.model.forward_stack.layers)
        self._index = NeuronIndex(("token",) + tuple(str(i) for i in range(1, n_layers + 1)), width)
        self.site = site
        if site != "hidden":
            self._index = NeuronIndex(tuple(f"{site}{i}" for i in range(1, n_layers + 1)),
                                      2 * self._projections()[0][0].in_features)
        self._sha = sha256_of(self.archive_path)
        if aggregation != "last":
            log.info("Transformer-ELMo reads whole words; aggregation %r has no effect", aggregation)

    def identity(self) -> dict[str, Any]:
        identity = {"adapter": self.name, "adapter_version": ADAPTER_VERSION, "archive_sha256": self._sha}
        if self.site != "hidden":  # hidden-state stores keep the identity they always had
            identity["site"] = self.site
        return identity

    def _projections(self) -> list[tuple[torch.nn.Linear, torch.nn.Linear]]:
        """Per layer, the forward and the backward stack's map whose input is the site:
        ``w_2`` (mlp) or the attention's output projection ``linears[3]`` (attn)."""
        def of(layer: EncoderLayer) -> torch.nn.Linear:
            return layer.w_2 if self.site == "mlp" else layer.self_attn.linears[3]

        return [(of(f), of(b)) for f, b in zip(self.model.forward_stack.layers, self.model.backward_stack.layers)]

    def embed(self, sentences: Any) -> list[Any]:
        """At the hidden site the layers (:meth:`CharacterLmAdapter.embed`); at the mlp and
        attn sites the inputs of each layer's two site projections, forward and backward
        side by side, edited first inside :meth:`intervene`."""
        if self.site == "hidden":
            return super().embed(sentences)
        seen: list[list[torch.Tensor]] = [[] for _ in self._index.layer_names]
        handles = []
        for layer, pair in enumerate(self._projections()):
            for side, module in enumerate(pair):
                handles.append(module.register_forward_pre_hook(
                    lambda mod, args, layer=layer, side=side: self._site_input(layer, side, args, seen)))
        try:
            return self._embed_with(sentences, lambda layers: [torch.cat(pair, dim=-1) for pair in seen])
        finally:
            for h in handles:
                h.remove()

    def _site_input(self, layer: int, side: int, args: tuple, seen: list[list[torch.Tensor]]) -> tuple | None:
        """Record one direction's site value (edited inside :meth:`intervene`: its half of
        the concatenated layer's units)."""
        x = args[0]
        if self._site_edits is not None and self._site_edits[layer] is not None:
            width = x.shape[-1]
            both = edit_hidden(torch.cat([x, x], dim=-1), self._site_edits[layer], self._positions)
            x = both[..., side * width:(side + 1) * width]
        seen[layer].append(x)
        return (x,) + args[1:] if self._site_edits is not None else None

    @contextlib.contextmanager
    def intervene(self, ablation: Any) -> Iterator[Any]:
        """At the hidden site each layer's output edited (:meth:`CharacterLmAdapter.intervene`);
        at the mlp and attn sites the chosen units of each site projection's input."""
        if self.site == "hidden":
            with super().intervene(ablation) as record:
                yield record
            return
        record = InterventionRecord(ablation.n_conditions, unavailable=self.no_objective if ablation.objective
                                    else None)
        dtype = next(self.model.parameters()).dtype
        self._site_edits = [ablation.layer(self._index, layer, self.device, dtype)
                            for layer in range(self._index.n_layers)]
        self._ablation = ablation
        try:
            yield record
        finally:
            self._ablation, self._site_edits, self._positions = None, None, None


def telmo_model(*, device: str = "auto", aggregation: str = "last", batch_size: int = 32, location: str | None = None,
                archive: str | None = None, **extra: Any) -> TelmoAdapter:
    """``location`` or ``archive``: the model.tar.gz (a path or URL; ``--model telmo:PATH``)."""
    archive = location or archive
    if archive is None:
        raise ModelLoadError("the telmo adapter needs an archive: --model telmo:PATH/model.tar.gz, or archive "
                             "in a registry.toml [models.NAME] table")
    return TelmoAdapter(archive=archive, device=device, aggregation=aggregation, batch_size=batch_size, **extra)
