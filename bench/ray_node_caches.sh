#!/usr/bin/env bash
# Two Ray nodes on this machine with node-local activation caches, and what placement
# does to them: each node runs in its own mount namespace (unshare -m, needs root) where
# its own directory is bind-mounted on the one cache path every unit is given, so a unit
# sees only its node's cache, as on machines with local disks. Runs MiniLM x POS and
# chunking (2 seeds each) with --placement spread (Ray's own placement) and --placement
# data (a cell's units prefer the node that extracted its activations), each from empty
# caches, and prints per run the wall time, the units that extracted again and where
# each unit ran. Stops only the two nodes it started.
#
#     bash bench/ray_node_caches.sh [DATA_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
DATA=$(cd "$DATA" && pwd)
. bench/_ray_nodes.sh
WORK=$(mktemp -d /tmp/nsnc-XXXX)
GCS=$(free_port)
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE=token   # the nodes and the driver share a token (Ray 2.59+ may otherwise generate one per node)
RAY_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN
mkdir -p "$WORK/cache" "$WORK/cache-head" "$WORK/cache-second"

node() {  # NAME, then ray start's own arguments: a node whose cache path shows its own directory
  local name=$1; shift
  NEUROSCOPE_NODE_NAME=$name setsid unshare -m sh -c \
    "mount --bind '$WORK/cache-$name' '$WORK/cache' && exec ray start --block --num-cpus 1 --disable-usage-stats $*" \
    >"$WORK/$name.log" 2>&1 &
  echo $!
}
HEAD=$(node head --head --port "$GCS" --include-dashboard=false --temp-dir "$WORK/ray")
wait_for_head "$GCS"
SECOND=$(node second --address "127.0.0.1:$GCS")
cleanup() { stop_nodes "$SECOND" "$HEAD"; rm -rf "$WORK"; }
trap cleanup EXIT
wait_for_nodes "$GCS" 2

for placement in spread data; do
  rm -rf "$WORK"/cache-head/* "$WORK"/cache-second/*
  t0=$(date +%s.%N)
  neuroscope run --model minilm --task pos,chunk --executor ray --address "127.0.0.1:$GCS" --placement "$placement" \
      --runs-dir "$WORK/runs-$placement" --cache-dir "$WORK/cache" --data-dir "$DATA" --max-sentences 300,100,100 \
      --seeds 2 --l1 1e-4 --l2 1e-4 --no-control --deltas 100 --scan-block 1 --quiet 2>"$WORK/$placement.err"
  rc=$?
  t1=$(date +%s.%N)
  [ "$rc" -eq 0 ] || { echo "--placement $placement: exit $rc"; tail -n 5 "$WORK/$placement.err"; continue; }
  python3 - "$placement" "$rc" "$t0" "$t1" "$WORK/runs-$placement" <<'EOF'
import json, sys
from pathlib import Path
placement, rc, t0, t1, runs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])
again, seconds = [], 0.0
for run in sorted(runs.iterdir()):
    for unit in sorted((run / "timings").glob("*.json")):
        t = json.loads(unit.read_text())
        if t.get("re-extraction"):
            again.append(f"{run.name.split('-minilm-')[1]}:{unit.stem}@{t['node']}")
            seconds += t["re-extraction"]
    print(f"  {run.name}: nodes {json.loads((run / 'timings.json').read_text())['nodes']}")
print(f"--placement {placement}: exit {rc}, wall {t1 - t0:.0f} s, {len(again)} re-extractions ({seconds:.0f} s): "
      f"{', '.join(again) or 'none'}")
EOF
done
python3 - "$WORK" <<'EOF2'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
def numbers(run):
    r = json.loads((run / "results.json").read_text())
    for split in r["data"].values():
        split.pop("source")
    return r
for spread in sorted((work / "runs-spread").iterdir()):
    same = numbers(spread) == numbers(work / "runs-data" / spread.name)
    print(f"{spread.name}: results.json {'equal' if same else 'DIFFERENT'} under both placements")
EOF2
