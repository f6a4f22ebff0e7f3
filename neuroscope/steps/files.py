"""The shapes of the step files a run reads back (``RUN_DIR/steps/``, docs/results.md).

``--resume`` and the cell's last unit reuse every finished step's file; a file that was
damaged or edited in between (a key missing, a wrong type, a neuron id outside the
network, an accuracy that is not a percentage) would otherwise surface as a KeyError deep
in a later step, or worse, as numbers in results.json. Each reader here turns a step's
JSON into what the protocol uses and raises :class:`StepFileError` saying what is wrong;
the orchestrator adds the file's name and the way out (delete it, ``--resume``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from neuroscope.errors import RunDirectoryError
from neuroscope.minimal import MinimalScan
from neuroscope.search import LambdaSearch, best_point, selection_score
from neuroscope.steps.ablation import SeedResult


class StepFileError(RunDirectoryError):
    """A step file whose content is not what its step writes."""


#: what reading a foreign or edited JSON value raises before a check can say it better
PARSE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, StopIteration)


def read_step(data: Any, parse: Callable[[dict[str, Any]], Any]) -> Any:
    """``parse(data)``, every failure of it a :class:`StepFileError`."""
    if not isinstance(data, dict):
        raise StepFileError(f"expected a JSON object, found {type(data).__name__}")
    try:
        return parse(data)
    except StepFileError:
        raise
    except PARSE_ERRORS as exc:
        raise StepFileError(f"{type(exc).__name__}: {exc}") from None


def percent(value: Any, what: str) -> float:
    """An accuracy or share in percent: a finite number in [0, 100]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 100:
        raise StepFileError(f"{what}: {value!r} is not a percentage (a number from 0 to 100)")
    return float(value)


def neuron_ids(values: Any, n_neurons: int, what: str) -> np.ndarray:
    """Flat neuron ids, each an integer in [0, n_neurons)."""
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise StepFileError(f"{what}: expected a list of neuron ids")
    ids = np.asarray(values, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_neurons):
        raise StepFileError(f"{what}: a neuron id outside 0..{n_neurons - 1}")
    return ids


def oracle_record(data: dict[str, Any], seed: int) -> dict[str, Any]:
    """``seed-N.json``: the oracle's train accuracy and training record."""
    if data["seed"] != seed:
        raise StepFileError(f"seed: {data['seed']!r}, expected {seed}")
    percent(data["train_accuracy"], "train_accuracy")
    training_record(data["training"], "training")
    return data


def training_record(training: Any, what: str) -> None:
    """A probe's training record (``ElasticNetProbe.training_record``), or null."""
    if training is None:
        return
    if not isinstance(training, dict) or not isinstance(training.get("converged"), bool) or \
            not isinstance(training.get("epochs"), int) or training["epochs"] < 1:
        raise StepFileError(f"{what}: expected null or an object with converged and epochs (one or more)")
    curve = training.get("loss_curve")
    if curve is not None and (not isinstance(curve, list) or not curve or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in curve)):
        raise StepFileError(f"{what}.loss_curve: expected a list of the losses (finite numbers, 0 or more)")


def curve_record(curves: Any, what: str = "curves") -> None:
    """The keep-top / remove-top curves: a percentage per share (remove-top: null at 100 %)."""
    shares = curves["shares"]
    if not isinstance(shares, list) or not shares:
        raise StepFileError(f"{what}.shares: expected the shares")
    for name in ("keep_top", "remove_top"):
        values = curves[name]
        if not isinstance(values, list) or len(values) != len(shares):
            raise StepFileError(f"{what}.{name}: expected one value per share ({len(shares)})")
        for share, value in zip(shares, values):
            if value is None and (name == "keep_top" or share != 100):
                raise StepFileError(f"{what}.{name}: null at {share} % (only removing 100 % has no accuracy)")
            if value is not None:
                percent(value, f"{what}.{name}")


def ranking_record(data: dict[str, Any], seed: int, n_neurons: int) -> SeedResult:
    """``seed-N-RANKER.json``: the ranking (every neuron once), the ablations and curves."""
    result = SeedResult.from_json(data)
    if result.seed != seed:
        raise StepFileError(f"seed: {result.seed}, expected {seed}")
    order = neuron_ids(data["ranking"]["order"], n_neurons, "ranking.order")
    if len(order) != n_neurons or len(np.unique(order)) != n_neurons:
        raise StepFileError(f"ranking.order: expected each of the {n_neurons} neurons once")
    if len(data["ranking"]["entry_share"]) != n_neurons:
        raise StepFileError(f"ranking.entry_share: expected {n_neurons} values")
    for split in ("dev", "test"):
        for name in ("all", "top", "random", "bottom"):
            percent(result.ablation[split][name], f"ablation.{split}.{name}")
    kept = {name: neuron_ids(result.kept[name], n_neurons, f"kept.{name}") for name in ("top", "random", "bottom")}
    if len({len(ids) for ids in kept.values()}) != 1 or not len(kept["top"]):
        raise StepFileError("kept: top, random and bottom must keep the same number of neurons (one or more)")
    curve_record(data["curves"])
    if result.ksparse is not None:
        sparse_record(result.ksparse, n_neurons, "ksparse")
    return result


