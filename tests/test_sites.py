"""Sites (docs/models.md, "Sites"): the MLP neurons of every transformer family, read where
the literature reads them and proven equal to a computation from each module's own
weights; the causal hook at the MLP site; the site through the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decoders import save_decoder, save_random_bert
from neuroscope.causal import Ablation
from neuroscope.errors import NeuroscopeError
from neuroscope_plugins.transformers_adapter import TransformersAdapter

SENTENCES = [["The", "old", "man", "the", "boats", "."], ["Unbelievably", ",", "pieces", "!"]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("site-models")
    out = {kind: save_decoder(kind, root / kind) for kind in ("gpt2", "gpt_neox", "llama", "qwen2", "phi3")}
    out["bert"] = save_random_bert(root / "bert")
    return out


def mlp_by_hand(model, kind: str, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The post-nonlinearity MLP activation of ``layer`` from the MLP's input ``x``, written
    out from the block's own weights (the adapter finds its site by structure instead)."""
    from transformers.activations import ACT2FN

    config = model.config
    if kind == "bert":
        dense = model.encoder.layer[layer].intermediate.dense
        return ACT2FN[config.hidden_act](x @ dense.weight.T + dense.bias)
    if kind == "gpt2":
        fc = model.h[layer].mlp.c_fc
        return ACT2FN[config.activation_function](x @ fc.weight + fc.bias)
    if kind == "gpt_neox":
        up = model.layers[layer].mlp.dense_h_to_4h
        return ACT2FN[config.hidden_act](x @ up.weight.T + up.bias)
    mlp = model.layers[layer].mlp  # gated: act(x W_gate) * (x W_up)
    return ACT2FN[config.hidden_act](x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)


def mlp_inputs(model, kind: str) -> list:
    """The module whose input is each block's MLP input (to capture x in the test)."""
    if kind == "bert":
        return [block.intermediate.dense for block in model.encoder.layer]
    if kind == "gpt2":
        return [block.mlp.c_fc for block in model.h]
    if kind == "gpt_neox":
        return [block.mlp.dense_h_to_4h for block in model.layers]
    return [block.mlp.gate_proj for block in model.layers]


@pytest.mark.parametrize("kind", ["bert", "gpt2", "gpt_neox", "llama", "qwen2"])
def test_the_mlp_site_equals_the_activation_computed_from_the_weights(models, kind):
    adapter = TransformersAdapter(checkpoint=str(models[kind]), device="cpu", site="mlp")
    width = 64 if kind in ("bert", "gpt_neox", "llama") else (128 if kind == "gpt2" else 48)
    assert adapter.neuron_index.layer_names == ("mlp1", "mlp2") and adapter.neuron_index.hidden_size == width
    assert adapter.identity()["site"] == "mlp"
    vectors = adapter.embed(SENTENCES)
    model = adapter.model
    for sentence, got in zip(SENTENCES, vectors):
        enc = adapter.tokenizer([sentence], is_split_into_words=True, return_tensors="pt")
        last = {}
        for pos, wid in enumerate(enc.word_ids(0)):
            if wid is not None:
                last[wid] = pos
        inputs = {k: v for k, v in enc.items() if k in adapter.tokenizer.model_input_names}
        seen: list[torch.Tensor] = []
        handles = [m.register_forward_pre_hook(lambda mod, args: seen.append(args[0])) for m in mlp_inputs(model, kind)]
        with torch.inference_mode():
            model(**inputs)
        for h in handles:
            h.remove()
        assert got.shape == (2, len(sentence), width)
        for layer in range(2):
            with torch.inference_mode():
                expected = mlp_by_hand(model, kind, seen[layer][0], layer)[[last[w] for w in range(len(sentence))]]
            np.testing.assert_allclose(got[layer], expected.numpy(), rtol=1e-4, atol=1e-5)
    hidden = TransformersAdapter(checkpoint=str(models[kind]), device="cpu")
    assert "site" not in hidden.identity() and hidden.neuron_index.layer_names[0] == "emb"


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_the_causal_hook_at_the_mlp_site_removes_exactly_the_chosen_units(models, kind):
    adapter = TransformersAdapter(checkpoint=str(models[kind]), device="cpu", site="mlp")
    index = adapter.neuron_index
    before = adapter.embed(SENTENCES)
    chosen = np.array([1, 5, 17])
    masks = np.zeros((2, index.n_neurons), dtype=bool)
    masks[1, chosen] = True  # condition 0 removes nothing, condition 1 three units of mlp1
    with adapter.intervene(Ablation(masks, objective=False)):
        conditions = adapter.embed(SENTENCES)
    untouched, removed = conditions[:2], conditions[2:]
    for a, b, c in zip(before, untouched, removed):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        assert np.all(c[0][:, chosen] == 0) and np.allclose(np.delete(c[0], chosen, axis=1), np.delete(a[0], chosen, axis=1))
        assert not np.allclose(c[1], a[1], atol=1e-6)  # the layer above sees the change
    after = adapter.embed(SENTENCES)
    assert all(np.array_equal(x, y) for x, y in zip(before, after))  # leaving restores the model bit for bit


