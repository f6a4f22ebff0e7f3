"""ELMo in torch, read from the original checkpoint format (options JSON + HDF5 weights)
as published for elmo_2x4096_512_2048cnn_2xhighway and the small / medium variants
(Peters et al. 2018; paper section 3: "3 layers each of size 1024").

The computation is AllenNLP 2.10's ``_ElmoBiLm``, step for step: character ids
with ``<S>`` / ``</S>`` (``elmo_chars``), a character embedding (row 0 = padding),
max-pooled 1-D convolutions with the configured filters and activation, highway
layers (gate = sigmoid(-(x W_carry + b_carry))), a linear projection, then a
2-layer bidirectional LSTM with projection, cell and projection clipping and a
residual connection from the second layer on. Layers exposed: the token layer
duplicated to 2 x projection (as AllenNLP does) and the LSTM layers (forward and
backward concatenated): 3 x 1,024 = 3,072 neurons for the original model.

Unlike AllenNLP's ``ElmoLstm``, which is stateful (it carries LSTM states from one
batch to the next), every sentence starts from a zero state: the vectors of a
sentence do not depend on which sentences were embedded before it. This equals
AllenNLP on a fresh model (the parity fixtures reset its state) and is documented
in docs/models.md. Words are characters, so there is no sub-word aggregation.

``intervene()`` (``--causal``) edits each layer's output as the next layer receives it
(``ElmoBiLm.edit``): the token layer's two halves feed the forward and the backward LSTM,
each LSTM layer's output feeds the layer above; inside an LSTM layer a unit's own state
still feeds its recurrence (the output, not the cell, is replaced). The published ELMo
and Transformer-ELMo files hold no softmax, so their language-model loss cannot be
measured: the run says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from neuroscope.plugin import (InterventionRecord, ModelAdapter, ModelLoadError, NeuronIndex, edit_hidden,
                               resolve_device, sha256_of)

from neuroscope_plugins.downloads import fetch_file
from neuroscope_plugins.elmo_chars import batch_char_ids

log = logging.getLogger(__name__)

ADAPTER_VERSION = 1
PUBLISHED = "https://allennlp.s3.amazonaws.com/models/elmo"


class Highway(torch.nn.Module):
    """AllenNLP's highway layer: x <- g * x + (1 - g) * relu(x W_t + b_t), g = sigmoid(gate)."""

    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(dim, 2 * dim) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            nonlinear, gate = layer(x).chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * torch.relu(nonlinear)
        return x


class CharCNN(torch.nn.Module):
    """Character CNN + highway + projection of the original ELMo."""

    def __init__(self, options: dict[str, Any]):
        super().__init__()
        cnn = options["char_cnn"]
        self.activation = {"relu": torch.relu, "tanh": torch.tanh}[cnn["activation"]]
        dim = cnn["embedding"]["dim"]
        self.embedding = torch.nn.Parameter(torch.zeros(cnn.get("n_characters", 262), dim), requires_grad=False)
        self.convs = torch.nn.ModuleList([torch.nn.Conv1d(dim, num, width) for width, num in cnn["filters"]])
        n_filters = sum(num for _, num in cnn["filters"])
        self.highway = Highway(n_filters, cnn["n_highway"])
        self.projection = torch.nn.Linear(n_filters, options["lstm"]["projection_dim"])

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, steps, chars = char_ids.shape
        x = torch.nn.functional.embedding(char_ids.view(-1, chars), self.embedding).transpose(1, 2)
        pooled = [self.activation(torch.max(conv(x), dim=-1)[0]) for conv in self.convs]
        token = self.projection(self.highway(torch.cat(pooled, dim=-1)))
        return token.view(batch, steps, -1)


