#!/usr/bin/env bash
# Shared settings for the harness scripts: pinned versions, cache locations, logging.
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
CACHE_DIR="${KUBILITICS_CACHE_DIR:-$HOME/.cache/kubilitics-ai}"
K8S_BIN="$CACHE_DIR/k8s-$K8S_VERSION/bin"
KWOK_BIN="$CACHE_DIR/kwok-$KWOK_VERSION/bin"
HELM_BIN="$CACHE_DIR/helm-$HELM_VERSION/bin"
# The running control plane keeps its state here (certs, kubeconfigs, pids, logs).
CLUSTER_DIR="${KUBILITICS_CLUSTER_DIR:-$ROOT_DIR/.cluster}"
export PATH="$K8S_BIN:$KWOK_BIN:$HELM_BIN:$PATH"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }
FLUX_BIN="$CACHE_DIR/flux-$FLUX_SOURCE_VERSION-$FLUX_KUSTOMIZE_VERSION/bin"
FLUX_CRDS="$CACHE_DIR/flux-$FLUX_SOURCE_VERSION-$FLUX_KUSTOMIZE_VERSION/crds"

# The local LLM (hack/llm/): a portable x86-64-v3 build of llama-server — the native build uses
# AMX where the CPU reports it, and AMX matmul segfaults on this VM (the kernel does not grant the
# tile state); AVX2 is safe. `start_llm` builds/finds it and the model, starts the server on a
# free port and sets LLM_PORT and LLM_PID.
start_llm() {
  export LLM_CACHE="$CACHE_DIR/llm-x86-64-v3"
  export LLM_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  bash "$HACK_DIR/llm/install.sh" || die "step 'hack/llm/install.sh' failed"
  LLM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  LLM_PID=$(PORT=$LLM_PORT bash "$HACK_DIR/llm/serve.sh") || die "step 'hack/llm/serve.sh' failed"
}
