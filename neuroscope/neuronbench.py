"""NeuronBench: which ranker finds the neurons that are really there (issue 25, part 4).

Two boards, one file each (``leaderboard.json``, ``leaderboard.html``):

* **planted** (:func:`planted_board`): every ranker on the synthetic settings of
  :mod:`neuroscope.planted`, scored against the planted truth by recall at k and average
  precision, over seeds, with bootstrap intervals of the mean over seeds. Rankers that
  read the probe get the paper's elastic-net probe trained on the planted train rows
  with fixed lambdas (``l1``, ``l2``; 10 epochs, as the protocol's probes); rankers that
  need the live model (``needs=("model",)``) cannot run on synthetic activations and are
  listed as skipped, with the reason.
* **real runs** (:func:`run_board`): from finished run directories (``results.json``),
  per ranker and seed: the area under the keep-top curve (mean test accuracy over the
  curve's shares, trapezoidal), Table 1's top minus random, the control task's
  selectivity of the minimal set (Hewitt & Liang 2019; with control), the in-model
  effect of removing the top set against a random set of the same size (``--causal``:
  random's accuracy minus top's, so larger means the ranking found neurons the model
  uses), and seed stability (the mean Jaccard of the top-M sets over pairs of seeds, one
  value per run), with ``--baseline rotation`` the rotation gap (test accuracy of the
  top M % of neurons minus of random directions), and with ``--ksparse`` the k-sparse F1
  (the mean over k of the curve's mean F1 over labels) and, with both, its gap between
  neurons and random directions.

A ranker a third-party package registers appears in both boards once installed: the
boards take every registered ranker unless told which.
"""

from __future__ import annotations

import html
import itertools
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs
import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.planted import SETTINGS, bootstrap_interval, plant, score_ranking, setting_of
from neuroscope.rankers import RankerInputs, call_ranker, info_of
from neuroscope.types import NeuronIndex

log = logging.getLogger(__name__)

BOARD_VERSION = 1
METRICS = ("recall_at_k", "ap")


