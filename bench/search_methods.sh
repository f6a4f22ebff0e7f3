#!/usr/bin/env bash
# The lambda search's methods back to back (issue 26): MiniLM x POS, the first 1,000 / 250 / 250
# sentences, the paper's 64-pair grid, seed 0, no control task, delta 2, one after the other on
# the same machine and store (the first run extracts it). Prints, per method, the wall time, the
# search's seconds (timings.json), the chosen pair and its S, Table 1 on test and Neu_t / Acc_t.
#   bash bench/search_methods.sh [WORKDIR]
set -euo pipefail
work=${1:-$(mktemp -d -t neuroscope-search-methods-XXXX)}
cd "$(dirname "$0")/.."
for method in grid halving path; do
  start=$(date +%s.%N)
  python3 -m neuroscope.cli run --model minilm --task pos --seeds 1 --max-sentences 1000,250,250 --no-control \
    --deltas 2 --cache-dir "$work/cache" --out "$work/run-$method" --search "$method" --data-dir ../shared/data --quiet
  wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  python3 - "$work" "$method" "$wall" <<'PY'
import json, sys
work, method, wall = sys.argv[1:]
r = json.load(open(f"{work}/run-{method}/results.json"))
t = json.load(open(f"{work}/run-{method}/timings.json"))
grid = json.load(open(f"{work}/run-grid/results.json"))["lambda_search"]
grid_s = {(p["l1"], p["l2"]): p["score"] for p in grid["points"]}
s, seed = r["lambda_search"], r["per_seed"][0]
best = tuple(s["best"])
own = next(p["score"] for p in s["points"] if (p["l1"], p["l2"]) == best)
a, m = seed["ablation"]["test"], seed["minimal"]["sets"][0]
epochs = sum(p.get("epochs", 10) for p in s["points"])
print(f"{method}: wall {wall} s, search {t['lambda-search']:.1f} s, {epochs} setting-epochs; chose "
      f"l1 {best[0]:g} l2 {best[1]:g}, S {own:.2f} (grid's S of that pair {grid_s[best]:.2f}); test all / top / "
      f"random / bottom {a['all']:.2f} / {a['top']:.2f} / {a['random']:.2f} / {a['bottom']:.2f}; "
      f"Neu_t {m['n_neurons']} (Acc_t {m['test_accuracy']:.2f})")
PY
done
