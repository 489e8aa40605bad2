#!/usr/bin/env bash
# Stops exactly the processes hack/cluster-up.sh started (by PID) and removes their state.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -d "$CLUSTER_DIR/pids" ] || { log "no control plane state in $CLUSTER_DIR"; exit 0; }
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$CLUSTER_DIR/pids/$name"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
done
[ "${KEEP_CLUSTER_STATE:-}" = 1 ] || rm -rf "$CLUSTER_DIR"
