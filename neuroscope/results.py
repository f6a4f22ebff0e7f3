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

import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs

import numpy as np

from neuroscope.errors import RunDirectoryError
from neuroscope.rundir import read_json

RESULTS_SCHEMA_VERSION = 1
NEURON_ID_LAYOUT = "layer * hidden_size + unit; layer indexes `layers` (0: the embedding / token layer)"

NUM = (int, float)
OPT_DICT = (dict, type(None))
STAT = "mean, std over seeds and the per-seed values"


@attrs.frozen
class Kind:
    """A value's shape beyond its JSON type: ``check`` returns what is wrong with it, or None."""

    name: str
    check: Callable[[Any], "str | None"]


def _number_problem(value: Any) -> str | None:
    if not isinstance(value, NUM) or isinstance(value, bool):
        return f"expected a number, found {type(value).__name__}"
    return None if math.isfinite(value) else f"expected a finite number, found {value}"


def _stat_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected a {{mean, std, values}} object, found {type(value).__name__}"
    for key in ("mean", "std", "values"):
        if key not in value:
            return f"{key} missing (expected a {{mean, std, values}} object)"
    for key in ("mean", "std"):
        if (problem := _number_problem(value[key])) is not None:
            return f"{key}: {problem}"
    if value["std"] < 0:
        return f"std: negative ({value['std']})"
    values = value["values"]
    if not isinstance(values, list) or not values:
        return "values: expected a non-empty list of numbers"
    bad = next((p for p in map(_number_problem, values) if p is not None), None)
    if bad:
        return f"values: {bad}"
    arr = np.asarray(values, dtype=np.float64)
    if not (math.isclose(value["mean"], float(arr.mean()), rel_tol=1e-6, abs_tol=1e-9)
            and math.isclose(value["std"], float(arr.std(ddof=0)), rel_tol=1e-6, abs_tol=1e-9)):
        return f"mean {value['mean']} and std {value['std']} are not those of the values {values}"
    return None


def _list_of(item: Callable[[Any], "str | None"]) -> Callable[[Any], "str | None"]:
    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"expected a list, found {type(value).__name__}"
        return next((f"[{i}]: {p}" for i, p in enumerate(map(item, value)) if p is not None), None)
    return check


def _optional(check: Callable[[Any], "str | None"]) -> Callable[[Any], "str | None"]:
    return lambda value: None if value is None else check(value)


#: a mean over seeds with its std and the per-seed values (:func:`mean_std`)
STAT_KIND = Kind("{mean, std, values}", _stat_problem)
#: a list of those, null where undefined (a curve's point at 100 % removed)
STAT_LIST = Kind("list of {mean, std, values} or null", _list_of(_optional(_stat_problem)))
def _typed(kind: type) -> Callable[[Any], "str | None"]:
    return lambda v: None if isinstance(v, kind) and not isinstance(v, bool) else \
        f"expected {_type_name(kind)}, found {type(v).__name__}"


def _training_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected an object, found {type(value).__name__}"
    if not isinstance(value.get("converged"), bool) or not isinstance(value.get("epochs"), int):
        return "expected converged (true or false) and epochs (an integer)"
    return None


STR_LIST = Kind("list of strings", _list_of(_typed(str)))
INT_LIST = Kind("list of integers", _list_of(_typed(int)))
OPT_TRAINING = Kind("{converged, epochs, ...} or null", _optional(_training_problem))
OPT_STAT = Kind("{mean, std, values} or null", _optional(_stat_problem))
NUMBER = Kind("finite number", _number_problem)
NUMBER_LIST = Kind("list of finite numbers", _list_of(_number_problem))
OPT_NUMBER_LIST = Kind("list of finite numbers or null", _list_of(_optional(_number_problem)))
BOOL = Kind("true or false", lambda value: None if isinstance(value, bool) else f"expected true or false, found "
                                                                               f"{type(value).__name__}")
