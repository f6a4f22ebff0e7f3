"""The schema of ``results.json``: the product users script against.

One table, :data:`SCHEMA`, says every field: its path, type, unit and
meaning. ``docs/results.md`` is generated from it (``python -m
neuroscope.results``) and a test keeps the two equal; :func:`validate`
checks a results file against it, so ``neuroscope report`` and ``compare``
refuse a truncated or foreign file with one line instead of a traceback.

Units: every accuracy, share, percentage and selectivity is in percent
(0-100); ``fraction`` is the setting M as given (0-1). Neuron ids are flat
integers, ``layer * hidden_size + unit`` with ``layers[0]`` the embedding
(token) layer (:class:`neuroscope.types.NeuronIndex`).

Path syntax: ``a.b`` a key, ``a[]`` every item of a list, ``a.*`` every
key of a mapping, ``a.{x,y}`` each of the keys x and y, ``a?`` a key that
results written by an earlier neuroscope lack.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from neuroscope.errors import RunDirectoryError
from neuroscope.rundir import read_json

RESULTS_SCHEMA_VERSION = 1
NEURON_ID_LAYOUT = "layer * hidden_size + unit; layer indexes `layers` (0: the embedding / token layer)"

NUM = (int, float)
OPT_DICT = (dict, type(None))
STAT = "mean, std over seeds and the per-seed values"


def mean_std(values: list[float]) -> dict[str, Any]:
    """A :data:`STAT`: mean and population std over seeds, and the per-seed values."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=0)), "values": [float(v) for v in arr]}