class LstmCellWithProjection(torch.nn.Module):
    """AllenNLP's LstmCellWithProjection (gates: input, forget, memory, output)."""

    def __init__(self, input_size: int, hidden_size: int, cell_size: int, cell_clip: float | None,
                 proj_clip: float | None):
        super().__init__()
        self.cell_size, self.hidden_size = cell_size, hidden_size
        self.cell_clip, self.proj_clip = cell_clip, proj_clip
        self.input_linearity = torch.nn.Linear(input_size, 4 * cell_size, bias=False)
        self.state_linearity = torch.nn.Linear(hidden_size, 4 * cell_size, bias=True)
        self.state_projection = torch.nn.Linear(cell_size, hidden_size, bias=False)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Run left to right over (batch, steps, input) from a zero state; positions past a
        sequence's length are zero and never touch its state."""
        batch, steps, _ = inputs.shape
        c = self.cell_size
        projected_inputs = self.input_linearity(inputs)
        state = inputs.new_zeros(batch, self.hidden_size)
        memory = inputs.new_zeros(batch, c)
        outputs = []
        for t in range(steps):
            gates = projected_inputs[:, t] + self.state_linearity(state)
            input_gate = torch.sigmoid(gates[:, :c])
            forget_gate = torch.sigmoid(gates[:, c : 2 * c])
            memory_init = torch.tanh(gates[:, 2 * c : 3 * c])
            output_gate = torch.sigmoid(gates[:, 3 * c :])
            new_memory = input_gate * memory_init + forget_gate * memory
            if self.cell_clip:
                new_memory = torch.clamp(new_memory, -self.cell_clip, self.cell_clip)
            output = self.state_projection(output_gate * torch.tanh(new_memory))
            if self.proj_clip:
                output = torch.clamp(output, -self.proj_clip, self.proj_clip)
            valid = (t < lengths).unsqueeze(1)
            memory = torch.where(valid, new_memory, memory)
            state = torch.where(valid, output, state)
            outputs.append(torch.where(valid, output, torch.zeros_like(output)))
        return torch.stack(outputs, dim=1)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its length (padding stays in place)."""
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device).unsqueeze(0)
    index = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class ElmoBiLm(torch.nn.Module):
    def __init__(self, options: dict[str, Any]):
        super().__init__()
        lstm = options["lstm"]
        if not lstm.get("use_skip_connections"):
            raise ModelLoadError("only ELMo models with residual (skip) connections are supported, as in AllenNLP")
        self.char_cnn = CharCNN(options)
        proj, cell = lstm["projection_dim"], lstm["dim"]
        make = lambda: LstmCellWithProjection(proj, proj, cell, lstm.get("cell_clip"), lstm.get("proj_clip"))  # noqa: E731
        self.forward_layers = torch.nn.ModuleList([make() for _ in range(lstm["n_layers"])])
        self.backward_layers = torch.nn.ModuleList([make() for _ in range(lstm["n_layers"])])
        #: ``edit(layer, (batch, steps, 2 * projection)) -> same``: applied to each layer's output
        #: before the next layer reads it (``intervene()``); None: the plain forward pass
        self.edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    def forward(self, char_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Every layer, (batch, steps, 2 * projection), sentence markers included."""
        lengths = mask.sum(dim=1)
        token = self.char_cnn(char_ids)
        width = token.shape[-1]
        layer = torch.cat([token, token], dim=-1)
        if self.edit is not None:
            layer = self.edit(0, layer)
        layers = [layer * mask.unsqueeze(-1)]
        forward_in = layer[..., :width] if self.edit is not None else token
        backward_in = reverse_padded(layer[..., width:] if self.edit is not None else token, lengths)
        for k, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            forward_out = fwd(forward_in, lengths)
            backward_out = bwd(backward_in, lengths)
            if k > 0:
                forward_out = forward_out + forward_in
                backward_out = backward_out + backward_in
            layer = torch.cat([forward_out, reverse_padded(backward_out, lengths)], dim=-1)
            if self.edit is not None:
                layer = self.edit(k + 1, layer)
                forward_out, backward_out = layer[..., :width], reverse_padded(layer[..., width:], lengths)
            layers.append(layer)
            forward_in, backward_in = forward_out, backward_out
        return layers


