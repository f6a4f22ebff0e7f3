"""Benchmark: what the activation store's integrity checks cost (issue 11).

On MiniLM x the PTB sample (train split, float16, 2,688 neurons):

* ``extraction``: the whole extraction into a fresh store, and inside it the CRC-32 pass
  over the finished file that writes the block checksums;
* ``verify``: checking every block of the entry once (CRC-32 and no NaN/inf), what a run
  pays the first time it reads each block;
* ``probe``: one elastic-net probe (the paper's 10 epochs) on a freshly opened entry, with
  the checks on, and with them off (the check replaced by a no-op), alternated ``--repeats``
  times; the difference is the checks' share of a probe's wall time.

    python bench/store_integrity.py [--sentences 3000] [--repeats 3]

Writes bench/results/store_integrity.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, Timer, write_results  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=None, help="train sentences (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from neuroscope.probe import TrainSettings, train_elastic_net
    from neuroscope.registry import Registry
    from neuroscope.loading import load_model, load_task
    from neuroscope.store import ActivationSet, ActivationStore, _checksums, labels_to_ids

    registry = Registry()
    task = load_task(registry, "pos", DATA)
    corpus = task.train.head(args.sentences)
    adapter = load_model(registry, "minilm", "cpu", "last", 32)
    with tempfile.TemporaryDirectory() as tmp:
        store = ActivationStore(Path(tmp))
        with Timer() as extraction:
            acts = store.get_or_extract(adapter, corpus)
        with Timer() as crc:
            _checksums(acts.path / "activations.npy", acts.shape)
        with Timer() as verify:
            ActivationSet(acts.path).verify()
        y = labels_to_ids(corpus.labels(), np.asarray(task.labels))
        settings = TrainSettings()
        timings: dict[str, list[float]] = {"checked": [], "unchecked": []}
        for _ in range(args.repeats):
            for mode in ("checked", "unchecked"):
                fresh = ActivationSet(acts.path)
                if mode == "unchecked":
                    fresh._ensure_verified = lambda first, last: None
                with Timer() as t:
                    train_elastic_net(fresh, y, len(task.labels), [(1e-4, 1e-4)], settings)
                timings[mode].append(t.seconds)
        size = acts.n_tokens * acts.n_neurons * 2
    checked, unchecked = statistics.median(timings["checked"]), statistics.median(timings["unchecked"])
    write_results("store_integrity", {
        "store": {"tokens": acts.n_tokens, "neurons": acts.n_neurons, "bytes": size},
        "extraction": {"seconds": round(extraction.seconds, 3), "checksum_pass_seconds": round(crc.seconds, 3),
                       "checksum_share_percent": round(100 * crc.seconds / extraction.seconds, 2)},
        "verify": {"seconds": round(verify.seconds, 3), "GB_per_s": round(size / verify.seconds / 1e9, 2)},
        "probe": {"checked_seconds": [round(v, 3) for v in timings["checked"]],
                  "unchecked_seconds": [round(v, 3) for v in timings["unchecked"]],
                  "median_overhead_percent": round(100 * (checked - unchecked) / unchecked, 2)},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
