"""Benchmark: every ranker on the same store (MiniLM x PTB sample, train split), its wall
time, and its agreement with NeuroX's implementation of the same method.

* neuroscope: weight-mass (after training the oracle probe, timed apart), probeless, iou,
  gaussian (default options) and random on the whole train split;
* NeuroX, in its venv (bench/README.md), on the first ``--rows`` train rows:
  ``probeless.get_overall_ranking`` (NeuroX 1.0.9), and, from a checkout of NeuroX's
  master given with ``--neurox-master DIR``, ``iou_probe.get_neuron_ordering`` (one label
  against the rest, for the three most frequent labels: average precisions compared) and
  ``gaussian_probe.get_neuron_ordering`` (``--gaussian-neurons`` neurons of layer 6,
  ``--gaussian-rows`` rows, ``--gaussian-k`` greedy steps: the selected lists compared).
  NeuroX's gaussian probe calls ``torch.eig``, removed in torch 2; the worker supplies it
  from ``torch.linalg.eigvals`` (same eigenvalues).

    python bench/rankers.py [--rows 20000] [--neurox-master /path/to/NeuroX]

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
X, y = data["X"], data["y"]
out = {}
from neurox.interpretation import probeless
start = time.perf_counter()
means = getattr(probeless, "get_mean_vectors", None) or probeless._get_mean_vectors  # 1.0.9: private names
overall = getattr(probeless, "get_overall_ranking", None) or probeless._get_overall_ranking
out["probeless"] = {"order": [int(i) for i in overall(means(X, y)[0])], "seconds": time.perf_counter() - start}
if len(sys.argv) > 2:
    import os, tempfile
    alias = tempfile.mkdtemp()  # NeuroX's master under another package name, beside the installed 1.0.9
    os.symlink(os.path.join(sys.argv[2], "neurox"), os.path.join(alias, "neurox_master"))
    sys.path.insert(0, alias)
    from sklearn.metrics import average_precision_score
    out["iou"] = {}
    start = time.perf_counter()
    for c in data["iou_labels"].tolist():
        out["iou"][str(c)] = [float(average_precision_score(y == c, X[:, i])) for i in range(X.shape[1])]
    out["iou_seconds"] = time.perf_counter() - start
    import neurox_master.interpretation.gaussian_probe as gp
    Xg, yg = data["Xg"], data["yg"]
    start = time.perf_counter()
    probe = gp.train_probe(Xg, yg)
    out["gaussian"] = {"selected": [int(i) for i in gp.get_neuron_ordering(probe, int(data["k"]))],
                       "seconds": time.perf_counter() - start}
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--neurox-master", type=Path, default=None)
    parser.add_argument("--gaussian-rows", type=int, default=2000)
    parser.add_argument("--gaussian-neurons", type=int, default=96)
    parser.add_argument("--gaussian-k", type=int, default=5)
    args = parser.parse_args()
    import torch

    from neuroscope.probe import ElasticNetProbe
    from neuroscope.rankers import RankerInputs
    from neuroscope.rankers.gaussian import gaussian, greedy_selection
    from neuroscope.rankers.iou import average_precisions, iou
    from neuroscope.rankers.probeless import probeless
    from neuroscope.rankers.random_baseline import random_order
    from neuroscope.ranking import weight_mass_ranking

    task, acts, gold, classes = minilm_pos_store(BENCH_CACHE)
    train, y = acts["train"], gold["train"]
    results: dict = {"store": {"tokens": train.n_tokens, "neurons": train.n_neurons, "labels": len(classes)}}
    with Timer() as t:
        probe = ElasticNetProbe(l1=1e-3, l2=1e-3, device="cpu").fit(train, np.asarray(task.train.labels()))
    results["oracle_probe_seconds"] = round(t.seconds, 2)
    timings = {}
    with Timer() as t:
        weight_mass_ranking(probe.coef_, 100)
    timings["weight-mass"] = t.seconds
    for name, fn in (("probeless", probeless), ("iou", iou), ("gaussian", gaussian), ("random", random_order)):
        fresh = RankerInputs(train, y, tuple(classes), train.index, 0)  # no statistics shared between timings
        with Timer() as t:
            fn(fresh)
        timings[name] = t.seconds
    results["seconds"] = {k: round(v, 2) for k, v in timings.items()}

    if NEUROX_PYTHON.exists():
        rows = min(args.rows, train.n_tokens)
        X = train.rows(slice(0, rows))
        ys = y[:rows]
        keep = ys >= 0
        X, ys = X[keep], ys[keep]
        counts = np.bincount(ys, minlength=len(classes))
        iou_labels = np.argsort(-counts)[:3]
        # gaussian: labels with >= 2 tokens in its sample, renumbered 0..C-1 as NeuroX expects
        layer = train.index.n_layers - 1
        cols = np.arange(layer * train.index.hidden_size, layer * train.index.hidden_size + args.gaussian_neurons)
        gx, gy = X[: args.gaussian_rows][:, cols], ys[: args.gaussian_rows]
        present, n = np.unique(gy, return_counts=True)
        ok = np.isin(gy, present[n >= 2])
        gx, gy = gx[ok], np.unique(gy[ok], return_inverse=True)[1]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "data.npz"
            np.savez(path, X=X, y=ys, iou_labels=iou_labels, Xg=gx, yg=gy, k=args.gaussian_k)
            command = [str(NEUROX_PYTHON), "-c", WORKER, str(path)]
            if args.neurox_master:
                command.append(str(args.neurox_master))
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the NeuroX worker failed:\n{done.stderr}")
            neurox = json.loads(done.stdout)
        sub = RankerInputs(X, ys, tuple(classes), train.index, 0)
        with Timer() as t:
            ours = probeless(sub).order
        nx = np.asarray(neurox["probeless"]["order"])
        results["probeless_vs_neurox"] = {"rows": int(len(X)), "identical_order": bool(np.array_equal(ours, nx)),
                                          "same_top_20_percent": bool(set(ours[:538]) == set(nx[:538])),
                                          "neuroscope_seconds": round(t.seconds, 2),
                                          "neurox_seconds": round(neurox["probeless"]["seconds"], 2)}
        if "iou" in neurox:
            diffs = []
            for c in iou_labels.tolist():
                ours_ap = np.array([average_precisions(X[:, i], ys, len(classes))[c] for i in range(X.shape[1])])
                theirs = np.asarray(neurox["iou"][str(c)])
                diffs.append(float(np.abs(ours_ap - theirs).max()))
            results["iou_vs_neurox"] = {"labels": [str(classes[c]) for c in iou_labels],
                                        "max_abs_ap_difference": diffs,
                                        "neurox_seconds_3_labels": round(neurox["iou_seconds"], 2)}
            with Timer() as t:
                selected, _, _ = greedy_selection(torch.from_numpy(gx).double(), torch.from_numpy(gy), len(gx),
                                               args.gaussian_k, gx.shape[1])
            results["gaussian_vs_neurox"] = {"rows": int(len(gx)), "neurons": int(gx.shape[1]),
                                             "neuroscope": selected, "neurox": neurox["gaussian"]["selected"],
                                             "identical": selected == neurox["gaussian"]["selected"],
                                             "neuroscope_seconds": round(t.seconds, 2),
                                             "neurox_seconds": round(neurox["gaussian"]["seconds"], 2)}
    else:
        results["neurox"] = f"not compared: {NEUROX_PYTHON} missing (bench/README.md sets it up)"
    write_results("rankers", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