OPT_INT_LIST = Kind("list of integers or null", _optional(_list_of(_typed(int))))


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
    ("site?", str, "", "where the units were read (--site): hidden (the hidden states), mlp (the MLP neurons "
                       "after the nonlinearity, layers mlp1 ...) or attn (the heads' outputs, layers attn1 ...); "
                       "absent in runs before sites: hidden"),
    ("layers", STR_LIST, "", "layer names: the hidden site's embedding layer first (emb, 1, 2, ...), the mlp "
                             "site's mlp1, mlp2, ..., the attn site's attn1, attn2, ..."),
    ("hidden_size", int, "count", "neurons per layer (at the mlp site: the MLP's width)"),
    ("lambdas.{l1,l2}", NUM, "", "elastic-net lambdas of every probe of the run"),
    ("lambdas.chosen_by", str, "", "search, fixed, or unregularised (no probe-based ranker)"),
    ("probe", str, "", "the probe type (--probe)"),
    ("rankers", STR_LIST, "", "the rankers (--ranker); per_seed and summary are the first one's"),
    ("lambda_search", OPT_DICT, "", "the grid search (null with fixed lambdas)"),
    ("fraction", NUM, "fraction", "M, share of neurons kept by the ablations (0-1)"),
    ("deltas", NUMBER_LIST, "percent", "accuracy margins of the minimal sets"),
    ("seeds", INT_LIST, "", "seeds of the run"),
    ("labels", STR_LIST, "", "labels the probe learns (seen in train), sorted; class id = position"),
    ("data.{train,dev,test}.{source,sha256}", str, "", "per split: where the sentences came from, checksum"),
    ("data.{train,dev,test}.{sentences,tokens}", int, "count", "per split: size"),
    ("label_counts.*.*", int, "count", "per split and label: tokens"),
    ("unseen_label_rule", str, "", "error or exclude: dev/test tokens whose label is not in train"),
    ("majority_baseline.label", str, "", "most frequent train label"),
    ("majority_baseline.{dev,test}", NUM, "percent", "accuracy of always predicting it"),
    ("per_seed[].seed", int, "", "the seed"),
    ("per_seed[].train_accuracy", NUM, "percent", "oracle probe on train"),
    ("per_seed[].oracle_training?", OPT_TRAINING, "", "the oracle's training record: converged (its loss had stopped "
     "falling, docs/probe.md), epochs (or iterations) run, loss_curve; null if the probe keeps none; absent in "
     "runs written before it was added"),
    ("per_seed[].ablation.{dev,test}.{all,top,random,bottom}", NUMBER, "percent",
     "oracle probe keeping all neurons, or only the top / random / bottom M (paper Table 1)"),
    ("per_seed[].ranking.method", str, "", "the ranker"),
    ("per_seed[].ranking.order", INT_LIST, "neuron ids", "every neuron, most important first"),
    ("per_seed[].curves.shares", NUMBER_LIST, "percent", "k: shares of the network kept or removed"),
    ("per_seed[].curves.keep_top", NUMBER_LIST, "percent", "test accuracy of the oracle keeping only the top k%"),
    ("per_seed[].curves.remove_top", OPT_NUMBER_LIST, "percent", "test accuracy removing the top k% (null at 100%)"),
    ("per_seed[].minimal.sizes", INT_LIST, "count", "scan sizes tried, in order"),
    ("per_seed[].minimal.dev_accuracies", NUMBER_LIST, "percent", "dev accuracy of the probe retrained on each size"),
    ("per_seed[].minimal.oracle_dev", NUM, "percent", "oracle's dev accuracy"),
    ("per_seed[].minimal.start?", str, "", "with a warm-started scan (--scan-start): oracle or previous; absent "
                                           "for the paper's cold scan"),
    ("per_seed[].minimal.epochs?", int, "", "with a warm-started scan: the epochs each warm-started size was "
                                           "trained (--scan-epochs)"),
    ("per_seed[].minimal.sets[].delta", NUM, "percent", "the margin"),
    ("per_seed[].minimal.sets[].n_neurons", int, "count", "size of the minimal set (paper Table 2 Neu_t)"),
    ("per_seed[].minimal.sets[].share", NUM, "percent", "its share of the network"),
    ("per_seed[].minimal.sets[].neurons", INT_LIST, "neuron ids", "the minimal set, sorted"),
    ("per_seed[].minimal.sets[].{dev_accuracy,test_accuracy}", NUM, "percent",
     "retrained probe on the set (Acc_t)"),
    ("per_seed[].control", OPT_DICT, "", "control task (null with --no-control)"),
    ("per_seed[].analyses.n_top", int, "count", "size of the analysed set (minimal set of the first delta)"),
    ("per_seed[].analyses.layer_distribution", NUMBER_LIST, "count", "its neurons per layer (paper Figure 1)"),
    ("per_seed[].analyses.neurons_per_label.*", int, "count", "top neurons of each label (paper Figures 2, 4)"),
    ("per_seed[].analyses.label_neurons.*", INT_LIST, "neuron ids", "those neurons"),
    ("per_seed[].analyses.exclusivity.histogram?.*", int, "count", "neurons serving 1, 2, ... labels"),
    ("per_seed[].analyses.exclusivity.mean_labels_per_neuron", NUM, "count", "labels a neuron serves, mean"),
    ("per_seed[].analyses.exclusivity.exclusive_percent", NUM, "percent", "neurons serving one label (Figure 3)"),
    ("per_seed[].analyses.dominant_layer.*.layer", (str, type(None)), "", "layer holding most of the label's neurons"),
    ("per_seed[].analyses.dominant_layer.*.share", NUM, "percent", "share of the label's neurons there"),
    ("per_seed[].top_fraction_layer_distribution", NUMBER_LIST, "count", "top M neurons per layer"),
    ("summary.ablation.{dev,test}.{all,top,random,bottom}", STAT_KIND, "percent", STAT + " (paper Table 1)"),
    ("summary.minimal.*.{n_neurons}", STAT_KIND, "count", STAT + " (paper Tables 2, 3)"),
    ("summary.minimal.*.share", STAT_KIND, "percent", STAT),
    ("summary.minimal.*.{dev,test}.{all,selected}", STAT_KIND, "percent", STAT + ": Acc_a and Acc_t"),
    ("summary.selectivity", dict, "percent", "per split: selectivity Sel_a / Sel_t and control accuracies, " + STAT
     + " (paper Table 2; empty with --no-control)"),
    ("summary.selectivity.*.{all,selected}", STAT_KIND, "percent", "selectivity with all neurons / the minimal set"),
    ("summary.selectivity.*.control.{all,selected}", STAT_KIND, "percent", "the control task's accuracies"),
    ("summary.layer_distribution.{mean,std}", NUMBER_LIST, "count", "minimal-set neurons per layer over seeds"),
    ("summary.top_fraction_layer_distribution.{mean,std}", NUMBER_LIST, "count", "top-M neurons per layer over seeds"),
    ("summary.neurons_per_label.*", STAT_KIND, "count", STAT),
    ("summary.exclusivity.mean_labels_per_neuron", STAT_KIND, "count", STAT),
    ("summary.exclusivity.exclusive_percent", STAT_KIND, "percent", STAT),
    ("summary.dominant_layer.*.share", NUM, "percent", "seeds pooled: share of the label's neurons in its layer"),
    ("summary.train_accuracy", STAT_KIND, "percent", STAT),
    ("summary.curves.{keep_top,remove_top}", STAT_LIST, "percent", "per share: " + STAT + " (null where undefined)"),
    ("per_ranker.*.per_seed", list, "", "per ranker: per-seed results laid out as per_seed above"),
    ("per_ranker.*.summary", dict, "", "per ranker: the summary laid out as summary above"),
    ("ranking_comparison.shares", NUMBER_LIST, "percent", "top-k% shares at which rankings are compared"),
    ("ranking_comparison.pairs[].{a,b}", str, "", "the two rankers"),
    ("ranking_comparison.pairs[].jaccard.*", STAT_KIND, "percent", "Jaccard overlap of their top-k% sets: " + STAT),
    ("ranking_comparison.pairs[].spearman", STAT_KIND, "", "Spearman's rho of the orderings: " + STAT),
    ("screen?", dict, "", "only with --screen (docs/protocol.md, \"Screening\"): the run's neurons are some of the "
     "network's, chosen before anything was stored; neuron ids index screen.neurons"),
    ("screen?.{requested,rule}", str, "", "--screen as given (K, P%, auto); the rule that chose the neurons"),
    ("screen?.screened", BOOL, "", "whether the run was screened (--screen auto leaves a store that fits as it is)"),
    ("screen?.{network_neurons,k}", int, "count", "the network's neurons (layers x hidden_size); the run's"),
    ("screen?.neurons", OPT_INT_LIST, "network ids", "the kept neurons' layer * hidden_size + unit, ascending "
     "(neuron id j of the run is screen.neurons[j]); null when not screened"),
    ("per_seed[].rotation?", OPT_DICT, "", "only with --baseline rotation: this ranker's ablations and curves in the "
     "seed's random basis, laid out as ablation and curves above; null for a ranker that needs the model"),
    ("rotation?", dict, "", "only with --baseline rotation (docs/ranking.md, \"Rotation baseline\"): Table 1 in the "
     "neuron basis and in a random orthonormal basis of each layer"),
    ("rotation?.per_ranker.*.{neuron,rotated}.{dev,test}.{all,top,random,bottom}", STAT_KIND, "percent",
     "per ranker: the oracle keeping all / the top / a random / the bottom M % of neurons, or of directions: " + STAT),
    ("rotation?.per_ranker.*.gap", STAT_KIND, "", "per ranker: test accuracy keeping its top M % of neurons minus "
     "keeping its top M % of random directions (percentage points): " + STAT),
    ("rotation?.not_rotated.*", str, "", "rankers without a rotated counterpart, and why"),
    ("per_seed[].ksparse?", dict, "", "only with --ksparse (docs/ranking.md, \"k-sparse probing\"): this ranking's "
     "k-sparse curves (also under per_seed[].rotation.ksparse with --baseline rotation, in the random basis)"),
    ("per_seed[].ksparse?.ks", INT_LIST, "count", "the probes' sizes k"),
    ("per_seed[].ksparse?.label_orders", str, "", "per label: each label's own best neurons; overall: the ranking's "
     "order for every label (a ranker without per-label scores)"),
    ("per_seed[].ksparse?.per_label.*.{f1,accuracy}", NUMBER_LIST, "percent", "per label taking part and k: test F1 "
     "of the label and accuracy of its one-vs-rest probe on its k best neurons"),
    ("per_seed[].ksparse?.per_label.*.best_neuron", int, "neuron id", "the label's best neuron (k = 1)"),
    ("per_seed[].ksparse?.{mean_f1,mean_accuracy}", NUMBER_LIST, "percent", "per k: the mean over the labels"),
    ("per_seed[].ksparse?.unconverged", int, "count", "probes whose Newton steps stopped before the tolerance"),
    ("ksparse?", dict, "", "only with --ksparse: the k-sparse probes' sample and labels, the ceiling, and every "
     "ranker's curves over seeds"),
    ("ksparse?.{train_rows,min_positives}", int, "count", "train words the probes fit on (a sample drawn per seed); "
     "the fewest words of a label (and of the rest) in it for the label to take part"),
    ("ksparse?.l2", NUM, "", "the probes' L2 penalty (on standardised neurons)"),
    ("ksparse?.labels", STR_LIST, "", "the labels taking part in the first seed's sample (and the ceiling's); each "
     "seed's record lists its own under per_label"),
    ("ksparse?.left_out.*", str, "", "the other labels of the first seed's sample, each with the reason"),
    ("ksparse?.ceiling", OPT_DICT, "", "the exhaustive small-k ceiling (null with --ksparse-ceiling 0): ks, pool, "
     "shortlist, subsets_per_label, per label the chosen neurons and their test f1 and accuracy per k, and "
     "mean_f1 / mean_accuracy over labels"),
    ("ksparse?.per_ranker.*.ks", INT_LIST, "count", "per ranker: the probes' sizes"),
    ("ksparse?.per_ranker.*.{mean_f1,mean_accuracy}", STAT_LIST, "percent", "per ranker and k: the mean over labels "
     "of test F1 / accuracy, " + STAT),
    ("ksparse?.per_ranker.*.rotated?.{mean_f1,mean_accuracy}", STAT_LIST, "percent", "with --baseline rotation: the "
     "same in the random basis"),
    ("causal?", dict, "", "live-model ablation, only with --causal (docs/protocol.md, \"Causal ablation\")"),
    ("causal?.{mode,positions}", str, "", "zero or mean replacement; at the words' sub-tokens or at all positions"),
    ("causal?.objective", (str, type(None)), "", "the model's own objective measured, or null"),
    ("causal?.objective_unavailable", (str, type(None)), "", "why the objective is not measured, or null"),
    ("causal?.{tokens?,objective_tokens?}", int, "count", "words whose activations were compared; tokens the "
     "objective was measured on (0 without one)"),
    ("causal?.{fraction,seconds}", NUM, "", "share of neurons each condition removes (0-1); wall seconds of the step"),
    ("causal?.none.in_model", STAT_KIND, "percent", "test accuracy on re-extracted, unablated activations: " + STAT),
    ("causal?.none.loss", (float, type(None)), "nats/token", "the objective with nothing removed"),
    ("causal?.per_ranker.*.*.removed", int, "count", "per ranker and condition (top, random, bottom): neurons removed"),
    ("causal?.per_ranker.*.*.{in_probe,in_model}", STAT_KIND, "percent", "test accuracy with the set removed from the "
     "probe's input only / inside the model's forward pass: " + STAT),
    ("causal?.per_ranker.*.*.loss", OPT_STAT, "nats/token", "the objective with the set removed: " + STAT + " or null"),
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
    try:
        check_results(results)
    except RunDirectoryError as exc:
        raise RunDirectoryError(f"{source}: incomplete or damaged results ({exc}); re-run, or `neuroscope run "
                                "--out RUN_DIR --resume` to finish it") from None


