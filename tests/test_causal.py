"""Live-model ablation (--causal): the interventions of every built-in adapter remove
exactly the chosen units at the chosen positions, reach the layers above, leave the model
exactly as it was, and the step runs on MiniLM x POS through the CLI."""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope.causal import Ablation, InterventionUnsupported, edit_hidden, removal_sets
from neuroscope.cli import main
from neuroscope.model import LayerSubset, ModelAdapter
from neuroscope.results import validate
from neuroscope.types import NeuronIndex
from neuroscope_plugins.elmo_adapter import elmo_model
from neuroscope_plugins.telmo_adapter import telmo_model
from neuroscope_plugins.transformers_adapter import TransformersAdapter

sys.path.insert(0, str(Path(__file__).parent))
from decoders import save_decoder  # noqa: E402

FIXTURES = Path(__file__).parent / "reference" / "fixtures"
SENTENCES = [["the", "cat", "sat", "on", "the", "mat", "."], ["a", "dog", "ran"]]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return TransformersAdapter(checkpoint=str(save_decoder("gpt2", tmp_path_factory.mktemp("gpt2"))), device="cpu")


@pytest.fixture(scope="module")
def bert_mlm(tmp_path_factory):
    """A random BERT saved with its masked-LM head (so the masked-LM loss is measurable)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    path = tmp_path_factory.mktemp("bert-mlm")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "a", "ran"] + \
        list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase] + list(string.punctuation)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(path)
    return TransformersAdapter(checkpoint=str(path), device="cpu")


def one_condition(index: NeuronIndex, neurons, conditions: int = 2, **kwargs) -> Ablation:
    """Condition 0 removes nothing, condition 1 removes ``neurons``."""
    masks = np.zeros((conditions, index.n_neurons), dtype=bool)
    masks[1, neurons] = True
    return Ablation(masks, **kwargs)


def test_edit_hidden_replaces_only_the_chosen_units_rows_and_positions():
    hidden = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).reshape(4, 3, 4) + 1  # 2 conditions x 2 rows
    mask = torch.tensor([[False] * 4, [False, True, False, True]])
    values = torch.tensor([0.0, -1.0, 0.0, -2.0])
    positions = torch.tensor([[True, True, False]] * 4)
    out = edit_hidden(hidden, (mask, values), positions)
    assert torch.equal(out[:2], hidden[:2])  # condition 0: nothing
    assert torch.equal(out[2:, :2, 1], torch.full((2, 2), -1.0)) and torch.equal(out[2:, :2, 3], torch.full((2, 2), -2.0))
    assert torch.equal(out[2:, 2], hidden[2:, 2]) and torch.equal(out[2:, :, 0], hidden[2:, :, 0])
    seq_first = edit_hidden(hidden.transpose(0, 1).contiguous(), (mask, values), positions, seq_first=True)
    assert torch.equal(seq_first.transpose(0, 1), out)


def test_removal_sets_match_the_top_set_layer_by_layer():
    index = NeuronIndex(("emb", "1", "2"), 10)
    order = np.r_[np.arange(20, 30), np.arange(0, 20)]  # layer 2 first
    sets = removal_sets(order, index, 0.2, seed=3)
    assert sets["top"].tolist() == list(range(20, 26)) and sets["bottom"].tolist() == list(range(14, 20))
    assert len(sets["random"]) == 6 and (index.layer_of(sets["random"]) == 2).all()
    assert np.array_equal(sets["random"], removal_sets(order, index, 0.2, seed=3)["random"])


def test_an_adapter_without_intervene_says_so():
    class Plain(ModelAdapter):
        name = "plain"
        neuron_index = NeuronIndex(("a",), 2)

        def identity(self):
            return {}

        def embed(self, sentences):
            return []

    with pytest.raises(InterventionUnsupported, match="'plain' cannot remove neurons inside its forward pass"):
        with Plain().intervene(one_condition(Plain.neuron_index, [0])):
            pass


@pytest.mark.parametrize("adapter_name", ["gpt2", "bert_mlm", "elmo", "telmo"])
def test_hooks_remove_exactly_the_chosen_units_and_leaving_restores_the_model(adapter_name, request):
    if adapter_name == "elmo":
        adapter = elmo_model(location=str(FIXTURES / "elmo"), device="cpu")
    elif adapter_name == "telmo":
        adapter = telmo_model(location=str(FIXTURES / "telmo" / "model.tar.gz"), device="cpu")
    else:
        adapter = request.getfixturevalue(adapter_name)
    index = adapter.neuron_index
    H, last = index.hidden_size, index.n_layers - 1
    state = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    before = adapter.embed(SENTENCES)
    hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in adapter.model.modules()]
    chosen = {0: [1, 5], 1: [2], last: [0, H - 1]}
    neurons = [layer * H + unit for layer, units in chosen.items() for unit in units]
    with adapter.intervene(one_condition(index, neurons)):
        out = adapter.embed(SENTENCES)
    assert len(out) == 2 * len(SENTENCES)
    for k, words in enumerate(SENTENCES):
        assert np.allclose(out[k], before[k], atol=1e-5)  # condition 0 removes nothing
        ablated = out[len(SENTENCES) + k]
        for layer, units in chosen.items():
            assert (ablated[layer][:, units] == 0).all()
        other = np.setdiff1d(np.arange(H), chosen[0])
        np.testing.assert_array_equal(ablated[0][:, other], before[k][0][:, other])  # the rest of layer 0 as it was
        untouched = np.setdiff1d(np.arange(H), chosen.get(2, []))
        assert not np.allclose(ablated[2][:, untouched], before[k][2][:, untouched], atol=1e-4)  # it reaches layer 2
    after = adapter.embed(SENTENCES)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)  # bit for bit
    assert all(torch.equal(v, state[k]) for k, v in adapter.model.state_dict().items())
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in adapter.model.modules()] == hooks


def test_special_tokens_keep_their_values_with_positions_words(bert_mlm):
    adapter = bert_mlm
    index = adapter.neuron_index
    enc = adapter.tokenizer([SENTENCES[1]], is_split_into_words=True, return_tensors="pt")
    layer, units = 2, [3, 7]
    for positions, cls_kept in (("words", True), ("all", False)):
        ablation = one_condition(index, [layer * index.hidden_size + u for u in units], conditions=2,
                                 positions=positions)
        with adapter.intervene(ablation), torch.no_grad():
            adapter._positions = adapter._edit_positions(enc, 2)
            inputs = {k: v.repeat(2, 1) for k, v in enc.items() if k in adapter.tokenizer.model_input_names}
            states = adapter.model(**inputs, output_hidden_states=True).hidden_states
        cls = states[layer][1, 0, units]
        assert torch.equal(cls, states[layer][0, 0, units]) is cls_kept
        assert (states[layer][1, 1:-1][:, units] == 0).all()


def test_a_fully_removed_layer_gives_the_known_output_above(gpt2):
    """Zeroing every unit of layer 1 everywhere: every position of layer 2 is then
    ln_f(block 2 applied to a zero vector), the same at every position (the causal
    attention averages identical values), which the model's own modules compute."""
    index = gpt2.neuron_index
    H = index.hidden_size
    masks = np.zeros((1, index.n_neurons), dtype=bool)
    masks[0, H:2 * H] = True
    with gpt2.intervene(Ablation(masks, positions="all", objective=False)):
        out = gpt2.embed(SENTENCES)
    block, final = gpt2.model.h[1], gpt2.model.ln_f
    with torch.no_grad():
        result = block(torch.zeros(1, 1, H))
        expected = final(result[0] if isinstance(result, tuple) else result)[0, 0].numpy()
    for vectors in out:
        assert (vectors[1] == 0).all()
        np.testing.assert_allclose(vectors[2], np.broadcast_to(expected, vectors[2].shape), atol=1e-5)


