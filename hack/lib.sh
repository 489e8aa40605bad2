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
