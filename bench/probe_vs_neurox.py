"""Benchmark: one probe, NeuroX 1.0.9 against neuroscope, same activations, same objective.

Both train logistic regression with cross-entropy + l1 |W|_1 + l2 ||W||_2 (NeuroX's
penalty, so neuroscope runs with l2_form="norm"), Adam lr 1e-3, batches of 512, 10
epochs, rows in corpus order (NeuroX does not shuffle; neuroscope with shuffle=False).
NeuroX trains from an in-RAM float32 matrix in its own venv (.venv-neurox); neuroscope
from its on-disk float16 store, once with float32 products (NeuroX's arithmetic) and once
with --precision bfloat16. Datasets: a synthetic store with planted informative
neurons, and the real all-MiniLM-L6-v2 x PTB-sample store.

    python bench/probe_vs_neurox.py [--epochs 10] [--l1 1e-4] [--l2 1e-4]

Prints the figures and writes bench/results/probe_vs_neurox.json.
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
from _common import BENCH_CACHE, PlantedAdapter, Timer, minilm_pos_store, planted_task, require_neurox, write_results  # noqa: E402


#: precision -> the neuroscope variant trained with NeuroX's objective in that precision
SAME_OBJECTIVE = {"float32": "same_objective", "bfloat16": "same_objective_bfloat16"}


def to_npy(acts, directory: Path, name: str) -> str:
    path = directory / f"{name}.npy"
    np.save(path, np.concatenate([block for _, block in acts.chunks()]))
    return str(path)


def compare(name: str, acts: dict, gold: dict, n_classes: int, args, tmp: Path) -> dict:
    from neuroscope.ablation import accuracy
    from neuroscope.probe import ElasticNetProbe, LinearModel, predict_many

    arrays = {"X_train": to_npy(acts["train"], tmp, f"{name}_train"), "X_dev": to_npy(acts["dev"], tmp, f"{name}_dev")}
    for split in ("train", "dev"):
        path = tmp / f"{name}_y_{split}.npy"
        np.save(path, gold[split])
        arrays[f"y_{split}"] = str(path)
    job = {"mode": "probe", "arrays": arrays, "l1": args.l1, "l2": args.l2, "epochs": args.epochs,
           "batch_size": 512, "seed": 0}
    job_path, result_path = tmp / f"{name}_job.json", tmp / f"{name}_result.json"
    job_path.write_text(json.dumps(job))
    worker = Path(__file__).resolve().parent / "_neurox_worker.py"
    subprocess.run([str(require_neurox()), str(worker), str(job_path), str(result_path)], check=True)
    neurox = json.loads(result_path.read_text())

    ours = {}
    variants = (("same_objective", {"shuffle": False, "l2_form": "norm"}),
                ("same_objective_bfloat16", {"shuffle": False, "l2_form": "norm", "precision": "bfloat16"}),
                ("paper_defaults", {}))
    for label, extra in variants:
        probe = ElasticNetProbe(l1=args.l1, l2=args.l2, epochs=args.epochs, batch_size=512, seed=0, **extra)
        with Timer() as t:
            probe.coef_, probe.intercept_ = probe.train_many(acts["train"], gold["train"], n_classes,
                                                             [(args.l1, args.l2)], probe._settings())
            probe.coef_, probe.intercept_ = probe.coef_[0], probe.intercept_[0]
        model = LinearModel(probe.coef_, probe.intercept_, np.arange(acts["dev"].n_neurons))
        dev = accuracy(predict_many(acts["dev"], [model])[0], gold["dev"])
        ours[label] = {"train_seconds": t.seconds, "dev_accuracy": dev}
    return {
        "tokens": acts["train"].n_tokens, "neurons": acts["train"].n_neurons, "labels": n_classes,
        "neurox": neurox, "neuroscope": ours,
        "speedup": {p: neurox["train_seconds"] / ours[k]["train_seconds"] for p, k in SAME_OBJECTIVE.items()},
        "accuracy_difference": {p: ours[k]["dev_accuracy"] - neurox["dev_accuracy"] for p, k in SAME_OBJECTIVE.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--l1", type=float, default=1e-4)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--synthetic-tokens", type=int, default=100_000)
    args = parser.parse_args()
    from neuroscope.store import ActivationStore, labels_to_ids

    results = {"settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="neuroscope-bench-") as tmpdir:
        tmp = Path(tmpdir)
        task = planted_task(args.synthetic_tokens, 20)
        adapter = PlantedAdapter(7, 384, 20)
        store = ActivationStore(tmp / "store")
        acts = {n: store.get_or_extract(adapter, c) for n, c in task.splits.items()}
        classes = np.asarray(task.labels)
        gold = {n: labels_to_ids(task.splits[n].labels(), classes) for n in task.splits}
        results["synthetic"] = compare("synthetic", acts, gold, len(classes), args, tmp)
        _, acts, gold, classes = minilm_pos_store(BENCH_CACHE)
        results["minilm_ptb"] = compare("minilm", acts, gold, len(classes), args, tmp)
    write_results("probe_vs_neurox", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
