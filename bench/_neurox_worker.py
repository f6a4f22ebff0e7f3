"""Runs inside NeuroX's own venv (.venv-neurox): NeuroX 1.0.9's probe, or the paper's protocol
scripted the straightforward way with NeuroX's functions, on activations saved as .npy files.

Usage: python _neurox_worker.py JOB.json RESULT.json
"""

import json
import os
import resource
import sys
import time

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")

from neurox.interpretation import ablation, linear_probe  # noqa: E402


def quiet(fn, *args, **kwargs):
    """NeuroX prints per epoch and per evaluation; keep the benchmark output readable."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def train(X, y, l1, l2, epochs, batch_size, seed):
    torch.manual_seed(seed)
    return quiet(linear_probe.train_logistic_regression_probe, X, y, lambda_l1=l1, lambda_l2=l2,
                 num_epochs=epochs, batch_size=batch_size, learning_rate=1e-3)


def accuracy(probe, X, y):
    """Accuracy in %: argmax of the probe's outputs, as NeuroX's evaluate_probe (labels -1 never match)."""
    with torch.no_grad():
        pred = np.concatenate([probe(torch.from_numpy(X[i : i + 65536])).argmax(dim=1).numpy()
                               for i in range(0, len(X), 65536)])
    return 100.0 * float(np.mean(pred == y))


def ordering(probe, n_classes):
    class_to_idx = {str(c): c for c in range(n_classes)}
    order, _ = quiet(linear_probe.get_neuron_ordering, probe, class_to_idx)
    return list(order)


def ablated_accuracy(probe, X, y, keep):
    return accuracy(probe, ablation.zero_out_activations_keep_neurons(X, keep), y)


def top_bottom(order, n_neurons, fraction):
    n = max(1, int(round(fraction * n_neurons)))
    full = list(order) + [j for j in range(n_neurons) if j not in set(order)]
    return full[:n], full[-n:]


def protocol(job, data):
    X, y, Xd, yd, Xt, yt = (data[k] for k in ("X_train", "y_train", "X_dev", "y_dev", "X_test", "y_test"))
    n_classes, n_neurons = job["n_classes"], X.shape[1]
    epochs, batch, seed, fraction = job["epochs"], job["batch_size"], job["seed"], job["fraction"]
    timings = {}
    start = time.perf_counter()
    grid = [(a, b) for a in job["grid"] for b in job["grid"]]
    points = {}
    for l1, l2 in grid:
        probe = train(X, y, l1, l2, epochs, batch, seed)
        top, bottom = top_bottom(ordering(probe, n_classes), n_neurons, fraction)
        points[(l1, l2)] = {"all": accuracy(probe, Xd, yd), "top": ablated_accuracy(probe, Xd, yd, top),
                            "bottom": ablated_accuracy(probe, Xd, yd, bottom)}
    az = points[(0.0, 0.0)]["all"]
    scores = {k: 0.5 * (v["top"] - v["bottom"]) - 0.5 * (az - v["all"]) for k, v in points.items()}
    best = max(grid, key=lambda k: (scores[k], -grid.index(k)))
    timings["lambda_search"] = time.perf_counter() - start

    start = time.perf_counter()
    oracle = train(X, y, best[0], best[1], epochs, batch, seed)
    order = ordering(oracle, n_classes)
    oracle_dev, oracle_test = accuracy(oracle, Xd, yd), accuracy(oracle, Xt, yt)
    top, bottom = top_bottom(order, n_neurons, fraction)
    rng = np.random.default_rng(seed)
    random_set = sorted(rng.choice(n_neurons, size=len(top), replace=False).tolist())
    ablations = {"all": oracle_test, "top": ablated_accuracy(oracle, Xt, yt, top),
                 "random": ablated_accuracy(oracle, Xt, yt, random_set),
                 "bottom": ablated_accuracy(oracle, Xt, yt, bottom)}
    timings["oracle_and_ablation"] = time.perf_counter() - start

    start = time.perf_counter()
    full_order = top_bottom(order, n_neurons, 1.0)[0]
    minimal, k = {}, 1
    deltas = sorted(job["deltas"], reverse=True)
    scan = []
    while deltas:
        n = min(n_neurons, max(1, int(np.floor(k * 0.01 * n_neurons + 0.5))))
        keep = sorted(full_order[:n])
        probe = train(ablation.filter_activations_keep_neurons(X, keep), y, best[0], best[1], epochs, batch, seed)
        dev = accuracy(probe, ablation.filter_activations_keep_neurons(Xd, keep), yd)
        scan.append((n, dev))
        for delta in list(deltas):
            if dev >= oracle_dev - delta or n == n_neurons:
                test = accuracy(probe, ablation.filter_activations_keep_neurons(Xt, keep), yt)
                minimal[str(delta)] = {"n_neurons": n, "dev": dev, "test": test, "neurons": keep}
                deltas.remove(delta)
        k += 1
    timings["minimal_scan"] = time.perf_counter() - start

    start = time.perf_counter()
    selected = minimal[str(min(job["deltas"]))]["neurons"]
    yc, yct = data["control_train"], data["control_test"]
    control_all = train(X, yc, best[0], best[1], epochs, batch, seed)
    control_sel = train(ablation.filter_activations_keep_neurons(X, selected), yc, best[0], best[1], epochs, batch,
                        seed)
    control = {"all": accuracy(control_all, Xt, yct),
               "selected": accuracy(control_sel, ablation.filter_activations_keep_neurons(Xt, selected), yct)}
    timings["control"] = time.perf_counter() - start
    return {
        "timings": timings, "total_seconds": sum(timings.values()), "best": list(best),
        "grid": [{"l1": a, "l2": b, **points[(a, b)], "score": scores[(a, b)]} for a, b in grid],
        "ablation_test": ablations, "oracle_dev": oracle_dev,
        "minimal": {d: {k: v for k, v in m.items() if k != "neurons"} for d, m in minimal.items()},
        "scan": scan, "control_test": control,
        "selectivity_test": {"all": oracle_test - control["all"],
                             "selected": minimal[str(min(job["deltas"]))]["test"] - control["selected"]},
        "probes_trained": len(grid) + 1 + len(scan) + 2,
    }


def main():
    job = json.load(open(sys.argv[1]))
    data = {k: np.load(v) for k, v in job["arrays"].items()}
    if job["mode"] == "probe":
        start = time.perf_counter()
        probe = train(data["X_train"], data["y_train"], job["l1"], job["l2"], job["epochs"], job["batch_size"],
                      job["seed"])
        seconds = time.perf_counter() - start
        result = {"train_seconds": seconds, "dev_accuracy": accuracy(probe, data["X_dev"], data["y_dev"])}
    else:
        result = protocol(job, data)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result["torch_threads"] = torch.get_num_threads()
    json.dump(result, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