#: (path, type, unit, meaning); a type tuple allows several, None inside allows null
SCHEMA: list[tuple[str, Any, str, str]] = [
    ("schema_version", int, "", f"version of this layout ({RESULTS_SCHEMA_VERSION})"),
    ("model", str, "", "model name as given to --model"),
    ("task", str, "", "task name as given to --task"),
    ("neurons", int, "count", "neurons in the network: layers x hidden_size"),
    ("neuron_ids", str, "", "how a neuron id maps to (layer, unit): " + NEURON_ID_LAYOUT),
    ("layers", list, "", "layer names, embedding layer first"),
    ("hidden_size", int, "count", "neurons per layer"),
    ("lambdas.{l1,l2}", NUM, "", "elastic-net lambdas of every probe of the run"),
    ("lambdas.chosen_by", str, "", "search, fixed, or unregularised (no probe-based ranker)"),
    ("probe", str, "", "the probe type (--probe)"),
    ("rankers", list, "", "the rankers (--ranker); per_seed and summary are the first one's"),
    ("lambda_search", OPT_DICT, "", "the grid search (null with fixed lambdas)"),
    ("fraction", NUM, "fraction", "M, share of neurons kept by the ablations (0-1)"),
    ("deltas", list, "percent", "accuracy margins of the minimal sets"),
    ("seeds", list, "", "seeds of the run"),
    ("labels", list, "", "labels the probe learns (seen in train), sorted; class id = position"),
    ("data.*.{source,sha256}", str, "", "per split: where the sentences came from, checksum"),
    ("data.*.{sentences,tokens}", int, "count", "per split: size"),
    ("label_counts.*.*", int, "count", "per split and label: tokens"),
    ("unseen_label_rule", str, "", "error or exclude: dev/test tokens whose label is not in train"),
    ("majority_baseline.label", str, "", "most frequent train label"),
    ("majority_baseline.{dev,test}", NUM, "percent", "accuracy of always predicting it"),
    ("per_seed[].seed", int, "", "the seed"),
    ("per_seed[].train_accuracy", NUM, "percent", "oracle probe on train"),
    ("per_seed[].oracle_training?", OPT_DICT, "", "the oracle's training record: converged (its loss had stopped "
     "falling, docs/probe.md), epochs (or iterations) run, loss_curve; null if the probe keeps none; absent in "
     "runs written before it was added"),
    ("per_seed[].ablation.{dev,test}.{all,top,random,bottom}", NUM, "percent",
     "oracle probe keeping all neurons, or only the top / random / bottom M (paper Table 1)"),
    ("per_seed[].ranking.method", str, "", "the ranker"),
    ("per_seed[].ranking.order", list, "neuron ids", "every neuron, most important first"),
    ("per_seed[].curves.shares", list, "percent", "k: shares of the network kept or removed"),
    ("per_seed[].curves.keep_top", list, "percent", "test accuracy of the oracle keeping only the top k%"),
    ("per_seed[].curves.remove_top", list, "percent", "test accuracy removing the top k% (null at 100%)"),
    ("per_seed[].minimal.sizes", list, "count", "scan sizes tried, in order"),
    ("per_seed[].minimal.dev_accuracies", list, "percent", "dev accuracy of the probe retrained on each size"),
    ("per_seed[].minimal.oracle_dev", NUM, "percent", "oracle's dev accuracy"),
    ("per_seed[].minimal.sets[].delta", NUM, "percent", "the margin"),
    ("per_seed[].minimal.sets[].n_neurons", int, "count", "size of the minimal set (paper Table 2 Neu_t)"),
    ("per_seed[].minimal.sets[].share", NUM, "percent", "its share of the network"),
    ("per_seed[].minimal.sets[].neurons", list, "neuron ids", "the minimal set, sorted"),
    ("per_seed[].minimal.sets[].{dev_accuracy,test_accuracy}", NUM, "percent",
     "retrained probe on the set (Acc_t)"),
    ("per_seed[].control", OPT_DICT, "", "control task (null with --no-control)"),
    ("per_seed[].analyses.n_top", int, "count", "size of the analysed set (minimal set of the first delta)"),
    ("per_seed[].analyses.layer_distribution", list, "count", "its neurons per layer (paper Figure 1)"),
    ("per_seed[].analyses.neurons_per_label.*", int, "count", "top neurons of each label (paper Figures 2, 4)"),
    ("per_seed[].analyses.label_neurons.*", list, "neuron ids", "those neurons"),
    ("per_seed[].analyses.exclusivity.mean_labels_per_neuron", NUM, "count", "labels a neuron serves, mean"),
    ("per_seed[].analyses.exclusivity.exclusive_percent", NUM, "percent", "neurons serving one label (Figure 3)"),
    ("per_seed[].analyses.dominant_layer.*.layer", (str, type(None)), "", "layer holding most of the label's neurons"),
    ("per_seed[].analyses.dominant_layer.*.share", NUM, "percent", "share of the label's neurons there"),
    ("per_seed[].top_fraction_layer_distribution", list, "count", "top M neurons per layer"),
    ("summary.ablation.{dev,test}.{all,top,random,bottom}", dict, "percent", STAT + " (paper Table 1)"),
    ("summary.minimal.*.{n_neurons}", dict, "count", STAT + " (paper Tables 2, 3)"),
    ("summary.minimal.*.share", dict, "percent", STAT),
    ("summary.minimal.*.{dev,test}.{all,selected}", dict, "percent", STAT + ": Acc_a and Acc_t"),
    ("summary.selectivity", dict, "percent", "per split: selectivity Sel_a / Sel_t and control accuracies, " + STAT
     + " (paper Table 2; empty with --no-control)"),
    ("summary.layer_distribution.{mean,std}", list, "count", "minimal-set neurons per layer over seeds"),
    ("summary.top_fraction_layer_distribution.{mean,std}", list, "count", "top-M neurons per layer over seeds"),
    ("summary.neurons_per_label.*", dict, "count", STAT),
    ("summary.exclusivity.mean_labels_per_neuron", dict, "count", STAT),
    ("summary.exclusivity.exclusive_percent", dict, "percent", STAT),
    ("summary.dominant_layer.*.share", NUM, "percent", "seeds pooled: share of the label's neurons in its layer"),
    ("summary.train_accuracy", dict, "percent", STAT),
    ("summary.curves.{keep_top,remove_top}", list, "percent", "per share: " + STAT + " (null where undefined)"),
    ("per_ranker.*.per_seed", list, "", "per ranker: per-seed results laid out as per_seed above"),
    ("per_ranker.*.summary", dict, "", "per ranker: the summary laid out as summary above"),
    ("ranking_comparison.shares", list, "percent", "top-k% shares at which rankings are compared"),
    ("ranking_comparison.pairs[].{a,b}", str, "", "the two rankers"),
    ("ranking_comparison.pairs[].jaccard.*", dict, "percent", "Jaccard overlap of their top-k% sets: " + STAT),
    ("ranking_comparison.pairs[].spearman", dict, "", "Spearman's rho of the orderings: " + STAT),
    ("causal?", dict, "", "live-model ablation, only with --causal (docs/protocol.md, \"Causal ablation\")"),
    ("causal?.{mode,positions}", str, "", "zero or mean replacement; at the words' sub-tokens or at all positions"),
    ("causal?.objective", (str, type(None)), "", "the model's own objective measured, or null"),
    ("causal?.objective_unavailable", (str, type(None)), "", "why the objective is not measured, or null"),
    ("causal?.{fraction,seconds}", NUM, "", "share of neurons each condition removes (0-1); wall seconds of the step"),
    ("causal?.none.in_model", dict, "percent", "test accuracy on re-extracted, unablated activations: " + STAT),
    ("causal?.none.loss", (float, type(None)), "nats/token", "the objective with nothing removed"),
    ("causal?.per_ranker.*.*.removed", int, "count", "per ranker and condition (top, random, bottom): neurons removed"),
    ("causal?.per_ranker.*.*.{in_probe,in_model}", dict, "percent", "test accuracy with the set removed from the "
     "probe's input only / inside the model's forward pass: " + STAT),
    ("causal?.per_ranker.*.*.loss", OPT_DICT, "nats/token", "the objective with the set removed: " + STAT + " or null"),
]


