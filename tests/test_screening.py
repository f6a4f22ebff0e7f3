"""Screening (neuroscope.screening, docs/protocol.md "Screening"): how many neurons a run
keeps and which, refused settings, and a screened run through the whole protocol whose
stored columns are exactly the full store's at the kept neurons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decoders import save_random_bert
from neuroscope.errors import ValidationError
from neuroscope.screening import label_scores, parse_bytes, parse_screen, screen_neurons, screened_size


def test_screen_and_budget_settings_are_parsed_or_refused_in_one_line():
    assert [parse_screen(v) for v in ("off", "AUTO", "8192", "25%", "12.5 %")] == ["off", "auto", "8192", "25%",
                                                                                   "12.5%"]
    for bad in ("0", "-3", "100%", "0%", "many", "1e3"):
        with pytest.raises(ValidationError, match="--screen"):
            parse_screen(bad)
    assert parse_bytes("auto") is None and parse_bytes("500GB") == 500 * 10**9 and parse_bytes("2GiB") == 2 * 2**30
    with pytest.raises(ValidationError, match="--store-budget"):
        parse_bytes("lots")


def test_how_many_neurons_a_run_keeps():
    tokens, n = 1000, 400  # a full store of 800,000 bytes
    assert screened_size("off", n, tokens, 1) is None
    assert screened_size("auto", n, tokens, 800_000) is None  # fits: not screened
    assert screened_size("auto", n, tokens, 100_000) == 50  # as many columns as the budget holds
    assert screened_size("25%", n, tokens, 10**9) == 100 and screened_size("7", n, tokens, 10**9) == 7
    with pytest.raises(ValidationError, match="has 400 neurons"):
        screened_size("401", n, tokens, 10**9)
    with pytest.raises(ValidationError, match="exceed --store-budget"):
        screened_size("100", n, tokens, 100_000)
    with pytest.raises(ValidationError, match="cannot hold one neuron's column"):
        screened_size("auto", n, tokens, 1000)


def test_the_rule_is_its_documented_round_robin():
    """Per label the standardised one-vs-rest mean difference, written out here from the
    raw activations; the labels take turns, most frequent first, each adding its best
    neuron not yet kept. A label whose own neuron is its best gets it within the first
    round even when it is rare."""
    import torch

    from neuroscope.statistics import StatisticsAccumulator

    rng = np.random.default_rng(3)
    y = rng.choice(4, size=600, p=[0.55, 0.25, 0.15, 0.05])
    X = rng.normal(size=(600, 40))
    X[:, 7] += 6.0 * (y == 3)  # the rare label's own neuron
    X[:, 11] *= 5.0  # a wide neuron that says nothing
    acc = StatisticsAccumulator(40, ("a", "b", "c", "d"), k=1)
    acc.count_rows(torch.from_numpy(y))
    acc.add(torch.arange(600), torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y), slice(0, 40))
    stats = acc.result()
    values = X.astype(np.float32).astype(np.float16).astype(np.float64)  # what the accumulator was given, rounded
    expected_scores = []
    for c in range(4):
        inside, rest = values[y == c], values[y != c]
        expected_scores.append(np.abs(inside.mean(0) - rest.mean(0)) / np.sqrt((inside.var(0) + rest.var(0)) / 2 + 1e-12))
    np.testing.assert_allclose(label_scores(stats), np.array(expected_scores), rtol=1e-9)
    turns = np.argsort(-np.bincount(y), kind="stable")
    kept: list[int] = []
    while len(kept) < 13:
        for c in turns:
            best = next(j for j in np.argsort(-expected_scores[c], kind="stable") if j not in kept)
            kept.append(int(best))
            if len(kept) == 13:
                break
    assert screen_neurons(stats, 13).tolist() == sorted(kept)
    assert 7 in screen_neurons(stats, 4).tolist() and 11 not in screen_neurons(stats, 13).tolist()
    assert screen_neurons(stats, 40).tolist() == list(range(40))
    with pytest.raises(ValidationError):
        screen_neurons(stats, 41)


def test_a_screened_run_keeps_the_full_stores_columns_and_runs_the_protocol(tmp_path, data_dir, cache_dir, capsys):
    """A random BERT x POS slice with --screen 40% and --causal: 40 % of the neurons,
    ascending, in results.json, the report and the summary line; its store's columns equal
    the unscreened store's at those neurons; rankings are permutations of the kept
    neurons; the explorer names their layers and units; a too-small budget is refused
    before the model loads."""
    import neuroscope as ns
    from neuroscope.cli import main
    from neuroscope.store import ActivationSet

    model = save_random_bert(tmp_path / "bert")
    common = ["run", "--model", f"hf:{model}", "--task", "pos", "--data-dir", str(data_dir), "--max-sentences",
              "120,40,40", "--seeds", "1", "--l1", "0", "--l2", "0", "--cache-dir", str(cache_dir)]
    assert main(common + ["--out", str(tmp_path / "full"), "--quiet"]) == 0
    assert main(common + ["--screen", "40%", "--causal", "--no-control", "--out", str(tmp_path / "screened")]) == 0
    shown = capsys.readouterr().out
    assert "screen: 38 of 96 neurons kept by label-round-robin (--screen 40%)" in shown
    results = json.loads((tmp_path / "screened" / "results.json").read_text())
    screen = results["screen"]
    kept = np.asarray(screen["neurons"])
    assert (screen["k"], screen["network_neurons"], results["neurons"], screen["screened"]) == (38, 96, 38, True)
    assert len(kept) == 38 and np.all(np.diff(kept) > 0)
    assert sorted(results["per_seed"][0]["ranking"]["order"]) == list(range(38))
    assert "causal" in results and "38 neurons of 96" in (tmp_path / "screened" / "report.html").read_text()
    full_manifest = json.loads((tmp_path / "full" / "manifest.json").read_text())
    screened_manifest = json.loads((tmp_path / "screened" / "manifest.json").read_text())
    for split in ("train", "test"):
        full = ActivationSet(full_manifest["activations"][split]["path"])
        part = ActivationSet(screened_manifest["activations"][split]["path"])
        assert part.shape == (full.shape[0], 38) and part.index.neurons == tuple(kept)
        np.testing.assert_array_equal(np.asarray(part.array), np.asarray(full.array)[:, kept])
    run = ns.open(tmp_path / "screened")
    top = run.top_neurons(k=1)[0]
    assert top.layer * 32 + top.unit == kept[top.neuron]
    assert run.neuron(top.layer, top.unit).neuron == top.neuron
    outside = int(np.setdiff1d(np.arange(96), kept)[0])
    with pytest.raises(ValidationError, match="screened out of this run"):
        run.neuron(outside // 32, outside % 32)
    assert main(common + ["--screen", "90", "--store-budget", "1kB", "--out", str(tmp_path / "tiny")]) == 2
    assert "exceed --store-budget" in capsys.readouterr().err


def test_activations_kept_in_memory_give_the_disk_runs_numbers(tmp_path, data_dir, capsys):
    """--keep memory: the same results.json, byte for byte, as --keep disk (on the CPU),
    nothing written under the cache directory, and the explorer says in one line that
    the activations are gone; --keep memory that cannot fit is refused in one line."""
    from neuroscope.cli import main
    from neuroscope.steps import extraction
    from neuroscope.store import IN_MEMORY

    model = save_random_bert(tmp_path / "bert")
    common = ["run", "--model", f"hf:{model}", "--task", "pos", "--data-dir", str(data_dir), "--max-sentences",
              "100,30,30", "--seeds", "1", "--l1", "1e-4", "--l2", "0", "--scan-step", "0.1", "--quiet"]
    assert main(common + ["--keep", "disk", "--cache-dir", str(tmp_path / "disk-cache"), "--out",
                          str(tmp_path / "disk")]) == 0
    assert main(common + ["--keep", "memory", "--cache-dir", str(tmp_path / "memory-cache"), "--out",
                          str(tmp_path / "memory")]) == 0
    assert (tmp_path / "memory" / "results.json").read_bytes() == (tmp_path / "disk" / "results.json").read_bytes()
    assert not (tmp_path / "memory-cache").exists() and (tmp_path / "disk-cache" / "activations").is_dir()
    capsys.readouterr()
    assert main(["neurons", str(tmp_path / "memory"), "-k", "1"]) == 0  # this process still holds them
    IN_MEMORY.clear()  # as a later process finds it
    assert main(["neurons", str(tmp_path / "memory")]) == 2
    assert "kept its train activations in memory (--keep memory)" in capsys.readouterr().err
    original = extraction.memory_available
    extraction.memory_available = lambda: 1000
    try:
        assert main(common + ["--keep", "memory", "--out", str(tmp_path / "small")]) == 2
    finally:
        extraction.memory_available = original
    assert "--keep memory: the activations need" in capsys.readouterr().err
