"""Benchmark: every ranker on the same store (MiniLM x PTB sample, train split), its wall
time, and its agreement with NeuroX's implementation of the same method.

* neuroscope: weight-mass (after training the oracle probe, timed apart), probeless, iou,
  gaussian, mean-diff, f-stat, mi, lape (default options) and random on the whole train split;
* NeuroX, from a checkout of its master given with ``--neurox-master DIR`` (e.g. ``git
  archive`` of github.com/fdalvi/NeuroX), run in a worker process (``--neurox-python``;
  default: bench/README.md's venv if it exists, else this interpreter) on the first
  ``--rows`` train rows (0: all): ``probeless.get_neuron_ordering`` (overall),
  ``iou_probe.get_neuron_ordering`` (one label against the rest, its default threshold
  0.05, for the ``--iou-labels`` most frequent labels) and
  ``gaussian_probe.get_neuron_ordering`` (``--gaussian-neurons`` neurons of layer 6,
  ``--gaussian-rows`` rows, ``--gaussian-k`` greedy steps). NeuroX's gaussian probe calls
  ``torch.eig``, removed in torch 2; the worker supplies it from ``torch.linalg.eigvals``.

On the whole store, the gaussian ranker's defaults are compared with the exact greedy
search (``refresh=1``) and with scoring on 8,000 tokens, over ``--gaussian-steps`` steps:
the first step where the selections differ and their overlap.

Every comparison with NeuroX is of whole orderings: the first position where they differ, Spearman's
rho of the two rank vectors, and the overlap of their top 20 % (and for iou the largest
difference of average precision). neuroscope's gaussian is compared three ways: NeuroX's
model and the exact greedy search (``prior="network"``, ``refresh=1``), the exact search
with the block prior, and the defaults (NeuroX's prior, ``refresh=10``, 256 candidates).

    python bench/rankers.py [--rows 0] --neurox-master /path/to/NeuroX

Writes bench/results/rankers.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_CACHE, NEUROX_PYTHON, Timer, minilm_pos_store, write_results  # noqa: E402

WORKER = r"""
import json, sys, time, types
import numpy as np, torch
if True:  # torch.eig is removed in torch 2 (a stub that raises); NeuroX's gaussian probe only reads eigenvalues
    torch.eig = lambda a: types.SimpleNamespace(eigenvalues=torch.stack(
        [torch.linalg.eigvals(a).real, torch.linalg.eigvals(a).imag], dim=1))
data = np.load(sys.argv[1])
sys.path.insert(0, sys.argv[2])  # the NeuroX master checkout
from neurox.interpretation import gaussian_probe, iou_probe, probeless
X, y = data["X"], data["y"]
out = {}
start = time.perf_counter()
out["probeless"] = {"order": [int(i) for i in probeless.get_neuron_ordering(X, y)],
                    "seconds": time.perf_counter() - start}
out["iou"] = {}
start = time.perf_counter()
for c in data["iou_labels"].tolist():
    out["iou"][str(c)] = [int(i) for i in iou_probe.get_neuron_ordering(X.copy(), y == c, float(data["threshold"]))]
out["iou_seconds"] = time.perf_counter() - start
Xg, yg = data["Xg"], data["yg"]
start = time.perf_counter()
probe = gaussian_probe.train_probe(Xg, yg)
out["gaussian"] = {"selected": [int(i) for i in gaussian_probe.get_neuron_ordering(probe, int(data["k"]))],
                   "seconds": time.perf_counter() - start}