def _walk(data: Any, parts: list[str], where: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield where, data
        return
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        key = head[:-2]
        for found_where, value in _walk(data, [key] if key else [], where):
            if not isinstance(value, list):
                raise RunDirectoryError(f"{found_where}: expected a list")
            for i, item in enumerate(value):
                yield from _walk(item, rest, f"{found_where}[{i}]")
        return
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{where or 'the file'}: expected a mapping")
    if head == "*":
        for key, value in data.items():
            yield from _walk(value, rest, f"{where}.{key}" if where else key)
        return
    keys = head[1:-1].split(",") if head.startswith("{") else [head]
    for key in keys:
        optional, key = key.endswith("?"), key.rstrip("?")
        if key not in data and optional:
            continue
        if key not in data:
            raise RunDirectoryError(f"{(where + '.') if where else ''}{key}: missing")
        yield from _walk(data[key], rest, f"{where}.{key}" if where else key)


def _split(path: str) -> list[str]:
    return [p for p in re.split(r"\.(?![^{]*\})", path) if p]


def validate(results: Any, source: str | Path = "results.json") -> None:
    """Raise RunDirectoryError naming the first field of ``results`` that is missing or of the wrong type."""
    if not isinstance(results, dict):
        raise RunDirectoryError(f"{source}: not a results file (expected a JSON object)")
    version = results.get("schema_version")
    if version != RESULTS_SCHEMA_VERSION:
        raise RunDirectoryError(f"{source}: results schema version {version!r}, expected {RESULTS_SCHEMA_VERSION}; "
                                "re-run, or use the neuroscope version that wrote it")
    for path, kind, _, _ in SCHEMA:
        try:
            for where, value in _walk(results, _split(path), ""):
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise RunDirectoryError(f"{where}: expected {_type_name(kind)}, found {type(value).__name__}")
        except RunDirectoryError as exc:
            raise RunDirectoryError(f"{source}: incomplete or damaged results ({exc}); re-run, or `neuroscope run "
                                    "--out RUN_DIR --resume` to finish it") from None


def load_results(run_dir: Path) -> dict[str, Any]:
    """``results.json`` of a finished run, validated."""
    path = Path(run_dir) / "results.json"
    if not Path(run_dir).is_dir():
        raise RunDirectoryError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir}: no results.json; is this a finished run directory? (an interrupted run "
                                "continues with `neuroscope run --out RUN_DIR --resume`)")
    results = read_json(path, "results file")
    validate(results, path)
    return results


def _type_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "integer", float: "number", str: "string", list: "list", dict: "object", type(None): "null"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def markdown_table() -> str:
    """The table of docs/results.md."""
    lines = ["| path | type | unit | meaning |", "|---|---|---|---|"]
    for path, kind, unit, meaning in SCHEMA:
        lines.append(f"| `{path}` | {_type_name(kind)} | {unit or '-'} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
