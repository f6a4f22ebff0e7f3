"""Benchmark: the whole protocol out of core on a BERT-base-sized synthetic store.

A synthetic store of ``--tokens`` x 9,984 neurons (13 layers x 768, BERT-base) in
float16 (1,000,000 tokens: ~20 GB on disk), with a few planted informative neurons
per label, goes through ``neuroscope run`` (lambda search on a reduced grid, oracle,
ablations, minimal neuron set, control task) as a registered plugin model and task.
Reports wall time per phase and the peak resident memory (RSS) of the process.

    python bench/scale.py [--tokens 1000000] [--epochs 10] [--grid 0,1e-4] [--precision float32] [--store DIR]

The store is written once under ``--store`` (default ~/.cache/neuroscope-bench) and
reused. Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PlantedAdapter, peak_rss_mb, planted_task, write_results  # noqa: E402


def plugin(tokens: int, labels: int):
    import neuroscope

    module = types.ModuleType("neuroscope_bench_scale")

    @neuroscope.hookimpl
    def register_models(register):
        register("planted-bert-base", lambda **_: PlantedAdapter(13, 768, labels))

    @neuroscope.hookimpl
    def register_tasks(register):
        register("planted", lambda data_dir, **_: planted_task(tokens, labels))

    module.register_models, module.register_tasks = register_models, register_tasks
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--grid", default="0,1e-4")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "neuroscope-bench")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    from neuroscope.orchestrator import Orchestrator
    from neuroscope.settings import RunConfig
    from neuroscope.progress import Reporter
    from neuroscope.registry import Registry

    registry = Registry(extra_plugins={"bench-scale": plugin(args.tokens, args.labels)})
    run_dir = args.store / f"run-{args.tokens}-{int(time.time())}"
    config = RunConfig(model="planted-bert-base", task="planted", data_dir=str(args.store), seeds=(0,),
                       grid=tuple(float(v) for v in args.grid.split(",")), epochs=args.epochs, device=args.device,
                       precision=args.precision, cache_dir=str(args.store))
    reporter = Reporter(quiet=False)
    start = time.time()
    with reporter.running():
        results = Orchestrator(registry, reporter, sys.argv).run(config, run_dir)
    total = time.time() - start
    store_bytes = sum(p.stat().st_size for p in (args.store / "activations").rglob("activations.npy"))
    seed = results["per_seed"][0]
    write_results("scale", {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "tokens": args.tokens, "neurons": results["neurons"], "store_gb_on_disk": store_bytes / 1e9,
        "wall_seconds": total, "peak_rss_mb": peak_rss_mb(),
        "timings": json.loads((run_dir / "timings.json").read_text()),
        "outcome": {"lambdas": results["lambdas"], "ablation_test": seed["ablation"]["test"],
                    "minimal": [{k: s[k] for k in ("delta", "n_neurons", "dev_accuracy", "test_accuracy")}
                                for s in seed["minimal"]["sets"]]},
    })
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "wall_seconds": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