def test_xlnet_reads_its_feed_forward_inner_activation(tmp_path):
    """XLNet runs sequence-first inside: the site's layout is read from a forward pass, and
    the values equal act(x W_1 + b_1) of its ff.layer_1 input."""
    import string

    from transformers import XLNetConfig, XLNetModel, XLNetTokenizer
    from transformers.activations import ACT2FN

    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    pieces = [(s, 0.0) for s in specials] + [("\u2581", -2.0)] + [("\u2581the", -5.0), ("\u2581old", -5.0)]
    pieces += [(c, -8.0) for c in string.ascii_letters + string.digits + string.punctuation]
    XLNetTokenizer(vocab=pieces).save_pretrained(tmp_path)
    torch.manual_seed(0)
    XLNetModel(XLNetConfig(vocab_size=len(pieces), d_model=32, n_layer=2, n_head=2, d_inner=64)).save_pretrained(tmp_path)
    adapter = TransformersAdapter(checkpoint=str(tmp_path), device="cpu", site="mlp")
    assert adapter.neuron_index.hidden_size == 64 and adapter._mlp[0][1] is True  # sequence-first inside
    got = adapter.embed([SENTENCES[0]])[0]
    model = adapter.model
    enc = adapter.tokenizer([SENTENCES[0]], is_split_into_words=True, return_tensors="pt")
    last = {wid: pos for pos, wid in enumerate(enc.word_ids(0)) if wid is not None}
    seen: list[torch.Tensor] = []
    handles = [block.ff.layer_1.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
               for block in model.layer]
    with torch.inference_mode():
        model(**{k: v for k, v in enc.items() if k in adapter.tokenizer.model_input_names})
        for h in handles:
            h.remove()
        for layer, block in enumerate(model.layer):
            inner = ACT2FN[model.config.ff_activation](block.ff.layer_1(seen[layer]))[:, 0]  # (tokens, width)
            np.testing.assert_allclose(got[layer], inner[[last[w] for w in range(len(SENTENCES[0]))]].numpy(),
                                       rtol=1e-4, atol=1e-5)