def check_results(results: dict[str, Any]) -> None:
    """Raise RunDirectoryError naming the first field that breaks :data:`SCHEMA` or that
    disagrees with another (:func:`validate` adds the file and the way out)."""
    _check_fields(results, SCHEMA, "")
    for name, record in _walk(results, ["per_ranker", "*"], ""):  # laid out as per_seed and summary
        _check_fields(record, [f for f in SCHEMA if f[0].startswith(("per_seed[]", "summary."))], name + ".")
    _check_consistency(results)


def _check_fields(record: Any, fields: list[tuple[str, Any, str, str]], prefix: str) -> None:
    for path, kind, unit, _ in fields:
        for where, value in _walk(record, _split(path), prefix.rstrip(".")):
            if isinstance(kind, Kind):
                if (problem := kind.check(value)) is not None:
                    raise RunDirectoryError(f"{where}: {problem}")
            elif not isinstance(value, kind) or isinstance(value, bool):
                raise RunDirectoryError(f"{where}: expected {_type_name(kind)}, found {type(value).__name__}")
            if unit == "percent" and "selectivity" not in path:  # selectivity is a difference of percentages
                outside = next((v for v in _numbers(value) if not -1e-9 <= v <= 100 + 1e-9), None)
                if outside is not None:
                    raise RunDirectoryError(f"{where}: {outside} is not a percentage (0-100)")