def test_next_token_loss_equals_the_models_own(gpt2):
    words = SENTENCES[0]
    with gpt2.intervene(Ablation(np.zeros((1, gpt2.neuron_index.n_neurons), dtype=bool))) as record:
        gpt2.embed([words])
    assert record.objective == "next-token loss"
    ids = gpt2.tokenizer([words], is_split_into_words=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = gpt2.lm(input_ids=ids, labels=ids).loss.item()
    assert record.tokens == ids.shape[1] - 1
    assert record.loss[0] / record.tokens == pytest.approx(reference, rel=1e-5)


def test_masked_lm_loss_where_the_checkpoint_has_the_head(bert_mlm, minilm_dir):
    index = bert_mlm.neuron_index
    with bert_mlm.intervene(one_condition(index, list(range(index.hidden_size, 2 * index.hidden_size)))) as record:
        bert_mlm.embed(SENTENCES)
    assert record.objective == "masked-LM loss" and record.unavailable is None
    assert record.tokens > 0 and np.isfinite(record.loss).all() and record.loss[0] != record.loss[1]
    minilm = TransformersAdapter(checkpoint=str(minilm_dir), device="cpu")
    with minilm.intervene(one_condition(minilm.neuron_index, [0])) as record:
        minilm.embed(SENTENCES[:1])
    assert record.objective is None and "no trained masked-LM head" in record.unavailable


def test_layer_subset_maps_the_intervention_onto_the_full_model(gpt2):
    subset = LayerSubset(gpt2, (0, 2))
    H = gpt2.neuron_index.hidden_size
    assert subset.neuron_index.layer_names == ("emb", "2") and subset.identity()["layers"] == [0, 2]
    with subset.intervene(one_condition(subset.neuron_index, [H + 4])):  # subset layer 1 = the model's layer 2
        out = subset.embed(SENTENCES[:1])
    assert out[1].shape == (2, len(SENTENCES[0]), H) and (out[1][1][:, 4] == 0).all()
    np.testing.assert_array_equal(out[1][0], out[0][0])


def test_causal_step_on_minilm_pos(tmp_path, data_dir, minilm_dir, cache_dir):
    """The whole protocol with --causal on a slice of PTB: the unablated re-extraction
    reproduces the stored activations' accuracy, removing the bottom 20 % inside the
    model barely matters, removing the top 20 % costs many points."""
    out = tmp_path / "run"
    assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--max-sentences",
                 "300,100,100", "--seeds", "2", "--l1", "1e-4", "--l2", "1e-4", "--no-control", "--causal",
                 "--scan-step", "0.05", "--deltas", "100", "--scan-block", "1",  # the minimal set is not looked at
                 "--cache-dir", str(cache_dir), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    validate(results)
    causal = results["causal"]
    stored = results["summary"]["ablation"]["test"]["all"]["mean"]
    assert causal["none"]["in_model"]["mean"] == pytest.approx(stored, abs=0.1)
    wm = causal["per_ranker"]["weight-mass"]
    assert wm["top"]["removed"] == wm["random"]["removed"] == wm["bottom"]["removed"] == round(0.2 * 2688)
    assert wm["bottom"]["in_model"]["mean"] > stored - 1.5
    assert wm["top"]["in_model"]["mean"] < stored - 5
    assert wm["top"]["in_model"]["mean"] < wm["top"]["in_probe"]["mean"]  # propagation adds to the damage
    assert causal["objective"] is None and "masked-LM head" in causal["objective_unavailable"]
    assert (out / "causal.png").is_file() and "Causal ablation, test" in (out / "tables.md").read_text()
    assert "in-model acc" in (out / "report.html").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["causal"] is True and config["causal_mode"] == "zero"


def _site_loss(adapter, sentences, layer, unit, sentence, word, scale):
    """The objective attribution() differentiates, with one neuron scaled by ``scale`` at one
    word's sub-tokens (for finite differences)."""
    targets = adapter._sites() if adapter._mlp is None else [(m, "input", s) for m, s in adapter._mlp]
    module, kind, _ = targets[layer]
    enc = adapter.tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors="pt")
    positions = [p for p, w in enumerate(enc.word_ids(sentence)) if w == word]

    def edit(value):
        value = value.clone()
        value[sentence, positions, unit] *= scale
        return value

    if kind == "input":
        handle = module.register_forward_pre_hook(lambda m, args, kw: ((edit(args[0]),) + args[1:], kw) if args
                                                  else (args, {**kw, "hidden_states": edit(kw["hidden_states"])}),
                                                  with_kwargs=True)
    else:
        handle = module.register_forward_hook(lambda m, args, out: (edit(out[0]),) + out[1:]
                                              if isinstance(out, tuple) else edit(out))
    inputs = {k: v for k, v in enc.items() if k in adapter.tokenizer.model_input_names}
    try:
        with torch.no_grad():
            if adapter.lm is not None:
                logits, ids = adapter.lm(**inputs).logits[:, :-1], inputs["input_ids"][:, 1:]
                keep = inputs["attention_mask"][:, 1:].bool() & inputs["attention_mask"][:, :-1].bool()
            else:
                masked, keep = adapter._masked(enc, inputs)
                logits, ids = adapter._masked_lm()(**masked).logits, inputs["input_ids"]
            return float((torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
                          * keep).sum())
    finally:
        handle.remove()


