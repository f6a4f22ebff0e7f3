#!/usr/bin/env bash
# The default run, MiniLM x the whole PTB sample (3 seeds, the paper's 64 pairs, control task),
# as it is (--search grid, the cold scan) and with the faster searches and scans of issue 26,
# back to back on the same machine and store; a first run with fixed lambdas extracts the store,
# so no timed run extracts. Prints per variant the wall time, the steps' seconds (timings.json),
# the chosen lambdas and per seed Table 1's top / bottom and Neu_t / Acc_t at delta 0.5.
#   bash bench/default_run.sh [WORKDIR] [VARIANT ...]
# VARIANT: grid, halving, halving+previous-N, halving+oracle-N (N: --scan-epochs)
set -euo pipefail
work=${1:-$(mktemp -d -t neuroscope-default-run-XXXX)}
shift || true
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then variants=(grid halving halving+previous-2); fi
cd "$(dirname "$0")/.."
python3 -m neuroscope.cli run --model minilm --task pos --data-dir ../shared/data --seeds 1 --l1 0 --l2 0 \
  --no-control --deltas 100 --cache-dir "$work/cache" --out "$work/extract" --quiet --resume
for variant in "${variants[@]}"; do
  extra=(--search "${variant%%+*}")
  if [[ $variant == *+* ]]; then
    scan=${variant#*+}
    extra+=(--scan-start "${scan%-*}" --scan-epochs "${scan##*-}")
  fi
  start=$(date +%s.%N)
  python3 -m neuroscope.cli run --model minilm --task pos --data-dir ../shared/data --cache-dir "$work/cache" \
    --out "$work/run-$variant" --quiet "${extra[@]}"
  wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  python3 - "$work" "$variant" "$wall" <<'PY'
import json, sys
work, variant, wall = sys.argv[1:]
r = json.load(open(f"{work}/run-{variant}/results.json"))
t = json.load(open(f"{work}/run-{variant}/timings.json"))
def total(suffix):
    return sum(v for k, v in t.items() if k.startswith("seed-") and k.endswith(suffix) and isinstance(v, (int, float)))
oracles = sum(t.get(f"seed-{seed['seed']}") or 0 for seed in r["per_seed"])
print(f"{variant}: wall {wall} s; search {t['lambda-search']:.1f} s, oracles {oracles:.1f} s, "
      f"scans {total('-weight-mass-minimal'):.1f} s, control {total('-control'):.1f} s; lambdas "
      f"{r['lambdas']['l1']:g}, {r['lambdas']['l2']:g}")
for seed in r["per_seed"]:
    a, m = seed["ablation"]["test"], seed["minimal"]["sets"][0]
    print(f"  seed {seed['seed']}: test all / top / bottom {a['all']:.2f} / {a['top']:.2f} / {a['bottom']:.2f}; "
          f"Neu_t {m['n_neurons']} (Acc_t {m['test_accuracy']:.2f})")
PY
done