def _dataset(h5: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(h5[key][...], dtype=np.float32)
    except KeyError:
        raise ModelLoadError(f"{path}: ELMo weights lack the dataset {key!r}") from None


def _copy(param: torch.Tensor, value: np.ndarray, path: Path, key: str) -> None:
    if tuple(param.shape) != value.shape:
        raise ModelLoadError(f"{path}: {key} (as torch lays it out: {value.shape}) does not fit the shape "
                             f"{tuple(param.shape)} that the options imply")
    param.data.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def load_elmo(options_path: Path, weights_path: Path) -> tuple[ElmoBiLm, dict[str, Any]]:
    """Build ElmoBiLm from an options JSON and an HDF5 weight file (AllenNLP's weight conversions)."""
    import h5py

    try:
        options = json.loads(Path(options_path).read_text(encoding="utf-8"))
        options["char_cnn"], options["lstm"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{options_path}: not an ELMo options file ({type(exc).__name__}: {exc})") from exc
    model = ElmoBiLm(options)
    try:
        h5 = h5py.File(weights_path, "r")
    except OSError as exc:
        raise ModelLoadError(f"{weights_path}: not a readable HDF5 ELMo weight file ({exc})") from exc
    with h5:
        cnn = model.char_cnn
        char_embed = _dataset(h5, "char_embed", weights_path)
        table = np.zeros((char_embed.shape[0] + 1, char_embed.shape[1]), dtype=np.float32)
        table[1:] = char_embed
        cnn.embedding = torch.nn.Parameter(torch.from_numpy(table), requires_grad=False)
        for i, conv in enumerate(cnn.convs):
            weight = _dataset(h5, f"CNN/W_cnn_{i}", weights_path)
            _copy(conv.weight, np.transpose(weight.squeeze(axis=0), (2, 1, 0)), weights_path, f"CNN/W_cnn_{i}")
            _copy(conv.bias, _dataset(h5, f"CNN/b_cnn_{i}", weights_path), weights_path, f"CNN/b_cnn_{i}")
        for k, layer in enumerate(cnn.highway.layers):
            g = f"CNN_high_{k}"
            w_transform = _dataset(h5, f"{g}/W_transform", weights_path).T
            w_carry = -_dataset(h5, f"{g}/W_carry", weights_path).T
            _copy(layer.weight, np.concatenate([w_transform, w_carry], axis=0), weights_path, f"{g}/W_*")
            bias = np.concatenate([_dataset(h5, f"{g}/b_transform", weights_path),
                                   -_dataset(h5, f"{g}/b_carry", weights_path)])
            _copy(layer.bias, bias, weights_path, f"{g}/b_*")
        _copy(cnn.projection.weight, _dataset(h5, "CNN_proj/W_proj", weights_path).T, weights_path, "CNN_proj/W_proj")
        _copy(cnn.projection.bias, _dataset(h5, "CNN_proj/b_proj", weights_path), weights_path, "CNN_proj/b_proj")
        for direction, layers in enumerate((model.forward_layers, model.backward_layers)):
            for i, lstm in enumerate(layers):
                g = f"RNN_{direction}/RNN/MultiRNNCell/Cell{i}/LSTMCell"
                c = lstm.cell_size
                tf_weights = _dataset(h5, f"{g}/W_0", weights_path).T
                torch_weights = tf_weights.copy()
                # TensorFlow packs gates as input, memory, forget, output; torch as input, forget, memory, output
                torch_weights[c : 2 * c], torch_weights[2 * c : 3 * c] = tf_weights[2 * c : 3 * c], tf_weights[c : 2 * c]
                n_in = lstm.input_linearity.in_features
                _copy(lstm.input_linearity.weight, torch_weights[:, :n_in], weights_path, f"{g}/W_0")
                _copy(lstm.state_linearity.weight, torch_weights[:, n_in:], weights_path, f"{g}/W_0")
                tf_bias = _dataset(h5, f"{g}/B", weights_path)
                tf_bias[2 * c : 3 * c] += 1.0  # TensorFlow adds 1 to the forget gate bias at run time
                torch_bias = tf_bias.copy()
                torch_bias[c : 2 * c], torch_bias[2 * c : 3 * c] = tf_bias[2 * c : 3 * c], tf_bias[c : 2 * c]
                _copy(lstm.state_linearity.bias, torch_bias, weights_path, f"{g}/B")
                _copy(lstm.state_projection.weight, _dataset(h5, f"{g}/W_P_0", weights_path).T, weights_path,
                      f"{g}/W_P_0")
    return model.eval(), options


class CharacterLmAdapter(ModelAdapter):
    """Shared by ELMo and Transformer-ELMo: character-id batches in, one vector per word and
    layer out (``self.model(char_ids, mask)`` returns every layer with the sentence markers)."""

    model: torch.nn.Module
    device: torch.device
    batch_size: int
    _index: NeuronIndex
    _ablation: Any = None  # the Ablation inside intervene()
    _positions: torch.Tensor | None = None  # (rows, steps) bool: where the current batch is edited

    @property
    def neuron_index(self) -> NeuronIndex:
        return self._index

    def device_name(self) -> str:
        return str(self.device)

    #: why ``--causal`` cannot measure this model's own objective
    no_objective = "the published checkpoint holds no softmax weights, so its language-model loss cannot be measured"

    def embed(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return self._embed_with(sentences, lambda layers: layers)

    def _embed_with(self, sentences: Sequence[Sequence[str]],
                    pick: Callable[[list[torch.Tensor]], list[torch.Tensor]]) -> list[np.ndarray]:
        """Per sentence (and condition inside :meth:`intervene`) (layers, words, width): the
        tensors ``pick`` takes from the forward pass (given the model's layers), each
        (batch, steps, width) with the sentence markers, which are dropped."""
        ids, mask = batch_char_ids(sentences)
        conditions = self._ablation.n_conditions if self._ablation is not None else 1
        ids_t = torch.from_numpy(ids).to(self.device).repeat(conditions, 1, 1)
        mask_t = torch.from_numpy(mask).to(self.device).repeat(conditions, 1)
        if self._ablation is not None:
            words = mask_t.clone()
            if self._ablation.positions == "words":  # leave the <S> / </S> markers as they are
                words[:, 0] = False
                words[torch.arange(len(words)), mask_t.sum(1) - 1] = False
            self._positions = words
        with torch.inference_mode():
            layers = pick(self.model(ids_t, mask_t))
            stacked = torch.stack(layers).float().cpu().numpy()
        n = len(sentences)
        return [stacked[:, k * n + b, 1 : len(words) + 1, :] for k in range(conditions)
                for b, words in enumerate(sentences)]

    @contextlib.contextmanager
    def intervene(self, ablation: Any) -> Iterator[Any]:
        """Neurons removed at each layer's output inside the forward pass
        (:meth:`ModelAdapter.intervene`); the objective is unavailable (``no_objective``)."""
        record = InterventionRecord(ablation.n_conditions, unavailable=self.no_objective if ablation.objective
                                    else None)
        dtype = next(self.model.parameters()).dtype
        edits = [ablation.layer(self._index, layer, self.device, dtype) for layer in range(self._index.n_layers)]

        def edit(layer: int, hidden: torch.Tensor) -> torch.Tensor:
            return hidden if edits[layer] is None else edit_hidden(hidden, edits[layer], self._positions)

        self._ablation, self.model.edit = ablation, edit
        try:
            yield record
        finally:
            self._ablation, self.model.edit, self._positions = None, None, None


class ElmoAdapter(CharacterLmAdapter):
    """Word activations of the token layer and every biLSTM layer of an ELMo checkpoint."""

    name = "elmo"

    def __init__(self, *, options: str, weights: str, device: str = "auto", aggregation: str = "last",
                 batch_size: int = 32, options_sha256: str | None = None, weights_sha256: str | None = None):
        hint = (f"to use a local copy, download the two files of this checkpoint, {options} and {weights}, into "
                "one directory DIR and pass --model elmo:DIR (neuroscope finds *options.json and *weights.hdf5 "
                "there)")
        self.options_path = fetch_file(options, options_sha256, "ELMo options file", hint)
        self.weights_path = fetch_file(weights, weights_sha256, "ELMo weight file", hint)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        model, opts = load_elmo(self.options_path, self.weights_path)
        self.model = model.to(self.device)
        width = 2 * opts["lstm"]["projection_dim"]
        self._index = NeuronIndex(("token",) + tuple(str(i) for i in range(1, opts["lstm"]["n_layers"] + 1)), width)
        self._sha = {"options": sha256_of(self.options_path), "weights": sha256_of(self.weights_path)}
        if aggregation != "last":
            log.info("ELMo reads whole words; aggregation %r has no effect", aggregation)

    def identity(self) -> dict[str, Any]:
        return {"adapter": self.name, "adapter_version": ADAPTER_VERSION, "options_sha256": self._sha["options"],
                "weights_sha256": self._sha["weights"]}


def elmo_model(*, device: str = "auto", aggregation: str = "last", batch_size: int = 32, location: str | None = None,
               options: str | None = None, weights: str | None = None, **extra: Any) -> ElmoAdapter:
    """``location`` is a directory holding ``*options.json`` and ``*weights.hdf5``
    (``--model elmo:DIR``); ``options`` / ``weights`` name the two files (paths or URLs)."""
    if location is not None:
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"{folder}: no such ELMo checkpoint directory (expected *options.json and "
                                 "*weights.hdf5 in it)")
        found_options = sorted(folder.glob("*options.json"))
        found_weights = sorted(folder.glob("*weights.hdf5")) or sorted(folder.glob("*.hdf5"))
        if len(found_options) != 1 or len(found_weights) != 1:
            raise ModelLoadError(f"{folder}: expected exactly one *options.json and one *weights.hdf5, found "
                                 f"{[p.name for p in found_options + found_weights]}")
        options, weights = str(found_options[0]), str(found_weights[0])
    if options is None or weights is None:
        raise ModelLoadError("the elmo adapter needs a checkpoint: --model elmo:DIR, or options and weights "
                             "in a registry.toml [models.NAME] table")
    return ElmoAdapter(options=options, weights=weights, device=device, aggregation=aggregation,
                       batch_size=batch_size, **extra)
