"""The whole pipeline through the CLI, on the real MiniLM model and real corpora (small slices)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from neuroscope.cli import main


@pytest.fixture(scope="module")
def pos_run(data_dir, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "minilm-pos"
    code = main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "2",
                 "--max-sentences", "1000,250,250", "--grid", GRID, "--scan-step", SCAN, "--out", str(out),
                 "--cache-dir", str(cache_dir), "--quiet"])
    assert code == 0
    return out


GRID = "0,1e-3,1e-5"
SCAN = "0.02"  # the minimal-set scan in steps of 2 % of the network (the paper's 1 % takes twice as long)


@pytest.fixture(scope="module")
def chunk_run(data_dir, cache_dir, tmp_path_factory):
    """Chunking on a real slice without a control task: one run that two tests look at from
    two sides."""
    out = tmp_path_factory.mktemp("runs") / "minilm-chunk"
    assert main(["run", "--model", "minilm", "--task", "chunk", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "600,100,100", "--l1", "1e-3", "--l2", "0", "--no-control",
                 "--scan-step", "0.05", "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    return out


def test_run_directory_has_every_output(pos_run):
    for name in ("config.json", "manifest.json", "results.json", "tables.md", "report.html", "layers.png",
                 "neurons_per_label.png", "exclusivity.png", "label_layers.png", "lambda_grid.png", "minimal_scan.png",
                 "steps/data.json", "steps/lambda-search.json", "steps/seed-0.json", "steps/seed-1-probe.npz",
                 "steps/seed-0-weight-mass.json", "steps/seed-1-weight-mass-minimal.json",
                 "steps/seed-1-control.json", "steps/lambda-search-probe.npz",
                 "timings.json"):
        assert (pos_run / name).is_file(), name
    assert (pos_run / "steps" / "activations.json").is_file()
    timings = json.loads((pos_run / "timings.json").read_text())
    assert {"extraction", "lambda-search", "seed-0", "seed-1-weight-mass-minimal", "total"} <= set(timings)
    assert set(timings["units"]) == {"extract", "search", "seed-0", "seed-1", "finish"}
    assert timings["extraction"] == timings["units"]["extract"] > 0  # the extract unit's seconds
    assert timings["total"] == pytest.approx(sum(timings["units"].values()), abs=0.01)
    assert timings["units"]["search"] >= timings["lambda-search"] > 0
    assert timings["units"]["seed-1"] >= timings["seed-1-weight-mass-minimal"] > 0
    # seed 0's oracle is the search's winning probe (same lambdas, seed, settings), not a second training
    searched, oracle = np.load(pos_run / "steps" / "lambda-search-probe.npz"), np.load(pos_run / "steps" / "seed-0-probe.npz")
    assert np.array_equal(searched["coef"], oracle["coef"])
    assert not np.array_equal(oracle["coef"], np.load(pos_run / "steps" / "seed-1-probe.npz")["coef"])
    config = json.loads((pos_run / "config.json").read_text())
    assert config["model"] == "minilm" and config["seeds"] == [0, 1] and config["aggregation"] == "last"
    manifest = json.loads((pos_run / "manifest.json").read_text())
    assert manifest["versions"]["neuroscope"] and manifest["versions"]["torch"]
    assert {p["name"] for p in manifest["plugins"]} >= {"transformers_models", "ptb", "probes"}
    assert set(manifest["data"]["splits"]) == {"train", "dev", "test"}
    assert len(manifest["data"]["splits"]["test"]["sha256"]) == 64
    assert manifest["seeds"] == [0, 1] and manifest["device"]["requested"] == "cpu"
    assert manifest["activations"]["train"]["shape"][1] == 2688
    tables = (pos_run / "tables.md").read_text()
    assert "| Top 20% |" in tables and "| Bottom 20% |" in tables
    for table in ("Table 1", "Table 2", "Table 3", "Table 5", "Table 6", "Table 7"):
        assert f"(paper {table})" in tables
    assert (pos_run / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_beats_baseline_and_ablation_order(pos_run):
    results = json.loads((pos_run / "results.json").read_text())
    test = {k: v["mean"] for k, v in results["summary"]["ablation"]["test"].items()}
    majority = results["majority_baseline"]["test"]
    assert majority < 20
    assert test["all"] > 85.0 and test["all"] > majority + 60
    assert test["top"] > test["random"] + 2 > test["bottom"] + 2
    for seed in results["per_seed"]:
        dev = seed["ablation"]["dev"]
        assert dev["top"] > dev["bottom"] + 20
        assert sum(seed["top_fraction_layer_distribution"]) == round(0.2 * 2688)


def test_full_protocol_outcomes(pos_run):
    """What the paper's method predicts, on a real slice: regularised lambdas win the search,
    a small set of neurons is within delta of the oracle, and it is more selective."""
    results = json.loads((pos_run / "results.json").read_text())
    search = results["lambda_search"]
    assert len(search["points"]) == 9
    assert (results["lambdas"]["l1"], results["lambdas"]["l2"]) != (0.0, 0.0)
    # the default search is successive halving (--search auto): the best S among its finalists,
    # here every pair (a 9-pair grid is below MIN_FINALISTS), all fully trained
    assert search["method"] == "halving" and len(search["finalists"]) == 9
    assert json.loads((pos_run / "config.json").read_text())["search_method"] == "halving"
    assert all(p["epochs"] == 10 for p in search["points"])
    best = max(search["points"], key=lambda p: p["score"])
    assert (best["l1"], best["l2"]) == (results["lambdas"]["l1"], results["lambdas"]["l2"])
    summary = results["summary"]
    for delta in ("0.5", "2.0"):
        minimal = summary["minimal"][delta]
        assert minimal["share"]["mean"] < 50
        for seed in results["per_seed"]:
            found = next(s for s in seed["minimal"]["sets"] if str(s["delta"]) == delta)
            assert found["dev_accuracy"] >= seed["ablation"]["dev"]["all"] - float(delta)
    assert summary["minimal"]["2.0"]["n_neurons"]["mean"] <= summary["minimal"]["0.5"]["n_neurons"]["mean"]
    selectivity = summary["selectivity"]["test"]
    assert selectivity["selected"]["mean"] > selectivity["all"]["mean"]
    assert summary["selectivity"]["test"]["control"]["all"]["mean"] < summary["ablation"]["test"]["all"]["mean"]
    analyses = results["per_seed"][0]["analyses"]
    assert sum(analyses["layer_distribution"]) == analyses["n_top"]
    assert set(analyses["neurons_per_label"]) == set(results["labels"])
    assert analyses["exclusivity"]["mean_labels_per_neuron"] >= 1.0


def test_same_seed_gives_identical_ranking(data_dir, cache_dir, tmp_path):
    """Two runs with the same seed, data and settings: the same lambda search, probe, ranking,
    ablations and minimal sets, to the byte (on a smaller slice than ``pos_run``: the
    property does not depend on its size)."""
    runs = []
    for name in ("first", "again"):
        runs.append(tmp_path / name)
        assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                     "--max-sentences", "120,40,40", "--grid", "0,1e-3", "--no-control", "--out", str(runs[-1]),
                     "--cache-dir", str(cache_dir), "--quiet"]) == 0
    first, again = runs
    for step in ("lambda-search.json", "seed-0.json", "seed-0-weight-mass.json", "seed-0-weight-mass-minimal.json"):
        assert (first / "steps" / step).read_text() == (again / "steps" / step).read_text(), step
    a, b = np.load(first / "steps" / "seed-0-probe.npz"), np.load(again / "steps" / "seed-0-probe.npz")
    assert np.array_equal(a["coef"], b["coef"]) and np.array_equal(a["intercept"], b["intercept"])
    assert (first / "results.json").read_text() == (again / "results.json").read_text()


def test_resume_reuses_finished_steps(pos_run, data_dir, cache_dir, capsys):
    results_before = (pos_run / "results.json").read_text()
    seed_mtime = os.stat(pos_run / "steps" / "seed-1.json").st_mtime_ns
    (pos_run / "results.json").unlink()
    (pos_run / "steps" / "seed-1-control.json").unlink()  # as if interrupted during seed 1's control task
    args = ["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "2",
            "--max-sentences", "1000,250,250", "--grid", GRID, "--scan-step", SCAN, "--out", str(pos_run),
            "--cache-dir", str(cache_dir)]
    assert main(args + ["--quiet"]) == 2  # an existing run needs --resume
    assert "add --resume to continue it" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert "reusing finished step" in capsys.readouterr().out
    assert os.stat(pos_run / "steps" / "seed-1.json").st_mtime_ns == seed_mtime
    assert json.loads((pos_run / "results.json").read_text()) == json.loads(results_before)
    assert main(args + ["--fraction", "0.1", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings (fraction: 0.2 in the run, 0.1 now)" in err and f"--out {pos_run}-2" in err


def test_report_rerenders_from_results(pos_run, capsys):
    for name in ("tables.md", "layers.png", "report.html"):
        (pos_run / name).unlink()
    assert main(["report", str(pos_run)]) == 0
    for name in ("tables.md", "layers.png", "report.html"):
        assert (pos_run / name).is_file()


def _chromium(page, *args, fragment=""):
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (Debian package chromium; .ci/run installs it)")
        pytest.skip("chromium is not installed")
    profile = page.parent / ".chromium-profile"
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args,
                           page.as_uri() + fragment], capture_output=True, text=True, timeout=120).stdout


def render_in_chromium(page, fragment=""):
    """Open a page in headless Chromium and return the <body> tag after load."""
    import re

    return re.search(r"<body[^>]*>", _chromium(page, "--dump-dom", fragment=fragment)).group(0)


def test_report_top_neurons_section_renders_and_filters(pos_run, tmp_path):
    """The "Top neurons" section lists every label's top neurons with words and a histogram;
    its filter box (driven here by the page's #filter= link) hides the other rows. The
    screenshot of the section goes under docs/img/ when NEUROSCOPE_UPDATE_SCREENSHOTS is set."""
    import shutil
    from html import escape

    html = (pos_run / "report.html").read_text()
    labels = json.loads((pos_run / "results.json").read_text())["labels"]
    assert "id='top-neurons'" in html and html.count("<tr data-filter=") == 3 * len(labels)
    assert html.count("<svg") >= 3 * len(labels) and "<li class='hit'>" in html
    train = json.loads((pos_run / "results.json").read_text())["label_counts"]["train"]
    rare = [lab for lab in labels if train.get(lab, 0) < 100]
    assert rare and html.count("<details id='rare-labels'>") == 1  # rare labels folded away, after the others
    fold = html.index("<details id='rare-labels'>")
    row = {lab: html.index(f"<tr data-filter='{escape(lab)} ") for lab in labels}
    assert all(row[lab] > fold for lab in rare) and all(row[lab] < fold for lab in labels if lab not in rare)
    assert f"{escape(rare[0])} (rare)" in html  # flagged in the label table too
    assert "<div class='wide'><figure><img alt='neurons_per_label'" in html  # its 45 ticks at full width
    assert 'data-neuron-rows-shown="3"' in render_in_chromium(pos_run / "report.html", "#filter=DT")
    assert f'data-neuron-rows-shown="{3 * len(labels)}"' in render_in_chromium(pos_run / "report.html")
    shot = tmp_path / "top-neurons.png"
    _chromium(pos_run / "report.html", "--hide-scrollbars", "--window-size=1150,800", f"--screenshot={shot}",
              fragment="#filter=DT&only")
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000  # more than a blank page
    page = tmp_path / "report.png"
    _chromium(pos_run / "report.html", "--hide-scrollbars", "--window-size=1300,2600", f"--screenshot={page}")
    assert page.stat().st_size > 100_000
    if os.environ.get("NEUROSCOPE_UPDATE_SCREENSHOTS"):
        images = Path(__file__).resolve().parent.parent / "docs" / "img"
        shutil.copy(shot, images / "top-neurons.png")
        shutil.copy(page, images / "report.png")


def test_report_has_a_summary_captions_and_a_glossary(pos_run):
    html = (pos_run / "report.html").read_text()
    assert html.index("class='card'") < html.index("paper Table 1")
    for key in ("layers", "neurons_per_label", "exclusivity", "label_layers", "lambda_grid", "minimal_scan"):
        assert f"<b>{key}.png</b> " in html  # every figure captioned
    assert "Glossary" in html and "Neu_t" in html and "Sel_a / Sel_t" in html
    assert "class='sortable'" in html and "$DATA/pos/" in html
    assert "/shared/data/" not in html.split("id='top-neurons-section'")[0]  # no local paths in the tables


def test_report_html_renders_its_figures_offline(pos_run):
    html = (pos_run / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # no external assets
    body = render_in_chromium(pos_run / "report.html")
    assert 'data-figures="6"' in body and 'data-figures-rendered="6"' in body


def test_compare_puts_runs_side_by_side(pos_run, chunk_run, tmp_path):
    """Two tasks, one run with a control task and one without (their rows line up by name)."""
    out = tmp_path / "cmp"
    assert main(["compare", str(pos_run), str(chunk_run), "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    assert "(paper Table 1)" in md and "(paper Table 2)" in md
    assert "| POS |" in md and "| CHUNK |" in md
    assert (out / "compare_layers.png").is_file() and (out / "compare_labels_pos.png").is_file()
    body = render_in_chromium(out / "compare.html")
    assert 'data-figures-rendered="3"' in body


def test_mixed_precision_runs_end_to_end(data_dir, cache_dir, tmp_path):
    """--precision bfloat16 through the whole protocol (bfloat16 products are emulated, so
    slow, on CPUs without AVX512-BF16: a small slice)."""
    out = tmp_path / "bf16"
    assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "150,50,50", "--l1", "1e-4", "--l2", "0", "--precision", "bfloat16", "--no-control",
                 "--epochs", "3", "--scan-step", "0.1", "--deltas", "100", "--scan-block", "1", "--out", str(out),
                 "--cache-dir", str(cache_dir), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["precision"] == "bfloat16"
    results = json.loads((out / "results.json").read_text())
    test = {k: v["mean"] for k, v in results["summary"]["ablation"]["test"].items()}
    assert test["all"] > results["majority_baseline"]["test"] + 30 and test["top"] > test["bottom"]


def test_chunking_on_real_slice(chunk_run):
    results = json.loads((chunk_run / "results.json").read_text())
    test = {k: v["mean"] for k, v in results["summary"]["ablation"]["test"].items()}
    assert test["all"] > results["majority_baseline"]["test"] + 30
    assert test["top"] > test["bottom"]


def test_unknown_names_and_offline_models_fail_with_one_line(data_dir, capsys):
    assert main(["run", "--model", "minlm", "--task", "pos", "--data-dir", str(data_dir), "--quiet"]) == 2
    assert "did you mean 'minilm'" in capsys.readouterr().err
    assert main(["run", "--model", "minilm", "--task", "postag", "--data-dir", str(data_dir), "--quiet"]) == 2
    assert "unknown task 'postag'" in capsys.readouterr().err


def test_bert_without_network_says_pass_a_local_path(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["run", "--model", "bert", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "5", "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "c"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot download 'bert-base-cased'" in err and "pass a local path" in err


def test_hf_prefix_accepts_a_local_directory(minilm_dir, data_dir, cache_dir, tmp_path):
    out = tmp_path / "hf"
    assert main(["run", "--model", f"hf:{minilm_dir}", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                 "--epochs", "1", "--max-sentences", "40", "--l1", "0", "--l2", "0", "--deltas", "5", "--no-control",
                 "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["neurons"] == 2688


@pytest.mark.parametrize("task,n_labels", [("sem", 69), ("ccg-pmb", 294)])
def test_pmb_tasks_run_on_real_slices(task, n_labels, data_dir, cache_dir, tmp_path):
    out = tmp_path / task
    assert main(["run", "--model", "minilm", "--task", task, "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "1500,300,300", "--l1", "1e-4", "--l2", "0", "--deltas", "100", "--scan-block", "1",
                 "--scan-step", "0.05", "--no-control",  # Table 1 is what is checked: the minimal scan stops at once
                 "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["labels"]) <= n_labels
    test = {k: v["mean"] for k, v in results["summary"]["ablation"]["test"].items()}
    assert test["all"] > results["majority_baseline"]["test"] + 25
    assert test["top"] > test["bottom"]
    assert "dev" in results["label_counts"] and "test" in results["label_counts"]


ELMO_FIXTURES = Path(__file__).parent / "reference" / "fixtures"


@pytest.mark.parametrize("model,task,layers", [
    (f"elmo:{ELMO_FIXTURES / 'elmo'}", "pos", 3),
    (f"telmo:{ELMO_FIXTURES / 'telmo' / 'model.tar.gz'}", "sem", 4),
])
def test_elmo_family_runs_end_to_end(model, task, layers, data_dir, cache_dir, tmp_path):
    """The real checkpoint formats (random weights) through the same store, probe and protocol."""
    out = tmp_path / "run"
    assert main(["run", "--model", model, "--task", task, "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "400,100,100", "--grid", "0,1e-3", "--out", str(out), "--cache-dir",
                 str(cache_dir), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["neurons"] == layers * 32 and results["layers"][0] == "token"
    test = {k: v["mean"] for k, v in results["summary"]["ablation"]["test"].items()}
    assert test["all"] > results["majority_baseline"]["test"]  # random weights still carry word identity
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["activations"]["train"]["identity"]["adapter"] == model.split(":")[0]


def test_elmo_without_network_fails_with_one_line(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEUROSCOPE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "registry.toml").write_text(
        '[models.elmo]\nadapter = "elmo"\noptions = "http://127.0.0.1:9/elmo_options.json"\n'
        'weights = "http://127.0.0.1:9/elmo_weights.hdf5"\n\n'
        '[models.telmo]\nadapter = "telmo"\narchive = "http://127.0.0.1:9/transformer-elmo.tar.gz"\n')
    for model in ("elmo", "telmo"):
        assert main(["run", "--model", model, "--task", "sem", "--data-dir", str(data_dir), "--out",
                     str(tmp_path / model), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot download" in err
        assert {"elmo": "--model elmo:DIR", "telmo": "--model telmo:PATH"}[model] in err  # what to do instead
        assert "http://127.0.0.1:9/" in err  # and where the files are published
    assert main(["run", "--model", f"elmo:{tmp_path / 'nothing'}", "--task", "sem", "--data-dir", str(data_dir),
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert f"{tmp_path / 'nothing'}: no such file or directory" in capsys.readouterr().err  # said at planning


def test_plain_elmo_and_telmo_names_with_local_checkpoints(data_dir, cache_dir, tmp_path, monkeypatch):
    """`neuroscope run --model elmo --task sem` (and telmo) with the checkpoints named in a local registry.toml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "registry.toml").write_text(
        f'[models.elmo]\nadapter = "elmo"\noptions = "{ELMO_FIXTURES / "elmo" / "options.json"}"\n'
        f'weights = "{ELMO_FIXTURES / "elmo" / "weights.hdf5"}"\n\n'
        f'[models.telmo]\nadapter = "telmo"\narchive = "{ELMO_FIXTURES / "telmo" / "model.tar.gz"}"\n')
    for model in ("elmo", "telmo"):
        out = tmp_path / model
        assert main(["run", "--model", model, "--task", "sem", "--data-dir", str(data_dir), "--seeds", "1",
                     "--max-sentences", "300,80,80", "--l1", "1e-4", "--l2", "0", "--deltas", "5", "--no-control",
                     "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["model"] == model and results["layers"][0] == "token"


def test_every_ranker_on_minilm_pos(data_dir, cache_dir, tmp_path):
    """Issue 12 on the real model: each ranker's top 20 % beats its bottom 20 %, the paper's and
    probeless' beat a random 20 %; the random ranker's "top" is another random set; the
    rankings are compared."""
    (tmp_path / "registry.toml").write_text("[rankers.gaussian]\nmax_neurons = 20\nfit_tokens = 4000\ncandidates = 64\nscore_tokens = 1000\n")
    out = tmp_path / "rankers"
    assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "1000,250,250", "--l1", "1e-3", "--l2", "0", "--no-control", "--out", str(out),
                 "--cache-dir", str(cache_dir), "--scan-step", "0.1", "--scan-block", "1", "--deltas", "100", "--quiet",
                 "--ranker", "weight-mass,probeless,iou,gaussian,random"]) == 0
    results = json.loads((out / "results.json").read_text())
    test = {name: {k: v["mean"] for k, v in r["summary"]["ablation"]["test"].items()}
            for name, r in results["per_ranker"].items()}
    # on this slice (one seed, fixed lambdas) the single random 20 % draw scores 80.0; iou's and
    # gaussian's top 20 % beat it on the full default run (docs/ranking.md), not reliably here
    for name in ("weight-mass", "probeless", "iou", "gaussian"):
        assert test[name]["top"] > test[name]["bottom"] + 10, (name, test[name])
    for name in ("weight-mass", "probeless"):
        assert test[name]["top"] > test[name]["random"], (name, test[name])
    assert abs(test["random"]["top"] - test["random"]["random"]) < 8, test["random"]
    curves = results["per_ranker"]["probeless"]["summary"]["curves"]
    assert curves["keep_top"][-1]["mean"] == pytest.approx(test["probeless"]["all"])
    assert len(results["ranking_comparison"]["pairs"]) == 10
    assert (out / "rankers.png").is_file()


def test_compare_takes_two_runs_of_one_model_and_task_and_says_what_differs(pos_run, tmp_path, data_dir, cache_dir):
    other = tmp_path / "mean"
    assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "200,50,50", "--aggregation", "mean", "--l1", "1e-3", "--l2", "0",
                 "--no-control", "--scan-step", "0.05", "--out", str(other), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    out = tmp_path / "cmp"
    assert main(["compare", str(pos_run), str(other), "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("|  | minilm"))
    assert "aggregation=last" in header and "aggregation=mean" in header
    assert "Warning: the runs differ in protocol settings" in md
    assert "seeds: 0,1 vs 0" in md and "max_sentences: 1000,250,250 vs 200,50,50" in md
    assert "pos train tokens:" in md
