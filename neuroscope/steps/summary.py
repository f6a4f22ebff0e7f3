"""Step 10: the run's results (``results.json``, docs/results.md): every ranker's per-seed
records, their mean and standard deviation over seeds (the paper's tables report them),
and how the rankings agree."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from neuroscope.comparison import compare_rankings
from neuroscope.minimal import MinimalScan
from neuroscope.results import NEURON_ID_LAYOUT, RESULTS_SCHEMA_VERSION, mean_std
from neuroscope.screening import RULE
from neuroscope.search import LambdaSearch
from neuroscope.settings import RunConfig
from neuroscope.steps.data import majority_baseline
from neuroscope.steps.rotation import NOT_ROTATED
from neuroscope.steps.sparse import summarise_sparse
from neuroscope.types import NeuronIndex, TaskData


def summarise(config: RunConfig, index: NeuronIndex, task: TaskData, seeds: Sequence[dict[str, Any]]
              ) -> dict[str, Any]:
    """Mean and std over seeds of one ranker's per-seed results."""
    summary: dict[str, Any] = {"ablation": {}, "minimal": {}, "selectivity": {}}
    for split in ("dev", "test"):
        summary["ablation"][split] = {
            k: mean_std([s["ablation"][split][k] for s in seeds]) for k in ("all", "top", "random", "bottom")}
    for delta in config.deltas:
        sets = [MinimalScan.from_json(s["minimal"]).for_delta(delta) for s in seeds]
        summary["minimal"][str(delta)] = {
            "n_neurons": mean_std([m.n_neurons for m in sets]),
            "share": mean_std([m.share for m in sets]),
            "dev": {"all": mean_std([s["ablation"]["dev"]["all"] for s in seeds]),
                    "selected": mean_std([m.dev_accuracy for m in sets])},
            "test": {"all": mean_std([s["ablation"]["test"]["all"] for s in seeds]),
                     "selected": mean_std([m.test_accuracy for m in sets])},
        }
    if config.control:
        for split in ("dev", "test"):
            summary["selectivity"][split] = {
                k: mean_std([s["control"][split]["selectivity"][k] for s in seeds]) for k in ("all", "selected")}
            summary["selectivity"][split]["control"] = {
                k: mean_std([s["control"][split]["control"][k] for s in seeds]) for k in ("all", "selected")}
    dist = np.array([s["analyses"]["layer_distribution"] for s in seeds], dtype=np.float64)
    summary["layer_distribution"] = {"mean": dist.mean(axis=0).tolist(), "std": dist.std(axis=0).tolist()}
    top_dist = np.array([s["top_fraction_layer_distribution"] for s in seeds], dtype=np.float64)
    summary["top_fraction_layer_distribution"] = {"mean": top_dist.mean(axis=0).tolist(),
                                                  "std": top_dist.std(axis=0).tolist()}
    labels = list(task.labels)
    summary["neurons_per_label"] = {
        lab: mean_std([s["analyses"]["neurons_per_label"][lab] for s in seeds]) for lab in labels}
    summary["exclusivity"] = {
        "mean_labels_per_neuron": mean_std([s["analyses"]["exclusivity"]["mean_labels_per_neuron"] for s in seeds]),
        "exclusive_percent": mean_std([s["analyses"]["exclusivity"]["exclusive_percent"] for s in seeds]),
    }
    per_layer = np.array([[s["analyses"]["dominant_layer"][lab]["per_layer"] for lab in labels] for s in seeds],
                         dtype=np.float64).sum(axis=0)
    summary["dominant_layer"] = {
        lab: {"layer": index.layer_names[int(np.argmax(row))] if row.sum() else None,
              "share": float(100 * row.max() / row.sum()) if row.sum() else 0.0, "per_layer": row.tolist()}
        for lab, row in zip(labels, per_layer)}
    summary["train_accuracy"] = mean_std([s["train_accuracy"] for s in seeds])
    curves = [s["curves"] for s in seeds]
    summary["curves"] = {"shares": curves[0]["shares"]}
    for key in ("keep_top", "remove_top"):
        summary["curves"][key] = [None if any(c[key][i] is None for c in curves)
                                  else mean_std([c[key][i] for c in curves])
                                  for i in range(len(curves[0]["shares"]))]
    return summary


