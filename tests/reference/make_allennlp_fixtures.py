"""Build the AllenNLP parity fixtures for neuroscope's ELMo and Transformer-ELMo adapters.

Run in a Python 3.9 virtual environment with AllenNLP 2.10.1 (see docs/models.md,
"Parity with AllenNLP", for the exact pinned install):

    .venv-allennlp/bin/python tests/reference/make_allennlp_fixtures.py

It writes, under tests/reference/fixtures/:

* ``elmo/options.json`` + ``elmo/weights.hdf5``: a small randomly initialised ELMo
  checkpoint in the original (bilm-tf / AllenNLP) format, with two highway layers,
  a 2-layer biLSTM with projections, cell and projection clipping;
* ``telmo/model.tar.gz``: a small randomly initialised Transformer-ELMo archive
  (AllenNLP ``language_model`` with the character CNN-highway encoder and the
  ``bidirectional_language_model_transformer`` contextualizer), written by
  AllenNLP's own archiving code;
* ``sentences.json`` and ``outputs.npz``: the sentences, and AllenNLP's per-layer
  outputs for them (``elmo_layer{i}``, ``telmo_layer{i}``, words only, begin/end of
  sentence removed), computed batched with padding.

AllenNLP's own modules compute the outputs: ``allennlp.modules.elmo._ElmoBiLm`` with
``batch_to_ids``, and ``BidirectionalLanguageModelTokenEmbedder`` (the published way
to load a Transformer-ELMo archive), whose language model's per-layer outputs are
taken before its scalar mix. neuroscope never imports AllenNLP.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "fixtures"

SENTENCES = [
    ["The", "quick", "brown", "fox", "jumps", "."],
    ["Supercalifragilisticexpialidociousness-without-any-reasonable-end-in-sight", "is", "long", "!"],
    ["Zürich", "naïve", "café", "—", "日本語", "😀", "?"],
    ["A", ",", "(", "b", ")", ";", "'s", "--", "$", "3.14"],
    ["Short"],
    # literal sentence markers and marker-like words: AllenNLP maps the words <S> and </S>
    # to its begin- and end-of-sentence character ids, the others to their bytes
    ["He", "typed", "<S>", "and", "</S>", "here", "."],
    ["<unk>", "<pad>", "\u00a0", "<S>x", "</s>", "<S>"],
    ["</S>"],
]

#: words whose AllenNLP character ids are recorded in sentences.json
MARKER_WORDS = ["<S>", "</S>", "<unk>", "<pad>", "\u00a0", "<S>x", "</s>"]

ELMO_OPTIONS = {
    "lstm": {"use_skip_connections": True, "projection_dim": 16, "cell_clip": 3.0, "proj_clip": 3.0,
             "dim": 24, "n_layers": 2},
    "char_cnn": {"activation": "relu", "filters": [[1, 4], [2, 8], [3, 8], [4, 12]], "n_highway": 2,
                 "embedding": {"dim": 6}, "n_characters": 262, "max_characters_per_token": 50},
}


def write_elmo(directory: Path, rng: np.random.Generator) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "options.json").write_text(json.dumps(ELMO_OPTIONS, indent=1))
    cnn = ELMO_OPTIONS["char_cnn"]
    lstm = ELMO_OPTIONS["lstm"]
    n_filters = sum(n for _, n in cnn["filters"])
    proj, cell = lstm["projection_dim"], lstm["dim"]

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    with h5py.File(directory / "weights.hdf5", "w") as f:
        f["char_embed"] = w(261, cnn["embedding"]["dim"], scale=1.0)
        group = f.create_group("CNN")
        for i, (width, num) in enumerate(cnn["filters"]):
            group[f"W_cnn_{i}"] = w(1, width, cnn["embedding"]["dim"], num)
            group[f"b_cnn_{i}"] = w(num, scale=0.1)
        for k in range(cnn["n_highway"]):
            high = f.create_group(f"CNN_high_{k}")
            high["W_transform"] = w(n_filters, n_filters, scale=0.2)
            high["b_transform"] = w(n_filters, scale=0.1)
            high["W_carry"] = w(n_filters, n_filters, scale=0.2)
            high["b_carry"] = w(n_filters, scale=0.1)
        projection = f.create_group("CNN_proj")
        projection["W_proj"] = w(n_filters, proj, scale=0.2)
        projection["b_proj"] = w(proj, scale=0.1)
        for direction in range(2):
            for layer in range(lstm["n_layers"]):
                cell_group = f.create_group(f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell")
                cell_group["W_0"] = w(proj + proj, 4 * cell, scale=0.3)
                cell_group["B"] = w(4 * cell, scale=0.1)
                cell_group["W_P_0"] = w(cell, proj, scale=0.3)


def elmo_outputs(directory: Path) -> list:
    from allennlp.modules.elmo import _ElmoBiLm, batch_to_ids
    from allennlp.nn.util import remove_sentence_boundaries

    bilm = _ElmoBiLm(str(directory / "options.json"), str(directory / "weights.hdf5"))
    bilm.eval()
    with torch.no_grad():
        bilm._elmo_lstm.reset_states()  # AllenNLP's ELMo LSTM is stateful; a fresh state is the reference
        result = bilm(batch_to_ids(SENTENCES))
    layers = []
    for activation in result["activations"]:
        words, mask = remove_sentence_boundaries(activation, result["mask"])
        layers.append(words.numpy())
    return layers


TELMO_CONFIG = {
    "dataset_reader": {
        "type": "simple_language_modeling",
        "tokenizer": {"type": "just_spaces"},
        "token_indexers": {"tokens": {"type": "single_id"},
                           "token_characters": {"type": "elmo_characters"}},
        "max_sequence_length": 400,
        "start_tokens": ["<S>"],
        "end_tokens": ["</S>"],
    },
    "model": {
        "type": "language_model",
        "bidirectional": True,
        "num_samples": 4,
        "sparse_embeddings": False,
        "dropout": 0.1,
        "text_field_embedder": {
            "token_embedders": {
                "token_characters": {
                    "type": "character_encoding",
                    "embedding": {"num_embeddings": 262, "embedding_dim": 6},
                    "encoder": {"type": "cnn-highway", "activation": "relu", "embedding_dim": 6,
                                "filters": [[1, 4], [2, 8], [3, 8], [4, 12]], "num_highway": 2,
                                "projection_dim": 16, "projection_location": "after_highway",
                                "do_layer_norm": True},
                },
            },
        },
        "contextualizer": {"type": "bidirectional_language_model_transformer", "input_dim": 16,
                           "hidden_dim": 32, "num_layers": 3, "dropout": 0.1, "input_dropout": 0.1},
    },
    "data_loader": {"batch_size": 2},
    "trainer": {"num_epochs": 1, "optimizer": {"type": "adam"}},
}


def write_telmo(directory: Path, seed: int) -> Path:
    from allennlp.common import Params
    from allennlp.data import Vocabulary
    from allennlp.models import Model
    from allennlp.models.archival import archive_model

    import allennlp_models.lm  # noqa: F401  (registers language_model and its modules)

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab = Vocabulary(tokens_to_add={"tokens": ["the", "a", "<S>", "</S>"]})
    model = Model.from_params(vocab=vocab, params=Params(json.loads(json.dumps(TELMO_CONFIG["model"]))))
    with torch.no_grad():  # move LayerNorm gains off 1 / 0 so that a wrong norm cannot pass
        for name, param in model.named_parameters():
            if name.endswith(("gamma", "beta")):
                param.add_(torch.randn_like(param) * 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        serialization = Path(tmp)
        (serialization / "config.json").write_text(json.dumps(TELMO_CONFIG, indent=1))
        torch.save(model.state_dict(), serialization / "best.th")
        vocab.save_to_files(str(serialization / "vocabulary"))
        archive_model(str(serialization), weights="best.th")
        shutil.copy(serialization / "model.tar.gz", directory / "model.tar.gz")
    return directory / "model.tar.gz"


def telmo_outputs(archive: Path) -> list:
    from allennlp.data import Token
    from allennlp.data.token_indexers import ELMoTokenCharactersIndexer
    from allennlp.nn.util import add_sentence_boundary_token_ids, get_text_field_mask, remove_sentence_boundaries
    from allennlp_models.lm.modules.token_embedders.bidirectional_lm import (
        BidirectionalLanguageModelTokenEmbedder)

    embedder = BidirectionalLanguageModelTokenEmbedder(str(archive))
    embedder.eval()
    indexer = ELMoTokenCharactersIndexer()
    longest = max(len(s) for s in SENTENCES)
    rows = []
    for sentence in SENTENCES:
        ids = indexer.tokens_to_indices([Token(w) for w in sentence], None)["elmo_tokens"]
        rows.append(ids + [[0] * 50] * (longest - len(sentence)))
    tokens = torch.LongTensor(rows)
    with torch.no_grad():
        mask = get_text_field_mask({"": {"": tokens}}, num_wrapping_dims=1)
        tokens, mask = add_sentence_boundary_token_ids(tokens, mask, embedder._bos_indices, embedder._eos_indices)
        result = embedder._lm({embedder._token_name: {"token_characters": tokens}})
        token_layer = torch.cat([result["noncontextual_token_embeddings"]] *
                                embedder._character_embedding_duplication_count, -1)
        layers = []
        for activation in [token_layer] + list(result["lm_embeddings"]):
            words, _ = remove_sentence_boundaries(activation, result["mask"])
            layers.append(words.numpy())
    return layers


def main() -> int:
    """``--outputs-only`` keeps the committed checkpoints and recomputes the outputs (after
    SENTENCES changed); without it everything is written anew."""
    import allennlp
    from allennlp.data.token_indexers.elmo_indexer import ELMoCharacterMapper

    archive = OUT / "telmo" / "model.tar.gz"
    if "--outputs-only" not in sys.argv[1:]:
        rng = np.random.default_rng(20201116)
        torch.manual_seed(0)
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        write_elmo(OUT / "elmo", rng)
        archive = write_telmo(OUT / "telmo", seed=7)
    arrays = {}
    for i, layer in enumerate(elmo_outputs(OUT / "elmo")):
        arrays[f"elmo_layer{i}"] = layer
    for i, layer in enumerate(telmo_outputs(archive)):
        arrays[f"telmo_layer{i}"] = layer
    np.savez_compressed(OUT / "outputs.npz", **arrays)
    (OUT / "sentences.json").write_text(json.dumps(
        {"sentences": SENTENCES, "allennlp": allennlp.__version__, "torch": torch.__version__,
         "char_ids": {w: ELMoCharacterMapper().convert_word_to_char_ids(w) for w in MARKER_WORDS},
         "python": sys.version.split()[0]}, ensure_ascii=False, indent=1))
    for name, value in arrays.items():
        print(name, value.shape)
    print("total bytes:", sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ALLENNLP_LOG_LEVEL", "WARNING")
    sys.exit(main())
