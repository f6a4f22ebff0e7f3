"""Benchmark: the paper's whole protocol, scripted the straightforward way with NeuroX's
functions (one probe training at a time, as the authors' pipeline would), against
``neuroscope run`` on the same activations.

Protocol on both sides: lambda grid scored by S on dev (M = 20 %), oracle with the best
pair, top / random / bottom 20 % ablations on test, the minimal neuron set by the 1 %
scan (deltas 0.5 and 2), control task on all and on the selected neurons. Both use
NeuroX's objective and batch order (neuroscope with --no-shuffle --l2-form norm), one
seed, 10 epochs, batches of 512, and the same control labels. Activations:
all-MiniLM-L6-v2 x the PTB sample, extracted once beforehand (not timed).

    python bench/protocol_vs_neurox.py [--grid 0,1e-3,1e-5] [--epochs 10] [--precisions float32,bfloat16]

The default grid has 3 values (9 pairs) to keep NeuroX's side within the hour on 2
cores; ``--grid 0,1e-1,1e-2,1e-3,1e-4,1e-5,1e-6,1e-7`` is the paper's 64 pairs.
Writes bench/results/protocol_vs_neurox.json.
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
from _common import BENCH_CACHE, DATA, Timer, minilm_pos_store, require_neurox, write_results  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="0,1e-3,1e-5")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="neuroscope runs, one per probe precision (--precision of neuroscope run)")
    parser.add_argument("--max-sentences", type=int, default=None, help="only the first sentences of each split")
    parser.add_argument("--skip-neurox", action="store_true", help="reuse the NeuroX figures of an earlier run")
    args = parser.parse_args()
    grid = [float(v) for v in args.grid.split(",")]
    from neuroscope.cli import main as neuroscope_main
    from neuroscope.control import control_labels
    from neuroscope.store import labels_to_ids

    with tempfile.TemporaryDirectory(prefix="neuroscope-bench-") as tmpdir:
        tmp = Path(tmpdir)
        task, acts, gold, classes = minilm_pos_store(BENCH_CACHE, args.max_sentences)
        arrays = {}
        for split in ("train", "dev", "test"):
            path = tmp / f"X_{split}.npy"
            np.save(path, np.concatenate([block for _, block in acts[split].chunks()]))
            arrays[f"X_{split}"] = str(path)
            np.save(tmp / f"y_{split}.npy", gold[split])
            arrays[f"y_{split}"] = str(tmp / f"y_{split}.npy")
        control = control_labels(task, 0)
        control_classes = np.unique(np.asarray(control["train"]))
        for split in ("train", "dev", "test"):
            np.save(tmp / f"c_{split}.npy", labels_to_ids(control[split], control_classes))
            arrays[f"control_{split}"] = str(tmp / f"c_{split}.npy")

        previous = Path(__file__).resolve().parent / "results" / "protocol_vs_neurox.json"
        if args.skip_neurox and previous.is_file():
            neurox = json.loads(previous.read_text())["neurox"]
        else:
            job = {"mode": "protocol", "arrays": arrays, "grid": grid, "epochs": args.epochs, "batch_size": 512,
                   "seed": 0, "fraction": 0.2, "deltas": [0.5, 2.0], "n_classes": len(classes)}
            (tmp / "job.json").write_text(json.dumps(job))
            worker = Path(__file__).resolve().parent / "_neurox_worker.py"
            with Timer() as t:
                subprocess.run([str(require_neurox()), str(worker), str(tmp / "job.json"), str(tmp / "neurox.json")],
                               check=True)
            neurox = json.loads((tmp / "neurox.json").read_text())
            neurox["wall_seconds"] = t.seconds

        ours, outcome, speedup = {}, {}, {}
        runs = [(p, False) for p in args.precisions.split(",")] + [(p, True) for p in args.precisions.split(",")]
        for precision, fixed in runs:
            # fixed: the lambdas NeuroX's search chose, no search; compares Neu_t / Acc_t at equal lambdas
            name = f"{precision}-at-neurox-lambdas" if fixed else precision
            run_dir = tmp / f"run-{name}"
            argv = ["run", "--model", "minilm", "--task", "pos", "--data-dir", str(DATA), "--seeds", "1",
                    "--epochs", str(args.epochs), "--no-shuffle", "--l2-form", "norm", "--precision",
                    precision, "--out", str(run_dir), "--cache-dir", str(BENCH_CACHE), "--quiet"]
            argv += (["--l1", str(neurox["best"][0]), "--l2", str(neurox["best"][1])] if fixed
                     else ["--grid", args.grid])
            if args.max_sentences:
                argv += ["--max-sentences", str(args.max_sentences)]
            with Timer() as t:
                code = neuroscope_main(argv)
            if code != 0:
                sys.exit(f"neuroscope run failed with code {code}")
            results = json.loads((run_dir / "results.json").read_text())
            seed = results["per_seed"][0]
            search = results["lambda_search"]
            ours[name] = {
                "wall_seconds": t.seconds,
                "timings": json.loads((run_dir / "timings.json").read_text()),
                "grid": None if search is None else search["points"],
                "best": [results["lambdas"]["l1"], results["lambdas"]["l2"]],
                "ablation_test": seed["ablation"]["test"],
                "minimal": {s["delta"]: {"n_neurons": s["n_neurons"], "dev": s["dev_accuracy"],
                                         "test": s["test_accuracy"]} for s in seed["minimal"]["sets"]},
                "selectivity_test": seed["control"]["test"]["selectivity"],
            }
            step = 0.01 * results["neurons"]
            outcome[name] = {
                "same_lambdas": neurox["best"] == ours[name]["best"],
                "neu_t_difference_in_1pct_steps": {
                    d: abs(neurox["minimal"][str(d)]["n_neurons"] - ours[name]["minimal"][d]["n_neurons"]) / step
                    for d in (0.5, 2.0)},
                "acc_t_test_difference": {
                    d: ours[name]["minimal"][d]["test"] - neurox["minimal"][str(d)]["test"] for d in (0.5, 2.0)},
            }
            if not fixed:
                speedup[name] = neurox["wall_seconds"] / ours[name]["wall_seconds"]
    write_results("protocol_vs_neurox", {
        "settings": vars(args), "grid_pairs": len(grid) ** 2, "neurox": neurox, "neuroscope": ours,
        "speedup": speedup, "outcome": outcome})
    return 0


if __name__ == "__main__":
    sys.exit(main())