def sparse_record(data: Any, n_neurons: int, what: str) -> None:
    """A ranking's k-sparse curves: increasing sizes, per label a percentage per size."""
    ks = data["ks"]
    if not isinstance(ks, list) or not all(isinstance(k, int) and 1 <= k <= n_neurons for k in ks) or \
            sorted(set(ks)) != ks:
        raise StepFileError(f"{what}.ks: expected increasing sizes from 1 to {n_neurons}")
    for key in ("mean_f1", "mean_accuracy"):
        _percent_list(data[key], len(ks) if data["per_label"] else 0, f"{what}.{key}")
    for label, entry in data["per_label"].items():
        for key in ("f1", "accuracy"):
            _percent_list(entry[key], len(ks), f"{what}.per_label.{label}.{key}")
        neuron_ids([entry["best_neuron"]], n_neurons, f"{what}.per_label.{label}.best_neuron")


def ceiling_record(data: dict[str, Any], seed: int, n_neurons: int) -> dict[str, Any]:
    """``ksparse.json``: what the k-sparse probes were trained on, and the ceiling (or null)."""
    if data["seed"] != seed:
        raise StepFileError(f"seed: {data['seed']!r}, expected {seed}")
    if not isinstance(data["train_rows"], int) or data["train_rows"] < 2 or not isinstance(data["labels"], list):
        raise StepFileError("train_rows and labels: expected the probes' sample size and the labels taking part")
    ceiling = data["ceiling"]
    if ceiling is not None:
        ks = ceiling["ks"]
        for label, entry in ceiling["per_label"].items():
            for key in ("f1", "accuracy"):
                _percent_list(entry[key], len(ks), f"ceiling.per_label.{label}.{key}")
            if [len(ids) for ids in entry["neurons"]] != ks:
                raise StepFileError(f"ceiling.per_label.{label}.neurons: expected a set of each size {ks}")
            for ids in entry["neurons"]:
                neuron_ids(ids, n_neurons, f"ceiling.per_label.{label}.neurons")
    return data


def _percent_list(values: Any, length: int, what: str) -> None:
    if not isinstance(values, list) or len(values) != length:
        raise StepFileError(f"{what}: expected {length} percentages")
    for value in values:
        percent(value, what)


def minimal_record(data: dict[str, Any], deltas: Sequence[float], n_neurons: int) -> MinimalScan:
    """``seed-N-RANKER-minimal.json``: the scan and a minimal set for every delta."""
    scan = MinimalScan.from_json(data)
    if len(scan.sizes) != len(scan.dev_accuracies) or not scan.sizes:
        raise StepFileError("sizes and dev_accuracies: expected one accuracy per size tried")
    sizes = neuron_ids(list(scan.sizes), n_neurons + 1, "sizes")
    if sizes.min() < 1 or (np.diff(sizes) <= 0).any():
        raise StepFileError(f"sizes: expected increasing set sizes from 1 to {n_neurons}")
    for value in (*scan.dev_accuracies, scan.oracle_dev):
        percent(value, "dev_accuracies")
    found = sorted(s.delta for s in scan.sets)
    if found != sorted(float(d) for d in deltas):
        raise StepFileError(f"sets: minimal sets for deltas {found}, expected {list(deltas)}")
    for s in scan.sets:
        ids = neuron_ids(list(s.neurons), n_neurons, f"sets (delta {s.delta:g}).neurons")
        if len(ids) != s.n_neurons or not len(ids) or len(np.unique(ids)) != len(ids):
            raise StepFileError(f"sets (delta {s.delta:g}): n_neurons {s.n_neurons} but {len(ids)} neurons listed")
        if not isinstance(s.share, float) or not math.isclose(s.share, s.n_neurons / n_neurons, abs_tol=1e-9):
            raise StepFileError(f"sets (delta {s.delta:g}).share: {s.share!r} is not {s.n_neurons} of {n_neurons} "
                                "neurons")
        percent(s.dev_accuracy, "sets.dev_accuracy")
        percent(s.test_accuracy, "sets.test_accuracy")
    return scan