@pytest.mark.parametrize("which,site", [("gpt2", "hidden"), ("gpt2", "mlp"), ("bert_mlm", "hidden")])
def test_attribution_is_activation_times_the_objectives_gradient(which, site, request):
    """attribution() per word and neuron equals d objective / d log-scale of that neuron at
    the word's sub-tokens (= activation x gradient, summed over them), by central finite
    differences in float64, for the next-token loss (GPT-2, hidden and MLP sites) and the
    masked-LM loss (BERT with its head)."""
    adapter = request.getfixturevalue(which)
    adapter = TransformersAdapter(checkpoint=str(adapter.path), device="cpu", site=site)
    (adapter.lm if adapter.lm is not None else adapter.model).double()
    if adapter.lm is None:
        adapter._masked_lm().double()
    assert adapter.attribution_objective() == ("next-token loss" if which == "gpt2" else "masked-LM loss")
    effects = adapter.attribution(SENTENCES)
    assert [e.shape for e in effects] == [(len(s), adapter.neuron_index.n_neurons) for s in SENTENCES]
    hidden = adapter.neuron_index.hidden_size
    eps = 1e-5
    checked = 0
    for layer, unit, sentence, word in ((0, 3, 0, 2), (1, 7, 1, 1), (1, 5, 0, 4)):
        fd = (_site_loss(adapter, SENTENCES, layer, unit, sentence, word, 1 + eps)
              - _site_loss(adapter, SENTENCES, layer, unit, sentence, word, 1 - eps)) / (2 * eps)
        assert effects[sentence][word, layer * hidden + unit] == pytest.approx(fd, rel=1e-5, abs=1e-9)
        checked += abs(fd) > 1e-6
    assert checked >= 2  # not all zero


