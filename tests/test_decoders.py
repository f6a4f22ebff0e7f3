"""Decoder LMs through the transformers adapter: randomly initialised GPT-2, GPT-NeoX and
Llama-style models saved to disk with real byte-level BPE and sentencepiece-style
tokenizers (tests/decoders.py), so the real loading code runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope.cli import main
from neuroscope_plugins.transformers_adapter import TransformersAdapter

sys.path.insert(0, str(Path(__file__).parent))
from decoders import save_decoder  # noqa: E402

KINDS = ("gpt2", "gpt_neox", "llama")
#: words that split into several byte-level tokens, non-ASCII, punctuation, a number
HARD = ["Café", "owners", "in", "Zürich", "—", "naïve", "résumé", "writers", ",", "61", "years", "!", "n't", "."]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    return {kind: save_decoder(kind, root / kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_pre_split_words_encode_as_in_running_text(decoders, kind):
    """Every word's sub-tokens are exactly those of the same word in the running sentence
    (leading space included): no word is re-tokenised on its own, without its space."""
    adapter = TransformersAdapter(checkpoint=str(decoders[kind]), device="cpu")
    assert adapter.causal and adapter.tokenizer.padding_side == "right" and adapter.tokenizer.pad_token is not None
    enc = adapter.tokenizer([HARD], is_split_into_words=True, add_special_tokens=False)
    word_ids = enc.word_ids(0)
    assert sorted(set(w for w in word_ids if w is not None)) == list(range(len(HARD)))
    assert any(word_ids.count(i) > 1 for i in range(len(HARD)))  # some words really split
    running = adapter.tokenizer(" ".join(HARD), add_special_tokens=False)["input_ids"]  # a prefix space, as below
    assert enc["input_ids"][0] == running
    tokens = adapter.tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    firsts = [tokens[word_ids.index(i)] for i in range(len(HARD))]
    assert all(t.startswith("\u0120" if kind != "llama" else "\u2581") for t in firsts)  # each word's leading space


@pytest.mark.parametrize("kind", KINDS)
def test_word_vectors_are_the_last_sub_token_of_the_running_sentence(decoders, kind):
    adapter = TransformersAdapter(checkpoint=str(decoders[kind]), device="cpu")
    vectors = adapter.embed([HARD])[0]
    enc = adapter.tokenizer([HARD], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        states = torch.stack(adapter.model(**{k: v for k, v in enc.items() if k in adapter.tokenizer.model_input_names},
                                           output_hidden_states=True).hidden_states)[:, 0]
    last = [max(p for p, w in enumerate(enc.word_ids(0)) if w == i) for i in range(len(HARD))]
    np.testing.assert_allclose(vectors, states[:, last].numpy(), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_right_padding_leaves_every_sentence_as_alone(decoders, kind):
    adapter = TransformersAdapter(checkpoint=str(decoders[kind]), device="cpu")
    short, long = ["a", "cat", "."], HARD
    batched = adapter.embed([short, long])
    np.testing.assert_allclose(batched[0], adapter.embed([short])[0], atol=1e-5)
    np.testing.assert_allclose(batched[1], adapter.embed([long])[0], atol=1e-5)


def test_bfloat16_weights_are_loaded_and_named_in_the_identity(decoders):
    adapter = TransformersAdapter(checkpoint=str(decoders["llama"]), device="cpu", dtype="bfloat16")
    assert next(adapter.model.parameters()).dtype == torch.bfloat16 and adapter.identity()["dtype"] == "bfloat16"
    full = TransformersAdapter(checkpoint=str(decoders["llama"]), device="cpu")
    assert "dtype" not in full.identity()  # float32 stores keep their cache key
    a, b = adapter.embed([HARD])[0], full.embed([HARD])[0]
    assert a.dtype == np.float32 and np.abs(a - b).max() < 0.1 * np.abs(b).max()


@pytest.mark.parametrize("kind,extra", [("gpt2", ["--causal", "--ranker", "weight-mass,attribution"]),
                                        ("llama", ["--layers", "0,2", "--dtype", "bfloat16"])])
def test_a_random_decoder_runs_the_whole_protocol_through_the_cli(decoders, kind, extra, tmp_path, data_dir,
                                                                  cache_dir, capsys):
    out = tmp_path / "run"
    causal = "--causal" in extra
    assert main(["run", "--model", f"hf:{decoders[kind]}", "--task", "pos", "--data-dir", str(data_dir),
                 "--max-sentences", "150,50,50", "--seeds", "1", "--l1", "0", "--l2", "0", "--no-control",
                 "--cache-dir", str(cache_dir), "--out", str(out), *([] if causal else ["--quiet"]), *extra]) == 0
    if causal:  # the console summary ends with the live-model ablation and the model's loss
        printed = " ".join(capsys.readouterr().out.split())
        assert "causal (weight-mass, 20% removed inside the model): test accuracy top " in printed
        assert "(loss " in printed and "nothing removed " in printed
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["ablation"]["test"]["all"]["mean"] > results["majority_baseline"]["test"] + 10
    if "--layers" in extra:
        assert results["layers"] == ["emb", "2"] and results["neurons"] == 2 * 32
        assert json.loads((out / "config.json").read_text())["layers"] == [0, 2]
    if "--causal" in extra:
        causal = results["causal"]
        assert causal["objective"] == "next-token loss" and causal["none"]["loss"] > 0
        assert causal["none"]["in_model"]["mean"] == pytest.approx(results["summary"]["ablation"]["test"]["all"]["mean"],
                                                                    abs=0.1)
        # the attribution ranker (the model's own next-token gradients) ran through the protocol, and
        # removing its top 20 % inside the model moves the loss more than a layer-matched random 20 %
        assert results["per_ranker"]["attribution"]["per_seed"][0]["ranking"]["method"] == "attribution"
        moved = {kind: abs(causal["per_ranker"]["attribution"][kind]["loss"]["mean"] - causal["none"]["loss"])
                 for kind in ("top", "random")}
        assert moved["top"] > moved["random"], moved


def test_device_map_needs_accelerate_or_places_the_model(decoders):
    import importlib.util

    from neuroscope.errors import ModelLoadError

    if importlib.util.find_spec("accelerate") is None:
        with pytest.raises(ModelLoadError, match="pip install accelerate"):
            TransformersAdapter(checkpoint=str(decoders["gpt2"]), device_map="auto")
    else:
        adapter = TransformersAdapter(checkpoint=str(decoders["gpt2"]), device_map="cpu")
        assert adapter.device.type == "cpu" and adapter.embed([HARD])[0].shape == (3, len(HARD), 32)
