#!/usr/bin/env bash
# The minimal-set scan's starts back to back (issue 26): MiniLM x the whole PTB sample, the
# lambdas the default search chooses for it (1e-3, 1e-5) fixed so that only the scan differs,
# 3 seeds, no control task; the paper's cold scan (every size trained --epochs from zero)
# against --scan-start oracle and previous with 1, 2 and 3 --scan-epochs, one after the other
# on the same machine and store (the first run extracts it). Prints, per variant and seed, the scan's
# seconds (timings.json), the sizes it tried and Neu_t / Acc_t for both deltas.
#   bash bench/scan_starts.sh [WORKDIR]
set -euo pipefail
work=${1:-$(mktemp -d -t neuroscope-scan-starts-XXXX)}
cd "$(dirname "$0")/.."
for variant in cold oracle-1 oracle-2 oracle-3 previous-1 previous-2 previous-3; do
  extra=()
  if [[ $variant != cold ]]; then extra=(--scan-start "${variant%-*}" --scan-epochs "${variant#*-}"); fi
  python3 -m neuroscope.cli run --model minilm --task pos --seeds 3 --l1 1e-3 --l2 1e-5 --no-control \
    --cache-dir "$work/cache" --out "$work/run-$variant" --data-dir ../shared/data --quiet "${extra[@]}"
  python3 - "$work" "$variant" <<'PY'
import json, sys
work, variant = sys.argv[1:]
r = json.load(open(f"{work}/run-{variant}/results.json"))
t = json.load(open(f"{work}/run-{variant}/timings.json"))
cold = json.load(open(f"{work}/run-cold/results.json"))
total = 0.0
for seed, ref in zip(r["per_seed"], cold["per_seed"]):
    s = seed["seed"]
    seconds = t[f"seed-{s}-weight-mass-minimal"]
    total += seconds
    sets = {m["delta"]: m for m in seed["minimal"]["sets"]}
    ref_sets = {m["delta"]: m for m in ref["minimal"]["sets"]}
    cells = "; ".join(f"delta {d:g}: Neu_t {m['n_neurons']} (cold {ref_sets[d]['n_neurons']}), Acc_t "
                      f"{m['test_accuracy']:.2f} (cold {ref_sets[d]['test_accuracy']:.2f})" for d, m in sorted(sets.items()))
    print(f"{variant} seed {s}: scan {seconds:.1f} s, {len(seed['minimal']['sizes'])} sizes; {cells}")
print(f"{variant}: scans {total:.1f} s in all")
PY
done