def results_record(config: RunConfig, index: NeuronIndex, task: TaskData, data: dict[str, Any],
                   per_seed: Sequence[dict[str, dict[str, Any]]], searched: LambdaSearch | None,
                   lambdas: tuple[float, float, str], sparse: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.json: ``per_seed`` holds each seed's per-ranker records; the first ranker's
    are also the top-level ``per_seed`` and ``summary`` (the paper's single ranking);
    ``sparse``: with --ksparse, the ceiling step's record."""
    per_ranker = {name: {"per_seed": [s[name] for s in per_seed],
                         "summary": summarise(config, index, task, [s[name] for s in per_seed])}
                  for name in config.rankers}
    first = per_ranker[config.rankers[0]]
    seeds, summary = first["per_seed"], first["summary"]
    screened = {}
    if config.screen != "off":  # runs without --screen keep the results.json they always had
        screened["screen"] = {"requested": config.screen, "screened": index.screened, "rule": RULE,
                              "network_neurons": index.full().n_neurons, "k": index.n_neurons,
                              "neurons": list(index.neurons) if index.screened else None}
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "model": config.model,
        "task": config.task,
        "neurons": index.n_neurons,
        "neuron_ids": NEURON_ID_LAYOUT,
        "site": config.site,
        "layers": list(index.layer_names),
        "hidden_size": index.hidden_size,
        "lambdas": {"l1": lambdas[0], "l2": lambdas[1], "chosen_by": lambdas[2]},
        "probe": config.probe,
        "rankers": list(config.rankers),
        "lambda_search": None if searched is None else searched.to_json(),
        "fraction": config.fraction,
        "deltas": list(config.deltas),
        "seeds": list(config.seeds),
        "labels": list(task.labels),
        "data": {name: {k: v for k, v in stats.items() if k != "label_counts"}
                 for name, stats in data["splits"].items()},
        "label_counts": {name: stats["label_counts"] for name, stats in data["splits"].items()},
        "unseen_label_rule": config.unseen_labels,
        "majority_baseline": majority_baseline(task),
        "per_seed": seeds,
        "summary": summary,
        "per_ranker": per_ranker,
        "ranking_comparison": compare_rankings({name: [s["ranking"]["order"] for s in r["per_seed"]]
                                                for name, r in per_ranker.items()}),
        **screened,
        **({"rotation": summarise_rotation(per_ranker)} if config.baseline == "rotation" else {}),
        **({"ksparse": summarise_sparse(per_ranker, sparse, config.baseline == "rotation")} if sparse else {}),
    }


def summarise_rotation(per_ranker: dict[str, Any]) -> dict[str, Any]:
    """results.json's ``rotation``: per ranker, Table 1 (mean and std over seeds) in the
    neuron basis and in the random basis, and the gap of the top M % on test (neurons minus
    directions); rankers without a rotated counterpart under ``not_rotated``."""
    out: dict[str, Any] = {"basis": "Haar-random orthonormal per layer, drawn from each seed", "per_ranker": {},
                           "not_rotated": {}}
    for name, record in per_ranker.items():
        seeds = record["per_seed"]
        if any(s.get("rotation") is None for s in seeds):
            out["not_rotated"][name] = NOT_ROTATED
            continue
        table = {basis: {split: {kind: mean_std([pick(s)[split][kind] for s in seeds])
                                 for kind in ("all", "top", "random", "bottom")} for split in ("dev", "test")}
                 for basis, pick in (("neuron", lambda s: s["ablation"]), ("rotated", lambda s: s["rotation"]["ablation"]))}
        table["gap"] = mean_std([s["ablation"]["test"]["top"] - s["rotation"]["ablation"]["test"]["top"] for s in seeds])
        out["per_ranker"][name] = table
    return out