def interval(values: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """{mean, low, high, values}: the mean over seeds and its 95 % bootstrap interval."""
    values = [float(v) for v in values]
    low, high = bootstrap_interval(np.asarray(values), seed)
    return {"mean": float(np.mean(values)), "low": low, "high": high, "values": values}


def planted_board(rankers: dict[str, tuple[Callable, dict[str, Any]]], settings: Sequence[str] = tuple(SETTINGS),
                  seeds: int = 5, l1: float = 1e-3, l2: float = 1e-5,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score every ranker on every planted setting over ``seeds`` seeds (module docstring)."""
    from neuroscope.probe import ElasticNetProbe

    if seeds < 1:
        raise ValidationError(f"seeds {seeds}: expected at least 1")
    plantings = {name: setting_of(name) for name in settings}
    runnable = {n: r for n, r in rankers.items() if "model" not in info_of(r[0]).needs}
    skipped = {n: "needs the live model (needs=('model',)); planted activations have none"
               for n in rankers if n not in runnable}
    results: dict[str, dict[str, Any]] = {}
    described: dict[str, dict[str, Any]] = {}
    for setting, planting in plantings.items():
        scores = {name: {m: [] for m in METRICS} | {"seconds": []} for name in runnable}
        accuracies = []
        for seed in range(seeds):
            data = plant(planting, seed)
            X, y = data.X[data.train], data.y[data.train]
            probe = None
            if any("probe" in info_of(fn).needs for fn, _ in runnable.values()):
                probe = ElasticNetProbe(l1=l1, l2=l2, epochs=10, seed=seed).fit(X, y)
                accuracies.append(100.0 * float(np.mean(probe.predict(data.X[data.test]) == data.y[data.test])))
            for name, (fn, options) in runnable.items():
                inputs = RankerInputs(X, y, data.label_names, NeuronIndex(("planted",), planting.neurons),
                                      seed=seed, probe=probe if "probe" in info_of(fn).needs else None,
                                      fraction=planting.n_planted / planting.neurons)
                start = time.perf_counter()
                try:
                    order = call_ranker(fn, inputs, **options).order
                except Exception as exc:
                    raise ValidationError(f"ranker {name!r} failed on the planted setting {setting!r} "
                                          f"(seed {seed}): {exc}") from exc
                seconds = time.perf_counter() - start
                for metric, value in score_ranking(order, data.planted).items():
                    scores[name][metric].append(value)
                scores[name]["seconds"].append(seconds)
            if progress:
                progress(f"planted {setting} seed {seed}: {len(runnable)} rankers")
        results[setting] = {name: {m: interval(s[m], seed=i) for i, m in enumerate(METRICS)}
                            | {"seconds": float(np.mean(s["seconds"]))} for name, s in scores.items()}
        described[setting] = {**attrs.asdict(planting), "planted": planting.n_planted,
                              "probe_test_accuracy": float(np.mean(accuracies)) if accuracies else None}
    return {"benchmark": "neuronbench-planted", "version": BOARD_VERSION, "seeds": list(range(seeds)),
            "probe": {"type": "elastic-net", "l1": l1, "l2": l2, "epochs": 10},
            "settings": described, "rankers": _describe(runnable), "skipped": skipped, "results": results,
            "leaderboard": _planted_leaderboard(results, list(plantings), list(runnable), seeds)}


def _describe(rankers: dict[str, tuple[Callable, dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for name, (fn, options) in rankers.items():
        info = info_of(fn)
        out[name] = {"needs": list(info.needs), "cite": info.cite, "options": {k: _plain(v) for k, v in options.items()}}
    return out


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _planted_leaderboard(results: dict[str, Any], settings: list[str], rankers: list[str], seeds: int
                         ) -> list[dict[str, Any]]:
    """Rankers by mean AP over the settings, each with a bootstrap interval that resamples
    the seeds (jointly over settings)."""
    rows = []
    for name in rankers:
        row: dict[str, Any] = {"ranker": name}
        for metric in METRICS:
            values = np.array([results[s][name][metric]["values"] for s in settings])  # (settings, seeds)
            low, high = bootstrap_interval(values, seed=seeds)
            row[metric] = {"mean": float(values.mean()), "low": low, "high": high}
        aps = {s: results[s][name]["ap"]["mean"] for s in settings}
        row["worst_setting"] = min(settings, key=aps.get) if len(set(aps.values())) > 1 else None
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["ap"]["mean"], r["ranker"]))


# ---- real runs


def run_board(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """Per run and ranker, the evidence a finished run holds (module docstring)."""
    from neuroscope.runs import Run

    boards = []
    for path in run_dirs:
        run = Run(path)
        results = run.results
        per_ranker = results.get("per_ranker") or {run.rankers[0]: {"per_seed": results["per_seed"]}}
        fraction = float(results["fraction"])
        causal = (results.get("causal") or {}).get("per_ranker", {})
        rows = {}
        for name in run.rankers:
            seeds = per_ranker[name]["per_seed"]
            row: dict[str, Any] = {}
            areas = [_curve_area(s["curves"]["shares"], s["curves"]["keep_top"]) for s in seeds]
            row["keep_top_area"] = interval(areas)
            row["top_minus_random"] = interval([s["ablation"]["test"]["top"] - s["ablation"]["test"]["random"]
                                                for s in seeds])
            if all(s.get("control") for s in seeds):
                row["selectivity"] = interval([s["control"]["test"]["selectivity"]["selected"] for s in seeds])
            if name in causal:
                top, rand = causal[name]["top"]["in_model"]["values"], causal[name]["random"]["in_model"]["values"]
                row["causal_effect"] = interval([r - t for r, t in zip(rand, top)])
            k = max(1, round(fraction * len(seeds[0]["ranking"]["order"])))
            tops = [set(s["ranking"]["order"][:k]) for s in seeds]
            pairs = [len(a & b) / len(a | b) for a, b in itertools.combinations(tops, 2)]
            row["seed_jaccard"] = float(np.mean(pairs)) if pairs else None
            rotation = (results.get("rotation") or {}).get("per_ranker", {}).get(name)
            if rotation:
                row["rotation_gap"] = interval(rotation["gap"]["values"])
            if all(s.get("ksparse") for s in seeds):
                row["ksparse_f1"] = interval([float(np.mean(s["ksparse"]["mean_f1"])) for s in seeds])
                turned = [(s.get("rotation") or {}).get("ksparse") for s in seeds]
                if all(turned):
                    row["ksparse_rotation_gap"] = interval([float(np.mean(s["ksparse"]["mean_f1"]))
                                                            - float(np.mean(t["mean_f1"]))
                                                            for s, t in zip(seeds, turned)])
            rows[name] = row
        boards.append({"run": str(path), "model": results["model"], "task": results["task"],
                       "site": results.get("site", "hidden"), "seeds": results["seeds"], "rankers": rows})
    return {"benchmark": "neuronbench-runs", "version": BOARD_VERSION, "runs": boards}


def _curve_area(shares: Sequence[float], accuracies: Sequence[float]) -> float:
    """Mean accuracy over the curve's range of shares (trapezoidal area / range)."""
    x, y = np.asarray(shares, dtype=np.float64), np.asarray(accuracies, dtype=np.float64)
    if len(x) < 2:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


# ---- output


def write_board(out: str | Path, planted: dict[str, Any] | None, runs: dict[str, Any] | None) -> list[Path]:
    """leaderboard.json (both boards) and leaderboard.html under ``out``; the paths written."""
    from neuroscope.rundir import atomic_path, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    board = {"planted": planted, "runs": runs}
    write_json(out / "leaderboard.json", board)
    page = out / "leaderboard.html"
    with atomic_path(page) as tmp:
        tmp.write_text(render_html(board), encoding="utf-8")
    return [out / "leaderboard.json", page]


def _cell(stat: dict[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    if not stat:
        return "-"
    return (f"{stat['mean'] * scale:.{digits}f} <small>[{stat['low'] * scale:.{digits}f}, "
            f"{stat['high'] * scale:.{digits}f}]</small>")


def render_html(board: dict[str, Any]) -> str:
    """The boards as one HTML page of tables (means with 95 % bootstrap intervals)."""
    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>NeuronBench</title><style>body{font-family:sans-serif;"
             "margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}th:first-child,td:first-child{text-align:left}small{color:#666}</style>",
             "<h1>NeuronBench</h1>"]
    planted = board.get("planted")
    if planted:
        settings = list(planted["settings"])
        parts.append(f"<h2>Planted ground truth</h2><p>Average precision of the planted neurons in each ranker's "
                     f"ordering (recall at k in the second table), mean over {len(planted['seeds'])} seeds "
                     f"[95 % bootstrap interval]. Probe-reading rankers use the elastic-net probe with l1 = "
                     f"{planted['probe']['l1']}, l2 = {planted['probe']['l2']}.</p>")
        for metric, title in (("ap", "average precision"), ("recall_at_k", "recall at k")):
            head = "".join(f"<th>{e(s)}</th>" for s in settings)
            parts.append(f"<h3>{title}</h3><table><tr><th>ranker</th><th>all settings</th>{head}</tr>")
            for row in planted["leaderboard"]:
                name = row["ranker"]
                cells = "".join(f"<td>{_cell(planted['results'][s][name][metric])}</td>" for s in settings)
                parts.append(f"<tr><td>{e(name)}</td><td><b>{_cell(row[metric])}</b></td>{cells}</tr>")
            parts.append("</table>")
        details = "".join(f"<li><b>{e(s)}</b>: {e(_setting_text(d))}</li>" for s, d in planted["settings"].items())
        parts.append(f"<ul>{details}</ul>")
        if planted["skipped"]:
            parts.append("<p>Not run: " + "; ".join(f"{e(n)} ({e(r)})" for n, r in planted["skipped"].items())
                         + "</p>")
    runs = board.get("runs")
    if runs:
        parts.append("<h2>Real runs</h2><p>Per ranker, mean over seeds [95 % bootstrap interval], in percentage "
                     "points: area under the keep-top curve, Table 1's top minus random, selectivity of the "
                     "minimal set, in-model effect (random's accuracy minus top's with the set removed); seed "
                     "stability as the mean Jaccard of the top sets; k-sparse F1: the mean over k of the k-sparse "
                     "probes' mean F1 over labels (--ksparse), and its gap to random directions.</p>")
        for entry in runs["runs"]:
            parts.append(f"<h3>{e(entry['model'])} x {e(entry['task'])} ({e(entry['site'])}), "
                         f"{len(entry['seeds'])} seed(s)</h3><table><tr><th>ranker</th><th>keep-top area</th>"
                         "<th>top - random</th><th>selectivity</th><th>in-model effect</th><th>seed Jaccard</th>"
                         "<th>rotation gap</th><th>k-sparse F1</th><th>k-sparse rotation gap</th></tr>")
            for name, row in entry["rankers"].items():
                jaccard = "-" if row.get("seed_jaccard") is None else f"{row['seed_jaccard']:.3f}"
                parts.append(f"<tr><td>{e(name)}</td><td>{_cell(row['keep_top_area'])}</td>"
                             f"<td>{_cell(row['top_minus_random'])}</td><td>{_cell(row.get('selectivity'))}</td>"
                             f"<td>{_cell(row.get('causal_effect'))}</td><td>{jaccard}</td>"
                             f"<td>{_cell(row.get('rotation_gap'))}</td><td>{_cell(row.get('ksparse_f1'))}</td>"
                             f"<td>{_cell(row.get('ksparse_rotation_gap'))}</td></tr>")
            parts.append("</table>")
    return "\n".join(parts) + "\n"


def _setting_text(d: dict[str, Any]) -> str:
    text = (f"{d['labels']} labels (skew {d['skew']}), {d['neurons']} neurons, {d['planted']} planted, shift "
            f"{d['shift']}, {d['tokens']} tokens")
    extras = [f"spread {d['spread']}" if d["spread"] > 1 else "", f"shared {d['shared']}" if d["shared"] else "",
              f"copies {d['copies']}" if d["copies"] else "",
              f"distractors {d['distractors']:.0%}" if d["distractors"] else "", "relu" if d["relu"] else ""]
    accuracy = d.get("probe_test_accuracy")
    tail = f"; probe test accuracy {accuracy:.1f} %" if accuracy is not None and not math.isnan(accuracy) else ""
    return text + "".join(f", {x}" for x in extras if x) + tail
