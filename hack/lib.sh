#!/usr/bin/env bash
# Shared settings for the harness scripts: pinned versions, cache locations, logging, and the
# prerequisite checks (need_apt, need_go, need_rust, ...).
# shellcheck disable=SC2034  # variables used by the scripts that source this file
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
ALERTMANAGER_BIN="$CACHE_DIR/alertmanager-$ALERTMANAGER_VERSION/bin"

# The local LLM (hack/llm/): a portable x86-64-v3 build of llama-server — the native build uses
# AMX where the CPU reports it, and AMX matmul segfaults on this VM (the kernel does not grant the
# tile state); AVX2 is safe. `start_llm` builds/finds it and the model, starts the server on a
# free port and sets LLM_PORT and LLM_PID.
LLM_CACHE_DIR="$CACHE_DIR/llm-x86-64-v3"
start_llm() {
  export LLM_CACHE="$LLM_CACHE_DIR"
  export LLM_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  need_apt python3 python3
  bash "$HACK_DIR/llm/install.sh" \
    || die "step 'hack/llm/install.sh' failed (the message above names what is missing); the local-model tests need llama-server and the model"
  LLM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  LLM_PID=$(PORT=$LLM_PORT bash "$HACK_DIR/llm/serve.sh") || die "step 'hack/llm/serve.sh' failed"
}

# ---------------------------------------------------------------- prerequisites
# Each script asks for the tools it uses. Missing Debian packages are installed when running as
# root (apt-get update once per run, then apt-get install); otherwise the script stops with the
# command to run. hack/doctor.sh lists them all without installing anything.
apt_install() { # debian-package...: 0 when installed
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  local out
  out=$(mktemp)
  log "installing Debian's $* (step 'apt-get install -y $*')"
  if [ "${KUBILITICS_APT_UPDATED:-0}" != 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$out" 2>&1 \
      || { tail -n 5 "$out" >&2; rm -f "$out"; return 1; }
    export KUBILITICS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$out" 2>&1 \
    || { tail -n 5 "$out" >&2; rm -f "$out"; return 1; }
  rm -f "$out"
}

need_apt() { # command debian-package...: the command on PATH, installing the packages as root
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  apt_install "$@" || die "install $cmd: apt-get install -y $*"
  command -v "$cmd" >/dev/null 2>&1 || die "install $cmd: apt-get install -y $* (installed, but '$cmd' is still not on PATH)"
}

need_cxx() { command -v c++ >/dev/null 2>&1 || need_apt g++ g++; }

need_pip() {
  need_apt python3 python3
  python3 -m pip --version >/dev/null 2>&1 && return 0
  apt_install python3-pip || die "install pip: apt-get install -y python3-pip"
  python3 -m pip --version >/dev/null 2>&1 \
    || die "install pip for $(command -v python3): apt-get install -y python3-pip (installed, but 'python3 -m pip' still fails)"
}

# git, and git's http-backend (the Flux test serves a repository over smart HTTP with it).
need_git() {
  need_apt git git
  [ -x "$(git --exec-path)/git-http-backend" ] || apt_install git \
    || die "install git-http-backend: apt-get install -y git"
  [ -x "$(git --exec-path)/git-http-backend" ] \
    || die "install git-http-backend: apt-get install -y git ($(git --exec-path)/git-http-backend is missing)"
}

# The Go toolchain (builds the control plane, kwok, helm and Flux; GOTOOLCHAIN=auto fetches the
# exact release a module asks for): on PATH, else the official tarball's /usr/local/go/bin.
GO_INSTALL="curl -fsSL https://go.dev/dl/go$GO_VERSION.linux-amd64.tar.gz | tar -C /usr/local -xz"
find_go() { command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; }; }
need_go() {
  local go
  go=$(find_go) || die "install go: $GO_INSTALL (then it is found in /usr/local/go/bin)"
  command -v go >/dev/null 2>&1 || export PATH="${go%/go}:$PATH"
}

# Rust: cargo (+ the rustup components given, e.g. rustfmt clippy), added with rustup when missing.
RUST_INSTALL="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy"
need_cargo() { command -v cargo >/dev/null 2>&1 || die "install Rust (cargo, rustc): $RUST_INSTALL"; }
need_rust() { # component...
  need_cargo
  local c sub missing=()
  for c in "$@"; do
    case $c in rustfmt) sub=fmt ;; *) sub=$c ;; esac
    cargo "$sub" --version >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} = 0 ] && return 0
  command -v rustup >/dev/null 2>&1 || die "install ${missing[*]}: rustup component add ${missing[*]} (no rustup on PATH)"
  log "installing ${missing[*]} (step 'rustup component add ${missing[*]}')"
  rustup component add "${missing[@]}" >&2 || die "install ${missing[*]}: rustup component add ${missing[*]} failed"
}
