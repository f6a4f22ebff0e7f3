"""Benchmark: what screening costs in fidelity (docs/protocol.md, "Screening").

For each site (hidden, mlp) and task (POS, SEM) of MiniLM, one unscreened run and runs
with ``--screen`` 50 %, 25 % and 10 % of the neurons, all with the same settings
otherwise, then per screened run against the unscreened one: the Jaccard overlap of the
top-20 % sets (as network neuron ids; a screened run's top 20 % is 20 % of K, so the
overlap is also given against the unscreened run's top of the same size), Table 1's test
accuracies (all / top / random / bottom), Neu_t (delta 0.5) with its Acc_t, and the
wall time of each run. Prints a Markdown table and writes bench/results/screening.json.

    python bench/screening.py [--max-sentences 1000,200,200] [--seeds 1] [--l1 1e-4 --l2 1e-5]
                              [--sites hidden,mlp] [--tasks pos,sem] [--shares 50,25,10] [--name screening]

Fixed lambdas (one pair for every run) and a slice keep it to minutes per run on two
cores; ``--l1 search`` runs each cell's own lambda search instead (the default
protocol's, ~4x the time). ``--name`` names the results file (bench/results/NAME.json):
the default protocol on the whole corpora is ``--max-sentences 100000 --seeds 3 --l1
search --name screening_full``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, write_results  # noqa: E402


def run(args: list[str]) -> tuple[dict, float]:
    from neuroscope.cli import main

    start = time.perf_counter()
    code = main(args + ["--quiet"])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"neuroscope {' '.join(args)} exited {code}")
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "results.json").read_text()), seconds


def network_ids(results: dict, local: list[int]) -> list[int]:
    screen = results.get("screen")
    return [screen["neurons"][j] for j in local] if screen and screen["screened"] else list(local)


def jaccard(a: list[int], b: list[int]) -> float:
    a_set, b_set = set(a), set(b)
    return 100.0 * len(a_set & b_set) / max(len(a_set | b_set), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-sentences", default="1000,200,200")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--l1", default="1e-4")
    parser.add_argument("--l2", default="1e-5")
    parser.add_argument("--sites", default="hidden,mlp")
    parser.add_argument("--tasks", default="pos,sem")
    parser.add_argument("--shares", default="50,25,10")
    parser.add_argument("--work", type=Path, default=None, help="run directories and cache (default: a temp dir)")
    parser.add_argument("--name", default="screening", help="the results file: bench/results/NAME.json")
    opts = parser.parse_args()
    work = opts.work or Path(tempfile.mkdtemp(prefix="neuroscope-screening-"))
    lambdas = [] if opts.l1 == "search" else ["--l1", opts.l1, "--l2", opts.l2]
    rows, records = [], []
    for task in opts.tasks.split(","):
        for site in opts.sites.split(","):
            common = ["run", "--model", "minilm", "--task", task, "--site", site, "--data-dir", str(DATA),
                      "--max-sentences", opts.max_sentences, "--seeds", opts.seeds, *lambdas,
                      "--cache-dir", str(work / "cache")]
            base, base_seconds = run(common + ["--out", str(work / f"{task}-{site}-full")])
            n = base["neurons"]
            base_order = base["per_seed"][0]["ranking"]["order"]
            base_top = base_order[:round(0.2 * n)]
            for share in ["100"] + opts.shares.split(","):
                if share == "100":
                    results, seconds = base, base_seconds
                else:
                    results, seconds = run(common + ["--screen", f"{share}%", "--out",
                                                     str(work / f"{task}-{site}-screen-{share}")])
                k = results["neurons"]
                order = network_ids(results, results["per_seed"][0]["ranking"]["order"])
                top = order[:round(0.2 * k)]
                test = {key: value["mean"] for key, value in results["summary"]["ablation"]["test"].items()}
                minimal = results["summary"]["minimal"][str(float(results["deltas"][0]))]
                record = {"task": task, "site": site, "share": int(share), "neurons": k, "network": n,
                          "jaccard_top20": jaccard(top, base_top),
                          "jaccard_same_size": jaccard(top, base_order[:len(top)]),
                          "test": test, "neu_t": minimal["n_neurons"]["mean"],
                          "acc_t": minimal["test"]["selected"]["mean"], "seconds": round(seconds, 1)}
                records.append(record)
                rows.append(f"| {task} | {site} | {share} % ({k:,}) | {record['jaccard_top20']:.1f} | "
                            f"{record['jaccard_same_size']:.1f} | {test['all']:.2f} | {test['top']:.2f} | "
                            f"{test['random']:.2f} | {test['bottom']:.2f} | {record['neu_t']:.0f} "
                            f"({record['acc_t']:.2f}) | {seconds:.0f} |")
    print("| task | site | kept | Jaccard top 20 % | same size | all | top | random | bottom | Neu_t (Acc_t) | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    write_results(opts.name, {"settings": vars(opts) | {"work": str(work)}, "runs": records})


if __name__ == "__main__":
    main()