def control_record(data: dict[str, Any], selected: dict[str, int]) -> dict[str, Any]:
    """``seed-N-control.json``: per ranker (``selected``: the size of its minimal set) and
    split, the task and control accuracies and their difference, the selectivity."""
    for name, size in selected.items():
        if data[name]["selected"] != size:
            raise StepFileError(f"{name}.selected: {data[name]['selected']!r}, but the minimal set has {size} neurons")
        for split in ("dev", "test"):
            entry = data[name][split]
            for key in ("all", "selected"):
                where = f"{name}.{split}"
                task = percent(entry["task"][key], f"{where}.task.{key}")
                control = percent(entry["control"][key], f"{where}.control.{key}")
                value = entry["selectivity"][key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                        not math.isclose(value, task - control, abs_tol=1e-9):
                    raise StepFileError(f"{where}.selectivity.{key}: {value!r} is not task - control accuracy")
    return data


def rotation_record(data: dict[str, Any], seed: int, rankers: Sequence[str], n_neurons: int) -> dict[str, Any]:
    """``seed-N-rotation.json``: the rotated oracle's train accuracy and, per ranker of the
    run, its ablations in the random basis (None for a ranker that needs the model)."""
    if data["seed"] != seed:
        raise StepFileError(f"seed: {data['seed']!r}, expected {seed}")
    percent(data["train_accuracy"], "train_accuracy")
    if sorted(data["per_ranker"]) != sorted(rankers):
        raise StepFileError(f"per_ranker: {sorted(data['per_ranker'])}, expected the run's rankers {sorted(rankers)}")
    for name, entry in data["per_ranker"].items():
        if entry is None:
            if name not in data["not_rotated"]:
                raise StepFileError(f"per_ranker.{name}: null without a reason in not_rotated")
            continue
        for split in ("dev", "test"):
            for kind in ("all", "top", "random", "bottom"):
                percent(entry["ablation"][split][kind], f"per_ranker.{name}.ablation.{split}.{kind}")
        if "ksparse" in entry:
            sparse_record(entry["ksparse"], n_neurons, f"per_ranker.{name}.ksparse")
    return data


def search_record(data: dict[str, Any], grid: Sequence[tuple[float, float]], alpha: float, beta: float,
                  fraction: float, seed: int) -> LambdaSearch:
    """``lambda-search.json``: a point for each pair of the run's ``grid``, each with its S
    (paper section 2, "Search") from the run's alpha, beta, M and first seed, and the
    chosen pair: the point of highest S (among the finalists, where the search names them)."""
    search = LambdaSearch.from_json(data)
    if [(p.l1, p.l2) for p in search.points] != [tuple(pair) for pair in grid]:
        raise StepFileError(f"points: not the run's grid of {len(grid)} (l1, l2) pairs")
    settings = {"alpha": (search.alpha, alpha), "beta": (search.beta, beta), "fraction": (search.fraction, fraction),
                "seed": (search.seed, seed)}
    for name, (found, expected) in settings.items():
        if found != expected:
            raise StepFileError(f"{name}: {found!r}, but the run's is {expected!r}")
    unregularised = percent(search.unregularised, "unregularised")
    for point in search.points:
        where = f"points (l1 {point.l1}, l2 {point.l2})"
        values = [percent(getattr(point, name), f"{where}.{name}") for name in ("top", "bottom", "all")]
        score = selection_score(values[0], values[1], unregularised, values[2], alpha, beta)
        if not isinstance(point.score, (int, float)) or not math.isclose(point.score, score, abs_tol=1e-9):
            raise StepFileError(f"{where}.score: {point.score!r}, but S of its accuracies is {score}")
    if search.finalists is not None and not set(search.finalists) <= {(p.l1, p.l2) for p in search.points}:
        raise StepFileError("finalists: pairs that are not points of the grid")
    best = best_point(search.points, search.contenders())
    if list(search.best) != [search.points[best].l1, search.points[best].l2]:
        raise StepFileError(f"best: {list(search.best)} is not the point of highest S"
                            + ("" if search.finalists is None else " among the finalists"))
    training_record(search.best_training, "best_training")
    return search


def probe_arrays(saved: dict[str, np.ndarray], n_classes: int, n_neurons: int) -> dict[str, np.ndarray]:
    """A saved probe (``.npz``): weights (classes x neurons) and intercepts, finite."""
    coef, intercept = saved["coef"], saved["intercept"]
    if coef.shape != (n_classes, n_neurons) or intercept.shape != (n_classes,):
        raise StepFileError(f"weights of shape {coef.shape} and intercepts {intercept.shape}, expected "
                            f"({n_classes}, {n_neurons}) and ({n_classes},)")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise StepFileError("non-finite weights")
    return saved
