#!/usr/bin/env bash
# The demo, like a tutorial: a local control plane, the operator with the builtin planner,
# a question, a change request, review of the plan, approval by exact plan id, and the result.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
need_cargo
need_apt curl curl
need_apt python3 python3
PAUSE="${DEMO_PAUSE:-1}"
step() { printf '\n\033[1;32m### %s\033[0m\n' "$*"; [ "$PAUSE" = 0 ] || sleep "$PAUSE"; }
run() { printf '\033[1;36m$ %s\033[0m\n' "$*"; "$@"; }

step "1. Start a real local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes)"
started_cluster=0
if ! { [ -f "$CLUSTER_DIR/pids/kube-apiserver" ] && kill -0 "$(cat "$CLUSTER_DIR/pids/kube-apiserver")" 2>/dev/null; }; then
  "$HACK_DIR/cluster-up.sh"; started_cluster=1
fi
export KUBECONFIG="$CLUSTER_DIR/kubeconfig/admin.kubeconfig"
run kubectl get nodes

step "2. Install the CRDs and build the operator"
run kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established crd/airequests.ai.kubilitics.io crd/aiplans.ai.kubilitics.io >/dev/null
cargo build --quiet --bin kubilitics-ai || die "step 'cargo build' failed"

step "3. Run the operator (builtin planner: offline, deterministic)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/debug/kubilitics-ai run --metrics-addr "127.0.0.1:$port" > "$CLUSTER_DIR/logs/operator.log" 2>&1 &
op=$!
cleanup() {
  kill "$op" 2>/dev/null || true; wait "$op" 2>/dev/null || true
  kubectl delete namespace shop --wait=false >/dev/null 2>&1 || true
  [ "$started_cluster" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ] && "$HACK_DIR/cluster-down.sh" >/dev/null 2>&1
  true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "127.0.0.1:$port/readyz" >/dev/null || die "step 'operator': not ready; see $CLUSTER_DIR/logs/operator.log"
echo "operator ready (pid $op, metrics on 127.0.0.1:$port)"

step "4. A workload to talk about: deployment nginx with 3 replicas in namespace shop"
kubectl delete namespace shop --ignore-not-found --wait=true >/dev/null 2>&1 || true
run kubectl create namespace shop
run kubectl -n shop create deployment nginx --image=nginx:1.27 --replicas=3
kubectl -n shop rollout status deployment/nginx --timeout=60s >/dev/null

wait_phase() { # name phase...
  local name=$1; shift
  for _ in $(seq 1 300); do
    p=$(kubectl -n shop get airequest "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    for want in "$@"; do [ "$p" = "$want" ] && return 0; done
    sleep 0.1
  done
  die "AIRequest $name did not reach $*; it is '$p'"
}

step "5. Ask a question (read-only): examples/how-are-my-pods.yaml"
run kubectl apply -f examples/how-are-my-pods.yaml
wait_phase how-are-my-pods Answered
run kubectl -n shop get airequest how-are-my-pods -o jsonpath='{.status.answer}'; echo

step "6. Ask for a change: examples/scale-nginx.yaml"
cat examples/scale-nginx.yaml
t0=$(date +%s%N)
run kubectl apply -f examples/scale-nginx.yaml
wait_phase scale-nginx AwaitingApproval
t1=$(date +%s%N)
echo "plan written $(( (t1 - t0) / 1000000 )) ms after the AIRequest was created"

step "7. Review the plan: steps, risk, plan id. Nothing has changed yet."
run kubectl -n shop get aiplans
run kubectl -n shop get airequest scale-nginx -o jsonpath='{.status.answer}'; echo
run kubectl -n shop get deployment nginx

plan=$(kubectl -n shop get airequest scale-nginx -o jsonpath='{.status.planRef}')
id=$(kubectl -n shop get aiplan "$plan" -o jsonpath='{.status.planId}')

step "8. A wrong plan id changes nothing (Warning ApprovalMismatch)"
run kubectl -n shop patch aiplan "$plan" --type merge -p '{"spec":{"approval":{"planId":"0000000000000000"}}}'
sleep 1
run kubectl -n shop get deployment nginx

step "9. Approve with the exact plan id $id"
t2=$(date +%s%N)
run kubectl -n shop patch aiplan "$plan" --type merge -p "{\"spec\":{\"approval\":{\"planId\":\"$id\"}}}"
for _ in $(seq 1 300); do
  [ "$(kubectl -n shop get deployment nginx -o jsonpath='{.spec.replicas}')" = 5 ] && break; sleep 0.02
done
t3=$(date +%s%N)
wait_phase scale-nginx Succeeded Failed
echo "deployment updated $(( (t3 - t2) / 1000000 )) ms after the approval was written"
run kubectl -n shop get airequest,aiplan
run kubectl -n shop get airequest scale-nginx -o jsonpath='{.status.answer}'; echo
run kubectl -n shop get deployment nginx
[ "$(kubectl -n shop get deployment nginx -o jsonpath='{.spec.replicas}')" = 5 ] || die "nginx was not scaled"
echo "Deployment nginx now has 5 replicas"

step "10. The audit trail: every decision is an Event (reporter kubilitics-ai)"
kubectl -n shop get events.events.k8s.io --sort-by=.metadata.creationTimestamp \
  -o custom-columns='TYPE:.type,REASON:.reason,OBJECT:.regarding.kind,NAME:.regarding.name,NOTE:.note' \
  | awk 'NR==1 || /kubilitics|Planned|Approv|Step|Succeeded|Drifted|Blocked|Answered|Rejected|Expired/' | cut -c1-160

step "Done. Metrics:"
curl -fs "127.0.0.1:$port/metrics" | grep -E '^kubilitics_(ai_requests_total|tool_executions_total|ai_plans_total)' || true
