#!/usr/bin/env bash
# The demo, like a tutorial: a local control plane, the operator with the builtin planner and its
# admission webhook (secure by default: identities stamped at admission, separation of duties),
# alice asks a question and for a change, bob reviews and approves the exact plan id.
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

step "2. Install the CRDs (with the identity policy) and the chart's requester/approver roles; build the operator"
run kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established crd/airequests.ai.kubilitics.io crd/aiplans.ai.kubilitics.io >/dev/null
helm template kubilitics-ai charts/kubilitics-ai --show-only templates/rbac.yaml \
  | awk 'BEGIN{RS="\n---\n"} /kind: ClusterRole\n/ && /name: kubilitics-ai-(requester|approver)\n/ {print "---"; print}' \
  | kubectl apply --server-side --force-conflicts -f - >/dev/null || die "step 'install roles' failed"
kubectl create namespace kubilitics-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
cargo build --quiet --bin kubilitics-ai || die "step 'cargo build' failed"

step "3. Run the operator for namespace shop with its admission webhook (builtin planner: offline, deterministic)"
kubectl delete namespace shop --ignore-not-found --wait=true >/dev/null 2>&1 || true
kubectl create namespace shop >/dev/null
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free); hook=$(free)
run "${CARGO_TARGET_DIR:-target}/debug/kubilitics-ai" run --namespace shop --metrics-addr "127.0.0.1:$port" \
  --webhook-addr "127.0.0.1:$hook" --webhook-url "https://127.0.0.1:$hook" --webhook-configuration kubilitics-ai-demo \
  --state-namespace kubilitics-system > "$CLUSTER_DIR/logs/operator.log" 2>&1 &
op=$!
cleanup() {
  kill "$op" 2>/dev/null || true; wait "$op" 2>/dev/null || true
  kubectl delete mutatingwebhookconfiguration kubilitics-ai-demo --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete namespace shop --wait=false >/dev/null 2>&1 || true
  [ "$started_cluster" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ] && "$HACK_DIR/cluster-down.sh" >/dev/null 2>&1
  true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "127.0.0.1:$port/readyz" >/dev/null || die "step 'operator': not ready; see $CLUSTER_DIR/logs/operator.log"
# The webhook is live once a server-side dry run comes back with the requester stamped.
for _ in $(seq 1 100); do
  kubectl -n shop create --dry-run=server -o jsonpath='{.metadata.annotations}' -f examples/how-are-my-pods.yaml 2>/dev/null \
    | grep -q requester && break; sleep 0.2
done
echo "operator ready (pid $op, metrics on 127.0.0.1:$port, admission webhook on 127.0.0.1:$hook)"

step "4. A workload, and two people: alice may ask (and edit), bob may approve (and edit)"
run kubectl -n shop create deployment nginx --image=nginx:1.27 --replicas=3
run kubectl -n shop create rolebinding alice-asks --clusterrole kubilitics-ai-requester --user alice
run kubectl -n shop create rolebinding bob-approves --clusterrole kubilitics-ai-approver --user bob
for u in alice bob; do kubectl -n shop create rolebinding "$u-edit" --clusterrole edit --user "$u" >/dev/null; done
as() { local user=$1; shift; KUBECONFIG="$CLUSTER_DIR/kubeconfig/$user.kubeconfig" "$@"; }
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

step "5. alice asks a question (read-only): examples/how-are-my-pods.yaml"
run as alice kubectl apply -f examples/how-are-my-pods.yaml
wait_phase how-are-my-pods Answered
run kubectl -n shop get airequest how-are-my-pods -o jsonpath='{.status.answer}'; echo

step "6. alice asks for a change: examples/scale-nginx.yaml"
cat examples/scale-nginx.yaml
t0=$(date +%s%N)
run as alice kubectl apply -f examples/scale-nginx.yaml
wait_phase scale-nginx AwaitingApproval
t1=$(date +%s%N)
echo "plan written $(( (t1 - t0) / 1000000 )) ms after the AIRequest was created"

step "7. Review the plan: steps, risk, plan id. Nothing has changed yet."
run kubectl -n shop get aiplans
run kubectl -n shop get airequest scale-nginx -o jsonpath='{.status.answer}'; echo
run kubectl -n shop get deployment nginx

plan=$(kubectl -n shop get airequest scale-nginx -o jsonpath='{.status.planRef}')
id=$(kubectl -n shop get aiplan "$plan" -o jsonpath='{.status.planId}')

step "8. alice cannot approve her own plan; a wrong plan id changes nothing (Warning ApprovalMismatch)"
run as alice kubectl -n shop patch airequest scale-nginx --type merge -p "{\"spec\":{\"approvedPlanId\":\"$id\"}}" \
  && die "alice approved her own plan" || echo "(refused, as it must be)"
run as bob kubectl -n shop patch aiplan "$plan" --type merge -p '{"spec":{"approval":{"planId":"0000000000000000"}}}'
for _ in $(seq 1 100); do
  kubectl -n shop get events.events.k8s.io --field-selector reason=ApprovalMismatch -o name 2>/dev/null | grep -q . && break; sleep 0.1
done
run kubectl -n shop get deployment nginx

step "9. bob approves the exact plan id $id"
t2=$(date +%s%N)
run as bob kubectl -n shop patch aiplan "$plan" --type merge -p "{\"spec\":{\"approval\":{\"planId\":\"$id\"}}}"
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
