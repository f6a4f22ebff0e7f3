"""The orchestrator: resolves names, plans model x task cells, runs the steps,
writes each run directory (DESIGN.md, layer 2). It knows steps, not models.

A run directory holds ``config.json`` (resolved settings), ``manifest.json``
(versions, plugins, data checksums, seeds, device), ``steps/`` (one file per
finished step, for ``--resume``), ``results.json``, ``tables.md`` and figures.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from neuroscope.errors import NeuroscopeError
from neuroscope.manifest import build_manifest
from neuroscope.model import AGGREGATIONS
from neuroscope.progress import Reporter
from neuroscope.registry import Registry
from neuroscope.report import render_report
from neuroscope.steps import (SeedResult, data_summary, extract, layer_distribution, load_model, load_task,
                              majority_baseline, run_seed)
from neuroscope.store import ActivationStore

log = logging.getLogger(__name__)

# Paper appendix A.2, Table 5 (BERT / XLNet on POS): the default until a lambda search chooses.
DEFAULT_L1 = 1e-3
DEFAULT_L2 = 1e-2


def default_cache_dir() -> Path:
    env = os.environ.get("NEUROSCOPE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neuroscope"


def default_data_dir() -> Path:
    env = os.environ.get("NEUROSCOPE_DATA")
    return Path(env) if env else default_cache_dir() / "data"


@attrs.frozen
class RunConfig:
    """The fully resolved settings of one model x task cell (written to config.json)."""

    model: str
    task: str
    data_dir: str
    seeds: tuple[int, ...] = (0, 1, 2)
    l1: float = DEFAULT_L1
    l2: float = DEFAULT_L2
    fraction: float = 0.2
    aggregation: str = "last"
    device: str = "auto"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 512
    extract_batch_size: int = 32
    probe: str = "elastic-net"
    ranker: str = "weight-mass"
    stride: int = 100
    unseen_labels: str = "error"
    max_sentences: tuple[int | None, int | None, int | None] = (None, None, None)
    cache_dir: str = ""

    def __attrs_post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise NeuroscopeError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}")
        if not 0 < self.fraction < 1:
            raise NeuroscopeError(f"--fraction must be in (0, 1), got {self.fraction}")
        if not self.seeds:
            raise NeuroscopeError("at least one seed is needed")
        if self.l1 < 0 or self.l2 < 0:
            raise NeuroscopeError("lambdas must be non-negative")

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["seeds"] = list(self.seeds)
        data["max_sentences"] = list(self.max_sentences)
        return data


def default_run_dir(root: Path, model: str, task: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}-{task}")
    return root / f"{dt.date.today().isoformat()}-{safe}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=0)), "values": [float(v) for v in arr]}


class Orchestrator:
    """Runs cells of the plan; one Registry, one activation store, one reporter."""

    def __init__(self, registry: Registry, reporter: Reporter, argv: list[str] | None = None):
        self.registry = registry
        self.reporter = reporter
        self.argv = list(sys.argv if argv is None else argv)

    def run(self, config: RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
        run_dir = Path(run_dir)
        steps_dir = run_dir / "steps"
        config_path = run_dir / "config.json"
        if run_dir.exists() and any(run_dir.iterdir()):
            if not resume:
                raise NeuroscopeError(f"{run_dir} already holds a run; pass --resume to continue it or --out elsewhere")
            if config_path.is_file():
                saved = json.loads(config_path.read_text(encoding="utf-8"))
                if saved != config.to_json():
                    diff = sorted(k for k in saved if saved.get(k) != config.to_json().get(k))
                    raise NeuroscopeError(f"{run_dir}: cannot resume with different settings ({', '.join(diff)})")
        steps_dir.mkdir(parents=True, exist_ok=True)
        _write_json(config_path, config.to_json())

        task = load_task(self.registry, config.task, Path(config.data_dir)).head(*config.max_sentences)
        data = data_summary(task)
        data_step = steps_dir / "data.json"
        if data_step.is_file():
            saved = json.loads(data_step.read_text(encoding="utf-8"))
            if {k: v["sha256"] for k, v in saved["splits"].items()} != {k: v["sha256"] for k, v in data["splits"].items()}:
                raise NeuroscopeError(f"{run_dir}: the data changed since this run started; start a new run")
        _write_json(data_step, data)
        for split, stats in data["splits"].items():
            if stats["unseen_labels"]:
                log.warning("%s: %d %s tokens carry labels unseen in train %s (rule: %s)", config.task,
                            sum(stats["unseen_labels"].values()), split, sorted(stats["unseen_labels"]),
                            config.unseen_labels)

        adapter = load_model(self.registry, config.model, config.device, config.aggregation,
                             config.extract_batch_size)
        index = adapter.neuron_index
        store = ActivationStore(Path(config.cache_dir) / "activations")
        acts = extract(store, adapter, task, self.reporter.task)
        activations = {name: {"path": str(a.path), "key": a.manifest["key"], "shape": list(a.array.shape),
                              "identity": a.manifest["identity"]} for name, a in acts.items()}

        probe_cls = self.registry.get("probes", config.probe).obj
        ranker = self.registry.get("rankers", config.ranker).obj
        seeds: list[SeedResult] = []
        for seed in config.seeds:
            seed_path = steps_dir / f"seed-{seed}.json"
            if seed_path.is_file():
                self.reporter.log(f"seed {seed}: reusing finished step {seed_path}")
                seeds.append(SeedResult.from_json(json.loads(seed_path.read_text(encoding="utf-8"))))
                continue
            probe = probe_cls(l1=config.l1, l2=config.l2, lr=config.lr, batch_size=config.batch_size,
                              epochs=config.epochs, seed=seed, device=config.device)
            total = config.epochs * acts["train"].n_tokens
            with self.reporter.task(f"probe seed {seed}", total) as advance:
                result, fitted = run_seed(probe, ranker, {"stride": config.stride}, acts, task, config.fraction,
                                          config.unseen_labels, advance)
            np.savez_compressed(steps_dir / f"seed-{seed}-probe.npz", coef=fitted.coef_,
                                intercept=fitted.intercept_, classes=fitted.classes_.astype(str))
            _write_json(seed_path, result.to_json())
            seeds.append(result)

        results = self._results(config, index, task, data, seeds)
        _write_json(run_dir / "results.json", results)
        manifest = build_manifest(self.registry, adapter.device_name(), list(config.seeds), data, activations,
                                  self.argv)
        manifest["store_root"] = str(store.root)
        _write_json(run_dir / "manifest.json", manifest)
        render_report(results, run_dir)
        return results

    def _results(self, config: RunConfig, index, task, data, seeds: list[SeedResult]) -> dict[str, Any]:
        per_seed = []
        for s in seeds:
            top = np.asarray(s.kept["top"])
            per_seed.append({"seed": s.seed, "train_accuracy": s.train_accuracy, "ablation": s.ablation,
                             "top_neurons": top.tolist(),
                             "top_layer_distribution": layer_distribution(top, index)})
        summary: dict[str, Any] = {"ablation": {}}
        for split in ("dev", "test"):
            summary["ablation"][split] = {
                k: _mean_std([s.ablation[split][k] for s in seeds]) for k in ("all", "top", "random", "bottom")
            }
        dist = np.array([p["top_layer_distribution"] for p in per_seed], dtype=np.float64)
        summary["top_layer_distribution"] = {"mean": dist.mean(axis=0).tolist(), "std": dist.std(axis=0).tolist()}
        summary["train_accuracy"] = _mean_std([s.train_accuracy for s in seeds])
        return {
            "model": config.model,
            "task": config.task,
            "neurons": index.n_neurons,
            "layers": list(index.layer_names),
            "hidden_size": index.hidden_size,
            "lambdas": {"l1": config.l1, "l2": config.l2},
            "fraction": config.fraction,
            "seeds": list(config.seeds),
            "labels": list(task.labels),
            "data": {name: {k: v for k, v in stats.items() if k != "label_counts"}
                     for name, stats in data["splits"].items()},
            "label_counts": {name: stats["label_counts"] for name, stats in data["splits"].items()},
            "unseen_label_rule": config.unseen_labels,
            "majority_baseline": majority_baseline(task),
            "per_seed": per_seed,
            "summary": summary,
        }
