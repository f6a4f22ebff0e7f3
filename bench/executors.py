"""Benchmark: the executors on this machine, and what a cluster would gain.

1. The same 2 x 2 matrix (MiniLM and a random-weight BERT saved to disk, x POS and
   chunking, small slices, one seed) run with ``--executor local`` and with
   ``--executor ray`` (a local Ray with ``--cpus`` CPUs, one CPU per unit), each with a
   fresh activation cache: wall time, and Ray's overhead in seconds and percent.
2. Two units on one node: one cell alone with 1 CPU, then the same cell twice at once
   under Ray (2 CPUs, 1 each): with threads limited to the unit's CPUs, the pair should
   cost about what one costs (not 2x, and far from the 8-14x of oversubscription). Then
   one cell with 2 seeds, its units in order and with ``--executor local --cpus 2`` (the
   two seed units at once).
3. From a finished run's ``timings.json`` (``--timings RUN_DIR``, e.g. a default MiniLM x
   POS run): the unit graph (extraction and the lambda search, then each seed's unit in
   parallel, then the report), its
   critical path against its total work, per cell and for the paper's study (4 models x
   4 tasks x 3 seeds, every cell costing what the measured one did): the speed-up bound
   on a cluster with enough workers.

    python bench/executors.py [--cpus 2] [--timings runs/2026-11-25-minilm-pos]

Writes bench/results/executors.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO, write_results  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from decoders import save_random_bert  # noqa: E402

SMALL = ["--max-sentences", "300,100,100", "--seeds", "1", "--l1", "1e-4", "--l2", "1e-4", "--no-control", "--quiet"]


def neuroscope(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "neuroscope.cli", "run", *args], check=True)
    return time.perf_counter() - start


def two_at_once(cell: list[str], work: Path, cpus: int) -> float:
    """Wall seconds of two identical cells run at once as Ray units of 1 CPU each (the
    activations already in the cache)."""
    from neuroscope.cli import run_parser
    from neuroscope.executors import plan_units, write_files
    from neuroscope.planning import plan_runs
    from neuroscope.settings import request_from_values
    from neuroscope_plugins.executors import RayExecutor

    args = run_parser().parse_args(cell + ["--out", str(work / "unused")])
    config = plan_runs(request_from_values(vars(args))).cells[0][0]
    units = [attrs.evolve(u, after=tuple(a for a in u.after if not a.startswith("extract ")))  # extracted already
             for u in plan_units([(config, work / "pair-a"), (config, work / "pair-b")], cpus_per_unit=1)
             if u.kind != "extract"]

    def report(unit, outcome) -> None:
        if not outcome.ok:
            raise SystemExit(f"{unit.id} failed: {outcome.message}")
        write_files(Path(unit.run_dir), outcome.files)

    executor = RayExecutor(cpus=cpus)
    executor._start()
    try:
        start = time.perf_counter()
        executor.run(units, report)
        return time.perf_counter() - start
    finally:
        executor.ray.shutdown()


def seed_graph(timings: dict) -> dict[str, float]:
    """Critical path and total work of one cell's units: from each unit's seconds when the
    run recorded them (extract, search, seed-N, finish), else from the steps'."""
    if "units" in timings:
        units = {k: float(v) for k, v in timings["units"].items()}
        seeds = {k.split("-", 1)[1]: v for k, v in units.items() if k.startswith("seed-")}
        extraction, search, rest = units.get("extract", 0.0), units.get("search", 0.0), units.get("finish", 0.0)
        chain = max(seeds.values()) if seeds else 0.0
        return {"extraction": extraction, "search": search, "seed_chains": seeds, "other": rest,
                "critical_path": extraction + search + chain + rest,
                "total_work": extraction + search + sum(seeds.values()) + rest}
    t = {k: float(v or 0.0) for k, v in timings.items() if k != "total"}
    extraction, search = t.get("extraction", 0.0), t.get("lambda-search", 0.0)
    seeds = {}
    for key, value in t.items():
        if key.startswith("seed-"):
            seed = key.split("-")[1]
            seeds[seed] = seeds.get(seed, 0.0) + value
    rest = sum(v for k, v in t.items() if k not in ("extraction", "lambda-search") and not k.startswith("seed-"))
    chain = max(seeds.values()) if seeds else 0.0
    return {"extraction": extraction, "search": search, "seed_chains": seeds, "other": rest,
            "critical_path": extraction + search + chain + rest,
            "total_work": extraction + search + sum(seeds.values()) + rest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--timings", type=Path, default=None, help="a finished run directory (its timings.json)")
    args = parser.parse_args()
    results: dict = {"settings": {"cpus": args.cpus, "timings": str(args.timings) if args.timings else None}}
    work = Path(tempfile.mkdtemp(prefix="neuroscope-bench-executors-"))
    try:
        bert = save_random_bert(work / "bert", hidden=64, layers=4)
        matrix = ["--model", f"minilm,hf:{bert}", "--task", "pos,chunk", "--data-dir", str(DATA), *SMALL]
        local = neuroscope(*matrix, "--runs-dir", str(work / "local"), "--cache-dir", str(work / "cache-local"))
        ray = neuroscope(*matrix, "--runs-dir", str(work / "ray"), "--cache-dir", str(work / "cache-ray"),
                         "--executor", "ray", "--cpus", str(args.cpus))
        results["matrix"] = {"local_s": local, "ray_s": ray, "overhead_s": ray - local,
                             "overhead_percent": 100 * (ray - local) / local}
        print(f"2 x 2 matrix: local {local:.1f} s, ray {ray:.1f} s ({ray - local:+.1f} s, "
              f"{100 * (ray - local) / local:+.0f} %)")
        one = ["--model", "minilm", "--task", "pos", "--data-dir", str(DATA), *SMALL, "--cache-dir",
               str(work / "cache-local")]
        alone = neuroscope(*one, "--out", str(work / "alone"), "--cpus-per-unit", "1")
        pair = two_at_once(one, work, args.cpus)
        results["two_units"] = {"one_alone_1cpu_s": alone, "two_at_once_1cpu_each_s": pair, "ratio": pair / alone}
        print(f"one cell alone, 1 CPU: {alone:.1f} s; the same cell twice at once under Ray, 1 CPU each: "
              f"{pair:.1f} s ({pair / alone:.2f}x)")
        seeds = ["--model", "minilm", "--task", "pos", "--data-dir", str(DATA), *SMALL, "--seeds", "2",
                 "--cache-dir", str(work / "cache-local")]
        in_order = neuroscope(*seeds, "--out", str(work / "seeds-in-order"))
        at_once = neuroscope(*seeds, "--out", str(work / "seeds-at-once"), "--cpus", str(args.cpus))
        results["seed_units"] = {"in_order_s": in_order, "at_once_s": at_once, "speedup": in_order / at_once}
        print(f"one cell, 2 seeds: local in order (all threads) {in_order:.1f} s; local --cpus {args.cpus} (the seed "
              f"units at once, 1 CPU each) {at_once:.1f} s ({in_order / at_once:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.timings:
        timings = json.loads((args.timings / "timings.json").read_text())
        cell = seed_graph(timings)
        n_cells, n_models = 16, 4
        study = {"cells": n_cells, "total_work": n_cells * cell["total_work"],
                 "critical_path_seed_units": cell["critical_path"], "critical_path_cell_units": cell["total_work"]}
        results["graph"] = {"cell": cell, "paper_study": study}
        print(f"one cell ({args.timings.name}): total work {cell['total_work']:.0f} s, critical path at seed "
              f"granularity {cell['critical_path']:.0f} s ({cell['total_work'] / cell['critical_path']:.2f}x)")
        print(f"paper study ({n_models} models x 4 tasks x 3 seeds, {n_cells} cells): total work "
              f"{study['total_work']:.0f} s; critical path {cell['total_work']:.0f} s with cell units "
              f"({study['total_work'] / cell['total_work']:.0f}x with 16 workers), {cell['critical_path']:.0f} s with "
              f"seed units ({study['total_work'] / cell['critical_path']:.0f}x with 48 workers)")
    write_results("executors", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