print(json.dumps(out))
"""


def agreement(ours: np.ndarray, theirs: np.ndarray, share: float = 0.2) -> dict:
    """How two orderings of the same neurons agree: the first position where they differ
    (None: identical), Spearman's rho of the ranks, and the overlap of the first ``share``."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    differ = np.flatnonzero(ours != theirs)
    k = max(1, round(share * len(ours)))
    rank_a, rank_b = np.empty(len(ours)), np.empty(len(ours))
    rank_a[ours] = np.arange(len(ours))
    rank_b[theirs] = np.arange(len(ours))
    return {"first_difference": int(differ[0]) if len(differ) else None,
            "spearman": round(float(np.corrcoef(rank_a, rank_b)[0, 1]), 6),
            f"top_{round(share * 100)}_percent_overlap": round(len(set(ours[:k]) & set(theirs[:k])) / k, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="train rows compared with NeuroX (0: all)")
    parser.add_argument("--neurox-master", type=Path, default=None, help="a checkout of NeuroX's master")
    parser.add_argument("--neurox-python", type=Path, default=None)
    parser.add_argument("--iou-labels", type=int, default=3)
    parser.add_argument("--gaussian-rows", type=int, default=2000)
    parser.add_argument("--gaussian-neurons", type=int, default=96)
    parser.add_argument("--gaussian-k", type=int, default=5)
    parser.add_argument("--gaussian-steps", type=int, default=50, help="greedy steps compared with the exact search")
    parser.add_argument("--no-timings", action="store_true", help="skip timing every ranker on the whole store "
                        "(gaussian's default alone takes 10-20 min on 2 cores)")
    args = parser.parse_args()
    import torch

    from neuroscope.plugin import f_stat, lape, mean_diff, mutual_information
    from neuroscope.probe import ElasticNetProbe
    from neuroscope.rankers import RankerInputs, order_by_score
    from neuroscope.rankers.gaussian import gaussian, greedy_selection
    from neuroscope.rankers.iou import average_precisions, iou
    from neuroscope.rankers.probeless import probeless
    from neuroscope.rankers.random_baseline import random_order
    from neuroscope.ranking import weight_mass_ranking

    task, acts, gold, classes = minilm_pos_store(BENCH_CACHE)
    train, y = acts["train"], gold["train"]
    results: dict = {"store": {"tokens": train.n_tokens, "neurons": train.n_neurons, "labels": len(classes)}}
    with Timer() as t:
        probe = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=10, device="cpu").fit(train, np.asarray(task.train.labels()))
    results["oracle_probe_seconds"] = round(t.seconds, 2)
    timings = {}
    with Timer() as t:
        weight_mass_ranking(probe.coef_, 100)
    timings["weight-mass"] = t.seconds
    for name, fn in (("probeless", probeless), ("iou", iou), ("gaussian", gaussian), ("mean-diff", mean_diff),
                     ("f-stat", f_stat), ("mi", mutual_information), ("lape", lape), ("random", random_order)):
        if args.no_timings:
            break
        fresh = RankerInputs(train, y, tuple(classes), train.index, 0)  # no statistics shared between timings
        with Timer() as t:
            fn(fresh)
        timings[name] = t.seconds
    results["seconds"] = {k: round(v, 2) for k, v in timings.items()}

    # how far the gaussian ranker's defaults depart from the exact greedy search, on the whole store
    steps = args.gaussian_steps
    selections = {}
    for name, options in (("defaults (score 2,000 tokens, refresh 10, 256 candidates)", {}),
                          ("exact greedy (refresh 1), score 2,000 tokens", {"refresh": 1}),
                          ("refresh 10, score 8,000 tokens", {"score_tokens": 8000, "memory": 2**32})):
        with Timer() as t:
            order = gaussian(RankerInputs(train, y, tuple(classes), train.index, 0), max_neurons=steps,
                             **options).order[:steps]
        selections[name] = {"selected": order.tolist(), "seconds": round(t.seconds, 1)}
    exact = np.asarray(selections["exact greedy (refresh 1), score 2,000 tokens"]["selected"])
    for entry in selections.values():
        mine = np.asarray(entry["selected"])
        differ = np.flatnonzero(mine != exact)
        entry["first_difference_from_exact"] = int(differ[0]) if len(differ) else None
        entry["overlap_with_exact"] = round(len(set(mine.tolist()) & set(exact.tolist())) / steps, 4)
    results["gaussian_default_vs_exact"] = {"steps": steps, "runs": selections}

    if args.neurox_master is None:
        results["neurox"] = "not compared: give --neurox-master DIR (a checkout of NeuroX's master)"
        write_results("rankers", results)
        return 0
    python = args.neurox_python or (NEUROX_PYTHON if NEUROX_PYTHON.exists() else Path(sys.executable))
    rows = train.n_tokens if args.rows == 0 else min(args.rows, train.n_tokens)
    X = train.rows(slice(0, rows))
    ys = y[:rows]
    keep = ys >= 0
    X, ys = X[keep], ys[keep]
    counts = np.bincount(ys, minlength=len(classes))
    iou_labels = np.argsort(-counts, kind="stable")[: args.iou_labels]
    threshold = 0.05  # NeuroX iou_probe's default
    # gaussian: labels with >= 2 tokens in its sample, renumbered 0..C-1 as NeuroX expects
    layer = train.index.n_layers - 1
    cols = np.arange(layer * train.index.hidden_size, layer * train.index.hidden_size + args.gaussian_neurons)
    gx, gy = X[: args.gaussian_rows][:, cols], ys[: args.gaussian_rows]
    present, n = np.unique(gy, return_counts=True)
    ok = np.isin(gy, present[n >= 2])
    gx, gy = gx[ok], np.unique(gy[ok], return_inverse=True)[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, X=X, y=ys, iou_labels=iou_labels, threshold=threshold, Xg=gx, yg=gy, k=args.gaussian_k)
        done = subprocess.run([str(python), "-c", WORKER, str(path), str(args.neurox_master)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"the NeuroX worker failed:\n{done.stderr}")
        neurox = json.loads(done.stdout)
    results["neurox_rows"] = int(len(X))
    sub = RankerInputs(X, ys, tuple(classes), train.index, 0)
    with Timer() as t:
        ours = probeless(sub).order
    results["probeless_vs_neurox"] = {**agreement(ours, np.asarray(neurox["probeless"]["order"])),
                                      "neuroscope_seconds": round(t.seconds, 2),
                                      "neurox_seconds": round(neurox["probeless"]["seconds"], 2)}
    from sklearn.metrics import average_precision_score

    per_label = {}
    thresholded = np.where(np.abs(X) < threshold, 0.0, X).astype(np.float16)
    for c in iou_labels.tolist():
        aps = np.array([average_precisions(thresholded[:, i], ys, len(classes))[c] for i in range(X.shape[1])])
        theirs = np.asarray(neurox["iou"][str(c)])
        reference = np.array([average_precision_score(ys == c, thresholded[:, i].astype(np.float32))
                              for i in range(X.shape[1])])
        per_label[str(classes[c])] = {**agreement(order_by_score(aps, "iou").order, theirs),
                                      "max_abs_ap_difference": float(np.abs(aps - reference).max())}
    results["iou_vs_neurox"] = {"threshold": threshold, "labels": per_label,
                                "neurox_seconds": round(neurox["iou_seconds"], 2),
                                "note": "NeuroX orders equal scores by descending neuron id (argsort reversed), "
                                        "neuroscope by ascending id"}
    gaussian_runs = {}
    for name, options in (("network prior, exact greedy", {"prior": "network", "refresh": 1}),
                          ("block prior, exact greedy", {"prior": "block", "refresh": 1}),
                          ("defaults", {})):
        with Timer() as t:
            selected, _, _ = greedy_selection(torch.from_numpy(gx).double(), torch.from_numpy(gy), len(gx),
                                              args.gaussian_k, gx.shape[1], **options)
        theirs = neurox["gaussian"]["selected"]
        differ = [i for i, (a, b) in enumerate(zip(selected, theirs)) if a != b]
        gaussian_runs[name] = {"selected": selected, "first_difference": differ[0] if differ else None,
                               "seconds": round(t.seconds, 2)}
    results["gaussian_vs_neurox"] = {"rows": int(len(gx)), "neurons": int(gx.shape[1]),
                                     "neurox": neurox["gaussian"]["selected"], "neuroscope": gaussian_runs,
                                     "neurox_seconds": round(neurox["gaussian"]["seconds"], 2)}
    write_results("rankers", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