def test_a_site_list_runs_one_cell_per_site_through_the_command_line(models, tmp_path, data_dir, cache_dir):
    """`--site hidden,mlp`: two run directories (the mlp one named by its site), each the
    whole protocol on its own units, the MLP's stored apart from the hidden states."""
    import json

    from neuroscope.cli import main

    assert main(["run", "--model", f"hf:{models['bert']}", "--task", "pos", "--site", "hidden,mlp", "--data-dir",
                 str(data_dir), "--max-sentences", "150,50,50", "--seeds", "1", "--l1", "0", "--l2", "0",
                 "--no-control", "--runs-dir", str(tmp_path), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert len(runs) == 2 and "-pos-site-mlp" in runs[1] and "-pos-site-" not in runs[0], runs
    hidden, mlp = (json.loads((tmp_path / name / "results.json").read_text()) for name in runs)
    assert (hidden["site"], hidden["layers"], hidden["neurons"]) == ("hidden", ["emb", "1", "2"], 3 * 32)
    assert (mlp["site"], mlp["layers"], mlp["neurons"]) == ("mlp", ["mlp1", "mlp2"], 2 * 64)
    assert len(mlp["per_seed"][0]["ranking"]["order"]) == 128
    assert json.loads((tmp_path / runs[1] / "config.json").read_text())["site"] == "mlp"


def test_a_store_that_will_not_fit_is_refused_before_extraction(tmp_path, monkeypatch):
    """Llama-3-8B's MLP site over a million words is 917 GB: refused in one line with both
    numbers and the ways out, not a disk filled half-way."""
    import collections
    import shutil

    from neuroscope.errors import StoreError
    from neuroscope.store import check_space

    monkeypatch.setattr(shutil, "disk_usage", lambda path: collections.namedtuple("u", "total used free")(0, 0, 10**11))
    with pytest.raises(StoreError, match=r"need 917.5 GB \(1,000,000 words x 458,752 neurons x 2 bytes\), but "
                                         r"100.0 GB are free under .*--layers.*--max-sentences.*--cache-dir"):
        check_space(tmp_path / "not-yet" / "activations", 1_000_000, 458_752)
    check_space(tmp_path, 1000, 9216)  # 18 MB: fits


def attention_by_hand(model, kind: str, x: torch.Tensor) -> torch.Tensor:
    """The heads' outputs side by side, (tokens, heads x head dim), of one block from its
    input ``x`` (tokens, hidden) and its own weights: softmax(Q K^T / sqrt(d) [+ causal
    mask]) V per head. One unpadded sentence, so no padding mask."""
    heads = model.config.num_attention_heads
    if kind == "bert":
        attn = model.encoder.layer[0].attention.self
        q, k, v = attn.query(x), attn.key(x), attn.value(x)
    else:
        block = model.h[0]
        q, k, v = block.attn.c_attn(block.ln_1(x)).split(model.config.n_embd, dim=-1)
    tokens, width = q.shape
    d = width // heads
    q, k, v = (t.view(tokens, heads, d).transpose(0, 1) for t in (q, k, v))
    scores = q @ k.transpose(1, 2) / d ** 0.5
    if kind == "gpt2":
        scores = scores.masked_fill(torch.ones(tokens, tokens, dtype=torch.bool).triu(1), float("-inf"))
    return (scores.softmax(-1) @ v).transpose(0, 1).reshape(tokens, width)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_the_attn_site_equals_the_heads_outputs_computed_from_the_weights(models, kind):
    """--site attn: the concatenated per-head outputs before the attention output
    projection (unit = head x head dim + dimension), recomputed from Q, K and V."""
    adapter = TransformersAdapter(checkpoint=str(models[kind]), device="cpu", site="attn")
    assert adapter.neuron_index.layer_names == ("attn1", "attn2") and adapter.neuron_index.hidden_size == 32
    sentence = SENTENCES[0]
    got = adapter.embed([sentence])[0]
    model = adapter.model
    enc = adapter.tokenizer([sentence], is_split_into_words=True, return_tensors="pt")
    last = {wid: pos for pos, wid in enumerate(enc.word_ids(0)) if wid is not None}
    block = model.encoder.layer[0] if kind == "bert" else model.h[0]
    seen: list[torch.Tensor] = []
    handle = block.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(
        args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
    with torch.inference_mode():
        model(**{k: v for k, v in enc.items() if k in adapter.tokenizer.model_input_names})
        handle.remove()
        expected = attention_by_hand(model, kind, seen[0][0])[[last[w] for w in range(len(sentence))]]
    np.testing.assert_allclose(got[0], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_the_causal_hook_at_the_attn_site_changes_the_layers_above(models):
    adapter = TransformersAdapter(checkpoint=str(models["llama"]), device="cpu", site="attn")
    before = adapter.embed(SENTENCES[:1])
    masks = np.zeros((1, adapter.neuron_index.n_neurons), dtype=bool)
    masks[0, :16] = True  # the first head of attn1
    with adapter.intervene(Ablation(masks, objective=False)):
        removed = adapter.embed(SENTENCES[:1])[0]
    assert np.all(removed[0][:, :16] == 0) and np.allclose(removed[0][:, 16:], before[0][0][:, 16:], atol=1e-6)
    assert not np.allclose(removed[1], before[0][1], atol=1e-6)
    assert np.array_equal(adapter.embed(SENTENCES[:1])[0], before[0])


def gate_up_by_hand(model, kind: str, x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A gated MLP's gate and up projections of its input ``x``, from the block's weights
    (Phi-3 fuses both into gate_up_proj: its first half is the gate)."""
    mlp = model.layers[layer].mlp
    if kind == "phi3":
        return (x @ mlp.gate_up_proj.weight.T).chunk(2, dim=-1)
    return x @ mlp.gate_proj.weight.T, x @ mlp.up_proj.weight.T


@pytest.mark.parametrize("kind", ["llama", "qwen2", "phi3"])
def test_a_gated_mlp_gives_its_gate_and_up_projections(models, kind):
    """GLUScope's view of a neuron: gate and up read at the words' last sub-tokens equal
    x W_gate and x W_up computed from the block's weights, and act(gate) x up is the
    stored mlp value. BERT's and GPT-2's MLPs are not gated: None."""
    from transformers.activations import ACT2FN

    adapter = TransformersAdapter(checkpoint=str(models[kind]), device="cpu", site="mlp")
    parts = adapter.glu_parts(SENTENCES)
    values = adapter.embed(SENTENCES)
    model, act = adapter.model, ACT2FN[adapter.model.config.hidden_act]
    for sentence, (gate, up), value in zip(SENTENCES, parts, values):
        enc = adapter.tokenizer([sentence], is_split_into_words=True, return_tensors="pt")
        last = [max(p for p, w in enumerate(enc.word_ids(0)) if w == k) for k in range(len(sentence))]
        seen: list[torch.Tensor] = []
        handles = [block.mlp.register_forward_pre_hook(lambda mod, args: seen.append(args[0])) for block in model.layers]
        with torch.inference_mode():
            model(**{k: v for k, v in enc.items() if k in adapter.tokenizer.model_input_names})
            for h in handles:
                h.remove()
            for layer in range(2):
                g, u = gate_up_by_hand(model, kind, seen[layer][0], layer)
                np.testing.assert_allclose(gate[layer], g[last].numpy(), rtol=1e-4, atol=1e-5)
                np.testing.assert_allclose(up[layer], u[last].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(act(torch.from_numpy(gate)).numpy() * up, value, rtol=1e-4, atol=1e-6)
        assert (gate > 0).any() and (gate < 0).any() and (up > 0).any() and (up < 0).any()  # all four cases occur
    for plain in ("bert", "gpt2"):
        assert TransformersAdapter(checkpoint=str(models[plain]), device="cpu", site="mlp").glu_parts(SENTENCES) is None


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_output_tokens_are_the_output_weights_times_the_unembedding(models, kind):
    """A decoder's mlp neuron promotes and suppresses the tokens of ``W_U @ w_out``, written
    out here from the checkpoint's own LM head and MLP output projection (GPT-2's Conv1D
    stores it input-first, Llama's Linear output-first); encoders and other sites: None."""
    from transformers import AutoModelForCausalLM

    adapter = TransformersAdapter(checkpoint=str(models[kind]), device="cpu", site="mlp")
    found = adapter.output_tokens([("mlp1", 3), ("mlp2", 0)], k=4)
    lm = AutoModelForCausalLM.from_pretrained(models[kind])
    for (layer, unit), got in zip([(0, 3), (1, 0)], found):
        if kind == "gpt2":
            w_out = lm.transformer.h[layer].mlp.c_proj.weight[unit]
        else:
            w_out = lm.model.layers[layer].mlp.down_proj.weight[:, unit]
        effect = (lm.get_output_embeddings().weight @ w_out).detach().double()
        order = torch.argsort(effect, descending=True, stable=True)
        assert [t for t, _ in got["promoted"]] == [adapter.tokenizer.decode([int(i)]) for i in order[:4]]
        assert [t for t, _ in got["suppressed"]] == [adapter.tokenizer.decode([int(i)]) for i in order.flip(0)[:4]]
        np.testing.assert_allclose([v for _, v in got["promoted"]], effect[order[:4]].numpy(), rtol=1e-5)
        assert got["promoted"][0][1] > 0 > got["suppressed"][0][1]
        assert sum(got["histogram"]["tokens"]) == effect.numel() and len(got["histogram"]["centres"]) == 40
    with pytest.raises(NeuroscopeError, match="no mlp neuron mlp3:0"):
        adapter.output_tokens([("mlp3", 0)])
    assert TransformersAdapter(checkpoint=str(models["bert"]), device="cpu", site="mlp").output_tokens(
        [("mlp1", 0)]) is None
    assert TransformersAdapter(checkpoint=str(models[kind]), device="cpu").output_tokens([("1", 0)]) is None


def test_the_explorer_shows_a_gated_neurons_gate_and_up_signs(models, tmp_path, data_dir, cache_dir, capsys):
    """`neurons --glu` on a Llama `--site mlp` run: every top word with GLUScope's case,
    act(gate) x up equal to the stored value; a site the run did not read is refused."""
    import re

    from transformers.activations import ACT2FN

    import neuroscope as ns
    from neuroscope.cli import main

    out = tmp_path / "llama-mlp"
    assert main(["run", "--model", f"hf:{models['llama']}", "--task", "pos", "--site", "mlp", "--data-dir",
                 str(data_dir), "--max-sentences", "60,20,20", "--seeds", "1", "--l1", "0", "--l2", "0",
                 "--no-control", "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["neurons", str(out), "-k", "2", "--words", "3", "--glu"]) == 0
    shown = capsys.readouterr().out
    assert "gate and up signs" in shown and len(re.findall(r"gate[+-] up[+-]", shown)) == 6, shown
    run = ns.open(out)
    top = run.top_neurons(k=1)[0]
    words = run.neuron(top.layer, top.unit, site="mlp").top_words(4, glu=True)
    act = ACT2FN[run.model().model.config.hidden_act]
    for w in words:
        assert w.glu_case == f"gate{'+' if w.gate > 0 else '-'} up{'+' if w.up > 0 else '-'}"
        assert float(act(torch.tensor(w.gate))) * w.up == pytest.approx(w.value, rel=1e-3, abs=1e-5)
        assert set(w.to_dict()) >= {"gate", "up", "glu_case"}
    assert "gate" not in run.neuron(top).top_words(1)[0].to_dict()
    assert main(["show", str(out), "--sentence", "The old man", "--neurons", "mlp1:3", "--site", "hidden"]) == 2
    assert "read the mlp site" in capsys.readouterr().err
    # the dashboards: the tokens each neuron's output weights promote and suppress, as the model gives them
    assert main(["neurons", str(out), "-k", "2", "--words", "0", "--dashboard"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("promoted tokens (output weights x unembedding)") == 2 and shown.count("most correlated") == 2
    board = run.dashboards([top])[0]
    expected = run.model().output_tokens([(run.index.layer_names[top.layer], top.unit)])[0]
    assert board["output"] == expected and board["name"] == f"mlp{top.layer + 1}:{top.unit}"
    assert len(board["quantiles"]) == 10 and 0 <= board["active_share"] <= 1
    html = (out / "report.html").read_text()
    assert html.count("output weights x unembedding, promotes:") == html.count("<details class='dashboard'>") > 0
    # Neuronpedia's feature records carry them as pos_str / neg_str and the logits histogram
    from test_python_api import neuronpedia_records

    export = tmp_path / "np"
    run.export("neuronpedia", export, features="top")
    features = [f for f in neuronpedia_records(next(export.iterdir()))["features"]
                if f["sourceSetName"] == "neuroscope-mlp"]
    assert len(features) == round(0.2 * run.index.n_neurons)
    vocab = sum(expected["histogram"]["tokens"])
    for f in features:
        assert len(f["pos_str"]) == len(f["neg_str"]) == 10 and f["pos_values"][0] > f["neg_values"][0]
        assert sum(f["logits_hist_data_bar_heights"]) == vocab and len(f["logits_hist_data_bar_values"]) == 40
    mine = next(f for f in features if f["layer"].startswith(f"{top.layer}-") and f["index"] == str(top.unit))
    assert mine["pos_str"] == [t for t, _ in expected["promoted"]]


@pytest.mark.parametrize("site", ["mlp", "attn"])
def test_transformer_elmo_reads_its_feed_forward_and_attention_sites(site):
    """Transformer-ELMo's archive has feed-forward sub-layers: `mlp` is relu(w_1(norm(x)))
    of each layer, `attn` its heads' outputs, forward and backward stack side by side,
    recomputed from the fixture archive's weights; the causal hook zeroes exactly the
    chosen units (one in each stack's half), changes the layer above and leaves no trace."""
    from pathlib import Path

    from neuroscope_plugins.elmo_chars import batch_char_ids
    from neuroscope_plugins.telmo_adapter import telmo_model

    adapter = telmo_model(location=str(Path(__file__).parent / "reference" / "fixtures" / "telmo" / "model.tar.gz"),
                          device="cpu", site=site)
    width = adapter.neuron_index.hidden_size
    assert adapter.neuron_index.layer_names == (f"{site}1", f"{site}2", f"{site}3") and adapter.identity()["site"] == site
    got = adapter.embed(SENTENCES)
    model, inputs = adapter.model, {}
    stacks = (model.forward_stack, model.backward_stack)
    handles = [layer.register_forward_pre_hook(lambda mod, args, key=(side, i): inputs.__setitem__(key, args))
               for side, stack in enumerate(stacks) for i, layer in enumerate(stack.layers)]
    ids, mask = batch_char_ids(SENTENCES)
    with torch.inference_mode():
        model(torch.from_numpy(ids), torch.from_numpy(mask))
        for h in handles:
            h.remove()
        for i in range(3):
            halves = []
            for side, stack in enumerate(stacks):
                (x, m), block = inputs[side, i], stack.layers[i]
                if site == "mlp":
                    x = x + block.self_attn(block.norms[0](x), m)
                    halves.append(torch.relu(block.norms[1](x) @ block.w_1.weight.T + block.w_1.bias))
                    continue
                att, y = block.self_attn, block.norms[0](x)
                q, k, v = (lin(y).view(len(y), -1, att.heads, att.d_k).transpose(1, 2) for lin in att.linears[:3])
                scores = (q @ k.transpose(-2, -1) / att.d_k ** 0.5).masked_fill(~m.unsqueeze(1), torch.finfo().min)
                halves.append((scores.softmax(-1) @ v).transpose(1, 2).reshape(len(y), -1, width // 2))
            expected = torch.cat(halves, dim=-1).numpy()
            for b, sentence in enumerate(SENTENCES):
                np.testing.assert_allclose(got[b][i], expected[b, 1:len(sentence) + 1], rtol=1e-5, atol=1e-6)
    chosen = [1, width // 2 + 5]  # one unit of the forward stack, one of the backward
    masks = np.zeros((2, adapter.neuron_index.n_neurons), dtype=bool)
    masks[1, chosen] = True
    with adapter.intervene(Ablation(masks, objective=False)):
        conditions = adapter.embed(SENTENCES)
    for before, untouched, removed in zip(got, conditions[:2], conditions[2:]):
        assert np.array_equal(untouched, before) and np.all(removed[0][:, chosen] == 0)
        assert np.array_equal(np.delete(removed[0], chosen, axis=1), np.delete(before[0], chosen, axis=1))
        assert not np.allclose(removed[1], before[1], atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(got, adapter.embed(SENTENCES)))