def _numbers(value: Any) -> Iterator[float]:
    """Every number in a value (inside lists and objects; a STAT's std is a spread, not a share)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "std":
                yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def _check_consistency(results: dict[str, Any]) -> None:
    """What the field types cannot say: sizes that must agree, ids inside the network, one
    record per seed and ranker, a summary per delta."""
    layers, hidden = results["layers"], results["hidden_size"]
    screen = results.get("screen")
    network = screen["network_neurons"] if screen is not None else results["neurons"]
    if not layers or hidden < 1 or network != len(layers) * hidden:
        raise RunDirectoryError(f"neurons: {network} is not layers ({len(layers)}) x hidden_size ({hidden})")
    if screen is not None:
        kept = screen["neurons"]
        if screen["k"] != results["neurons"] or (kept is None) == screen["screened"] or \
                (kept is None and results["neurons"] != network) or (kept is not None and len(kept) != screen["k"]):
            raise RunDirectoryError(f"screen: {screen['k']} kept neurons, the run has {results['neurons']} "
                                    f"({'screened' if screen['screened'] else 'not screened'})")
        if kept is not None and (any(b <= a for a, b in zip(kept, kept[1:])) or not 0 <= kept[0] <= kept[-1] < network):
            raise RunDirectoryError(f"screen.neurons: expected ascending distinct ids in 0..{network - 1}")
    labels = results["labels"]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise RunDirectoryError("labels: expected two or more distinct names")
    if any(label not in results["label_counts"].get("train", {}) for label in labels):
        raise RunDirectoryError("label_counts.train: expected a count for every label")
    if not results["seeds"] or len(results["per_seed"]) != len(results["seeds"]):
        raise RunDirectoryError(f"per_seed: {len(results['per_seed'])} records for seeds {results['seeds']}")
    rankers = results["rankers"]
    if not rankers or sorted(results["per_ranker"]) != sorted(rankers):
        raise RunDirectoryError(f"per_ranker: expected a record for each of the rankers {rankers}")
    deltas = sorted(str(float(d)) for d in results["deltas"])
    if not deltas:
        raise RunDirectoryError("deltas: empty")
    records = [("", results)] + [(f"per_ranker.{n}.", r) for n, r in results["per_ranker"].items()]
    for prefix, record in records:
        if sorted(record["summary"]["minimal"]) != deltas:
            raise RunDirectoryError(f"{prefix}summary.minimal: expected one entry per delta {results['deltas']}")
        for name in ("layer_distribution", "top_fraction_layer_distribution"):
            if any(len(v) != len(layers) for v in record["summary"][name].values()):
                raise RunDirectoryError(f"{prefix}summary.{name}: expected {len(layers)} layers")
            if any(v < 0 for v in record["summary"][name]["std"]):
                raise RunDirectoryError(f"{prefix}summary.{name}.std: negative")
        for name in ("neurons_per_label", "dominant_layer"):
            if sorted(record["summary"][name]) != sorted(labels):
                raise RunDirectoryError(f"{prefix}summary.{name}: expected an entry for each label")
        if len(record["per_seed"]) != len(results["seeds"]):
            raise RunDirectoryError(f"{prefix}per_seed: {len(record['per_seed'])} records for seeds {results['seeds']}")
        for i, seed in enumerate(record["per_seed"]):
            where = f"{prefix}per_seed[{i}]"
            order = seed["ranking"]["order"]
            if sorted(order) != list(range(results["neurons"])):
                raise RunDirectoryError(f"{where}.ranking.order: expected every neuron id 0..{results['neurons'] - 1} "
                                        "once")
            ids = [n for s in seed["minimal"]["sets"] for n in s["neurons"]]
            ids += [n for v in seed["analyses"]["label_neurons"].values() for n in v]
            if any(not 0 <= n < results["neurons"] for n in ids):  # integers: INT_LIST
                raise RunDirectoryError(f"{where}: a neuron id outside 0..{results['neurons'] - 1}")
            for name, value in (("analyses.layer_distribution", seed["analyses"]["layer_distribution"]),
                                ("top_fraction_layer_distribution", seed["top_fraction_layer_distribution"])):
                if len(value) != len(layers):
                    raise RunDirectoryError(f"{where}.{name}: expected {len(layers)} layers")
            if len(seed["minimal"]["sizes"]) != len(seed["minimal"]["dev_accuracies"]):
                raise RunDirectoryError(f"{where}.minimal: sizes and dev_accuracies differ in length")
            curves = seed["curves"]
            if not len(curves["shares"]) == len(curves["keep_top"]) == len(curves["remove_top"]):
                raise RunDirectoryError(f"{where}.curves: shares, keep_top and remove_top differ in length")
        shares = len(record["per_seed"][0]["curves"]["shares"])
        if any(len(record["summary"]["curves"][k]) != shares for k in ("keep_top", "remove_top")):
            raise RunDirectoryError(f"{prefix}summary.curves: expected one point per share ({shares})")
    shares = sorted(str(k) for k in results["ranking_comparison"]["shares"])
    for i, pair in enumerate(results["ranking_comparison"]["pairs"]):
        if sorted(pair["jaccard"]) != shares:
            raise RunDirectoryError(f"ranking_comparison.pairs[{i}].jaccard: expected one entry per share")
    causal = results.get("causal")
    if causal is not None:
        for name, conditions in causal["per_ranker"].items():
            if sorted(conditions) != ["bottom", "random", "top"]:
                raise RunDirectoryError(f"causal.per_ranker.{name}: expected the conditions top, random and bottom")


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
    if isinstance(kind, Kind):
        return kind.name
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
