"""Benchmark: what --causal costs, against extracting the corpus once (MiniLM x POS).

The causal step re-runs the test split through the model once per condition (nothing
removed, then top / random / bottom per seed and ranker), all conditions stacked in one
forward pass per batch. Measured here, one after the other on the same sentences:

* ``extract corpus``: the adapter's ``embed`` over train, dev and test (what a run
  without a cache pays once);
* ``extract test``: the same over the test split alone;
* ``causal``: :func:`neuroscope.causal.causal_ablation` over the test split with the
  default run's conditions (1 + 3 x ``--seeds`` x ``--rankers``), scored with random
  probes (the scoring cost does not depend on the weights).

    python bench/causal.py [--seeds 3] [--rankers 1] [--batch-size 32]

Writes bench/results/causal.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, Timer, write_results  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rankers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    from neuroscope.causal import causal_ablation, removal_sets
    from neuroscope.registry import Registry
    from neuroscope.loading import load_model, load_task
    from neuroscope.store import labels_to_ids

    registry = Registry()
    task = load_task(registry, "pos", DATA)
    adapter = load_model(registry, "minilm", "cpu", "last", args.batch_size)
    index = adapter.neuron_index
    results = {"settings": vars(args), "tokens": {name: c.n_tokens for name, c in task.splits.items()}}

    def extract(sentences):
        for group in adapter.batches(sentences):
            adapter.embed([sentences[i] for i in group])

    with Timer() as t:
        for corpus in task.splits.values():
            extract(corpus.words())
    results["extract_corpus_s"] = t.seconds
    with Timer() as t:
        extract(task.test.words())
    results["extract_test_s"] = t.seconds

    rng = np.random.default_rng(0)
    n_labels = len(task.labels)
    probes, conditions = {}, {}
    for seed in range(args.seeds):
        probes[f"seed-{seed}"] = (rng.normal(size=(n_labels, index.n_neurons)).astype(np.float32),
                                  np.zeros(n_labels, np.float32))
        for r in range(args.rankers):
            order = rng.permutation(index.n_neurons)
            for kind, neurons in removal_sets(order, index, 0.2, seed).items():
                conditions[f"seed-{seed}/r{r}/{kind}"] = neurons
    gold = labels_to_ids(task.test.labels(), task.labels)
    with Timer() as t:
        causal_ablation(adapter, task.test.words(), gold, probes, conditions, index, batch_size=args.batch_size)
    results["conditions"] = len(conditions) + 1
    results["causal_s"] = t.seconds
    results["causal_per_extract_corpus"] = t.seconds / results["extract_corpus_s"]
    results["causal_per_condition_per_extract_test"] = t.seconds / results["conditions"] / results["extract_test_s"]
    for key in ("extract_corpus_s", "extract_test_s", "causal_s"):
        print(f"{key:40s} {results[key]:8.1f}")
    print(f"{'conditions':40s} {results['conditions']:8d}")
    print(f"{'causal / extracting the corpus':40s} {results['causal_per_extract_corpus']:8.2f}")
    print(f"{'causal per condition / extracting test':40s} {results['causal_per_condition_per_extract_test']:8.2f}")
    write_results("causal", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