def test_attribution_predicts_what_removing_a_neuron_inside_the_model_does(gpt2):
    """The first-order estimate -sum(a x dL/da) over every word of a neuron, against the
    causal step's real removal of that neuron at every word (40 neurons): the same order."""
    from scipy.stats import spearmanr

    sentences = SENTENCES + [["Pierre", "Vinken", ",", "61", "years", "old"]]
    estimate = -sum(e.sum(axis=0) for e in gpt2.attribution(sentences))
    n = gpt2.neuron_index.n_neurons
    picks = np.random.default_rng(0).choice(n, 40, replace=False)
    masks = np.zeros((41, n), dtype=bool)
    masks[np.arange(1, 41), picks] = True
    with gpt2.intervene(Ablation(masks, None, "words")) as record:
        gpt2.embed(sentences)
    real = np.asarray(record.loss[1:]) - record.loss[0]
    assert spearmanr(real, estimate[picks]).statistic > 0.9


def test_attribution_needs_the_models_objective(minilm_dir, tmp_path, data_dir, capsys):
    """MiniLM ships without its masked-LM head: --ranker attribution is refused in one line
    once the model is loaded, before anything is extracted."""
    code = main(["run", "--model", f"hf:{minilm_dir}", "--task", "pos", "--data-dir", str(data_dir), "--ranker",
                 "attribution", "--max-sentences", "20,10,10", "--seeds", "1", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--ranker attribution:" in err and "masked-LM head" in err
    assert not (tmp_path / "cache" / "activations").exists() or not any((tmp_path / "cache" / "activations").iterdir())
