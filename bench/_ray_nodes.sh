# Shared by the bench scripts that start their own Ray nodes on this machine (sourced):
# a free port, waiting for a head and for its nodes, and stopping only the nodes a script
# started (their process groups), never `ray stop`, which stops every Ray cluster here.

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_head() {  # PORT: until the head's GCS listens (at most 120 s)
  for _ in $(seq 120); do
    python3 -c "import socket, sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', $1)))" && return 0; sleep 1
  done
  return 1
}

wait_for_nodes() {  # PORT N: until the cluster has N nodes (at most 60 s)
  for _ in $(seq 60); do
    [ "$(ray status --address "127.0.0.1:$1" 2>/dev/null | grep -c 'node_')" -ge "$2" ] && return 0; sleep 1
  done
  return 1
}

stop_nodes() {  # PID...: `ray start --block` leaders; SIGTERM stops what each started, its group is killed after 30 s
  local pid alive
  for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null; done
  for _ in $(seq 30); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break; sleep 1
  done
  for pid in "$@"; do kill -KILL -- "-$pid" 2>/dev/null; done
  wait 2>/dev/null
}
