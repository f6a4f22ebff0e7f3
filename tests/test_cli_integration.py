"""The whole pipeline through the CLI, on the real MiniLM model and real corpora (small slices)."""

import json
import os

import numpy as np
import pytest

from neuroscope.cli import main


@pytest.fixture(scope="module")
def pos_run(data_dir, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "minilm-pos"
    code = main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "2",
                 "--max-sentences", "1500,250,250", "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"])
    assert code == 0
    return out


def test_run_directory_has_every_output(pos_run):
    for name in ("config.json", "manifest.json", "results.json", "tables.md", "layers.png", "steps/data.json",
                 "steps/seed-0.json", "steps/seed-1-probe.npz"):
        assert (pos_run / name).is_file(), name
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
    assert "| Top 20% |" in tables and "| Bottom 20% |" in tables and "(paper Table 1)" in tables
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
        assert sum(seed["top_layer_distribution"]) == round(0.2 * 2688)


def test_same_seed_gives_identical_ranking(pos_run, data_dir, cache_dir, tmp_path):
    again = tmp_path / "again"
    code = main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "1500,250,250", "--out", str(again), "--cache-dir", str(cache_dir), "--quiet"])
    assert code == 0
    first = json.loads((pos_run / "steps" / "seed-0.json").read_text())
    second = json.loads((again / "steps" / "seed-0.json").read_text())
    assert first["ranking"]["order"] == second["ranking"]["order"]
    assert first["ablation"] == second["ablation"]
    a, b = np.load(pos_run / "steps" / "seed-0-probe.npz"), np.load(again / "steps" / "seed-0-probe.npz")
    assert np.array_equal(a["coef"], b["coef"])


def test_resume_reuses_finished_steps(pos_run, data_dir, cache_dir, capsys):
    results_before = (pos_run / "results.json").read_text()
    seed_mtime = os.stat(pos_run / "steps" / "seed-1.json").st_mtime_ns
    (pos_run / "results.json").unlink()
    args = ["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "2",
            "--max-sentences", "1500,250,250", "--out", str(pos_run), "--cache-dir", str(cache_dir)]
    assert main(args + ["--quiet"]) == 2  # an existing run needs --resume
    assert "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert "reusing finished step" in capsys.readouterr().out
    assert os.stat(pos_run / "steps" / "seed-1.json").st_mtime_ns == seed_mtime
    assert json.loads((pos_run / "results.json").read_text()) == json.loads(results_before)
    assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--seeds", "2",
                 "--max-sentences", "1500,250,250", "--out", str(pos_run), "--cache-dir", str(cache_dir),
                 "--fraction", "0.1", "--resume", "--quiet"]) == 2
    assert "different settings (fraction)" in capsys.readouterr().err


def test_report_rerenders_from_results(pos_run, capsys):
    (pos_run / "tables.md").unlink()
    (pos_run / "layers.png").unlink()
    assert main(["report", str(pos_run)]) == 0
    assert (pos_run / "tables.md").is_file() and (pos_run / "layers.png").is_file()


def test_chunking_on_real_slice(data_dir, cache_dir, tmp_path):
    out = tmp_path / "chunk"
    assert main(["run", "--model", "minilm", "--task", "chunk", "--data-dir", str(data_dir), "--seeds", "1",
                 "--max-sentences", "800,150,150", "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
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
                 "--epochs", "1", "--max-sentences", "40", "--out", str(out), "--cache-dir", str(cache_dir),
                 "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["neurons"] == 2688
