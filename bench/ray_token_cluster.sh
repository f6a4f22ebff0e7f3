#!/usr/bin/env bash
# docs/distributed.md's cluster commands, run as written against a token-authenticated
# two-node Ray cluster simulated on this machine (a head and a second node, 1 CPU each,
# on their own ports and temporary directory), printing a transcript: a driver on the
# cluster (--address HOST:PORT), a driver from outside it (Ray Client, ray://), a Ray Job
# (ray job submit ... --address auto) with a runtime environment, and a driver without
# the token. Stops only the two nodes it started (their process groups), never
# `ray stop`, which would stop every Ray cluster on the machine.
#
# Needs the ray extra (pip install "neuroscope-nlp[ray]": Ray with its dashboard, which
# serves Ray Jobs, and Ray Client) and the corpora in ../shared/data.
#
#     bash bench/ray_token_cluster.sh [DATA_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
DATA=$(cd "$DATA" && pwd)
. bench/_ray_nodes.sh
WORK=$(mktemp -d /tmp/nstok-XXXX)   # short: Ray's socket paths live under it
GCS=$(free_port); CLIENT=$(free_port); DASH=$(free_port)
SMALL=(--max-sentences 150,50,50 --seeds 2 --l1 1e-4 --l2 1e-4 --no-control --deltas 100 --scan-block 1 --quiet
       --data-dir "$DATA" --cache-dir "$WORK/cache")
export RAY_USAGE_STATS_ENABLED=0

step() { printf '\n$ %s\n' "$*"; }
run() { step "$@"; local t0=$SECONDS; "$@"; local rc=$?; echo "[exit $rc, $((SECONDS - t0)) s]"; return 0; }

export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN
step "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<64 hex digits>   # the same on every node and the driver"

step "ray start --head --block --port $GCS --ray-client-server-port $CLIENT --dashboard-port $DASH --num-cpus 1 --temp-dir $WORK/ray &"
NEUROSCOPE_NODE_NAME=head setsid ray start --head --block --port "$GCS" --ray-client-server-port "$CLIENT" \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASH" --num-cpus 1 --temp-dir "$WORK/ray" \
    --disable-usage-stats >"$WORK/head.log" 2>&1 &
HEAD=$!
wait_for_head "$GCS"
step "ray start --block --address 127.0.0.1:$GCS --num-cpus 1 &     # the second node"
NEUROSCOPE_NODE_NAME=second setsid ray start --block --address "127.0.0.1:$GCS" --num-cpus 1 \
    --disable-usage-stats >"$WORK/node.log" 2>&1 &
NODE=$!
cleanup() { stop_nodes "$NODE" "$HEAD"; rm -rf "$WORK"; }
trap cleanup EXIT
wait_for_nodes "$GCS" 2
run ray status --address "127.0.0.1:$GCS"

run neuroscope run --model minilm --task pos --executor ray --address "127.0.0.1:$GCS" --out "$WORK/on-cluster" "${SMALL[@]}"
python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print('nodes:', t['nodes'], 'total', t['total'], 's')" \
    "$WORK/on-cluster/timings.json"

run neuroscope run --model minilm --task pos --executor ray --address "ray://127.0.0.1:$CLIENT" --out "$WORK/client" "${SMALL[@]}"

cat >"$WORK/runtime_env.json" <<EOF
{"env_vars": {"NEUROSCOPE_NODE_NAME": "from-runtime-env"}}
EOF
run ray job submit --address "http://127.0.0.1:$DASH" --runtime-env-json '{"env_vars": {"PYTHONUNBUFFERED": "1"}}' -- \
    neuroscope run --model minilm --task pos --executor ray --address auto --runtime-env "$WORK/runtime_env.json" \
    --out "$WORK/job" "${SMALL[@]}"
python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print('nodes:', t['nodes'])" "$WORK/job/timings.json"

for run_dir in client job; do
  if cmp -s <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); [s.pop('source') for s in r['data'].values()]; print(json.dumps(r, sort_keys=True))" "$WORK/$run_dir/results.json") \
            <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); [s.pop('source') for s in r['data'].values()]; print(json.dumps(r, sort_keys=True))" "$WORK/on-cluster/results.json"); then
    echo "$run_dir: results.json equal to on-cluster's"
  else
    echo "$run_dir: results.json DIFFERS from on-cluster's"
  fi
done

step "env -u RAY_AUTH_TOKEN neuroscope run ... --address 127.0.0.1:$GCS    # a driver without the token"
t0=$SECONDS
env -u RAY_AUTH_TOKEN neuroscope run --model minilm --task pos --executor ray --address "127.0.0.1:$GCS" \
    --out "$WORK/no-token" "${SMALL[@]}" >"$WORK/no-token.log" 2>&1
echo "[exit $?, $((SECONDS - t0)) s; $(wc -l <"$WORK/no-token.log") lines; the last:]"
tail -n 1 "$WORK/no-token.log"
