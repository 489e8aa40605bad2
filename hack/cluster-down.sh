#!/usr/bin/env bash
# Stops exactly the processes hack/cluster-up.sh started (by PID) and removes their state: the
# member clusters in $CLUSTER_DIR/members/* first, then the main one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -d "$CLUSTER_DIR/pids" ] || [ -d "$CLUSTER_DIR/members" ] || { log "no control plane state in $CLUSTER_DIR"; exit 0; }

alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
stop_cluster() { # dir label
  local dir=$1 label=$2 name f pid
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    f="$dir/pids/$name"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    # A PID file from before a reboot may name someone else's process now: only ours is stopped.
    if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null || echo "${name:0:15}")" = "${name:0:15}" ]; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $label$name (pid $pid)"
    fi
    rm -f "$f"
  done
}
for member in "$CLUSTER_DIR"/members/*; do
  [ -d "$member/pids" ] && stop_cluster "$member" "$(basename "$member") "
done
stop_cluster "$CLUSTER_DIR" ""
[ "${KEEP_CLUSTER_STATE:-}" = 1 ] || rm -rf "$CLUSTER_DIR"
