"""ELMo and Transformer-ELMo adapters against AllenNLP 2.10.1's own outputs.

The fixture (tests/reference/fixtures) was made by tests/reference/make_allennlp_fixtures.py
in a Python 3.9 environment with AllenNLP: small random checkpoints in the published
formats and AllenNLP's per-layer outputs on a padded batch of sentences with long
words, punctuation and unicode. Every layer must match to 1e-5.
"""

import gzip
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from neuroscope import ModelLoadError
from neuroscope_plugins.elmo_adapter import elmo_model
from neuroscope_plugins.elmo_chars import word_to_ids
from neuroscope_plugins.telmo_adapter import telmo_model

FIXTURES = Path(__file__).parent / "reference" / "fixtures"
SENTENCES = json.loads((FIXTURES / "sentences.json").read_text(encoding="utf-8"))["sentences"]
REFERENCE = np.load(FIXTURES / "outputs.npz")


def assert_layers_match(outputs, prefix, n_layers):
    assert len([k for k in REFERENCE.files if k.startswith(prefix)]) == n_layers
    for layer in range(n_layers):
        reference = REFERENCE[f"{prefix}{layer}"]
        for b, (vectors, words) in enumerate(zip(outputs, SENTENCES)):
            np.testing.assert_allclose(vectors[layer], reference[b, : len(words)], atol=1e-5, rtol=0,
                                       err_msg=f"{prefix}{layer}, sentence {b}")


@pytest.fixture(scope="module")
def elmo():
    return elmo_model(location=str(FIXTURES / "elmo"), device="cpu")


@pytest.fixture(scope="module")
def telmo():
    return telmo_model(location=str(FIXTURES / "telmo" / "model.tar.gz"), device="cpu")


def test_elmo_matches_allennlp_on_every_layer(elmo):
    assert elmo.neuron_index.layer_names == ("token", "1", "2")
    assert elmo.neuron_index.hidden_size == 32
    assert_layers_match(elmo.embed(SENTENCES), "elmo_layer", 3)


def test_telmo_matches_allennlp_on_every_layer(telmo):
    assert telmo.neuron_index.layer_names == ("token", "1", "2", "3")
    assert_layers_match(telmo.embed(SENTENCES), "telmo_layer", 4)


@pytest.mark.parametrize("name", ["elmo", "telmo"])
def test_sentences_do_not_depend_on_their_batch(name, elmo, telmo):
    adapter = {"elmo": elmo, "telmo": telmo}[name]
    batched = adapter.embed(SENTENCES)
    for words, vectors in zip(SENTENCES, batched):
        np.testing.assert_allclose(adapter.embed([words])[0], vectors, atol=1e-5)


def test_character_ids_follow_allennlp():
    ids = word_to_ids("ab")
    assert ids[:4] == [259, 98, 99, 260] and ids[4:] == [261] * 46
    long_word = "x" * 60
    assert word_to_ids(long_word)[49] == 260  # cut to 48 bytes, then end-of-word
    assert word_to_ids("é")[1:3] == [0xC3 + 1, 0xA9 + 1]  # UTF-8 bytes


def test_marker_words_get_allennlps_character_ids():
    """The literal words <S> and </S> are AllenNLP's sentence-marker characters; <unk>, <pad>,
    a lone non-breaking space, <S>x and </s> are their bytes (ids recorded from AllenNLP)."""
    recorded = json.loads((FIXTURES / "sentences.json").read_text(encoding="utf-8"))["char_ids"]
    assert set(recorded) >= {"<S>", "</S>", "<unk>", "<pad>", "\u00a0"}
    for word, ids in recorded.items():
        assert word_to_ids(word) == ids, word
    assert any("<S>" in s for s in SENTENCES) and any("</S>" in s for s in SENTENCES)


def test_identity_is_content_addressed(elmo, telmo):
    assert len(elmo.identity()["weights_sha256"]) == 64
    assert telmo.identity()["adapter"] == "telmo"


def test_truncated_or_malformed_elmo_checkpoints(tmp_path):
    folder = tmp_path / "elmo"
    shutil.copytree(FIXTURES / "elmo", folder)
    weights = folder / "weights.hdf5"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"weights\.hdf5: not a readable HDF5 ELMo weight file"):
        elmo_model(location=str(folder), device="cpu")
    shutil.copy(FIXTURES / "elmo" / "weights.hdf5", weights)
    options = json.loads((folder / "options.json").read_text())
    options["lstm"]["projection_dim"] = 20
    (folder / "options.json").write_text(json.dumps(options))
    with pytest.raises(ModelLoadError, match=r"CNN_proj/W_proj \(as torch lays it out: \(16, 32\)\) does not fit the shape \(20, 32\)"):
        elmo_model(location=str(folder), device="cpu")
    (folder / "options.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"options\.json: not an ELMo options file"):
        elmo_model(location=str(folder), device="cpu")
    with pytest.raises(ModelLoadError, match="no such ELMo checkpoint directory"):
        elmo_model(location=str(tmp_path / "missing"), device="cpu")


def test_truncated_or_malformed_telmo_archives(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes((FIXTURES / "telmo" / "model.tar.gz").read_bytes()[:20000])
    with pytest.raises(ModelLoadError, match="not a readable model archive"):
        telmo_model(location=str(archive), device="cpu")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(FIXTURES / "sentences.json", arcname="config.json")
    with pytest.raises(ModelLoadError, match="needs config.json and weights.th"):
        telmo_model(location=str(archive), device="cpu")
    with pytest.raises(ModelLoadError, match="model.tar.gz: Transformer-ELMo archive not found"):
        telmo_model(location=str(tmp_path / "none" / "model.tar.gz"), device="cpu")


def test_telmo_weights_are_loaded_without_pickle_code(tmp_path):
    """weights.th holding a pickled object (not tensors) is refused by weights_only loading."""
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    source = tarfile.open(FIXTURES / "telmo" / "model.tar.gz")
    config = source.extractfile("config.json").read()
    payload = pickle.dumps({"x": Evil()})
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("config.json", config), ("weights.th", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ModelLoadError, match="weights.th cannot be read safely"):
        telmo_model(location=str(archive), device="cpu")
    assert gzip  # archives are gzip-compressed tars
