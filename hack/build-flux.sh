#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller from their Go modules (the Go
# module proxy is the only source) into ~/.cache/kubilitics-ai/flux-<versions>/, with their CRDs.
# Each controller's go.mod replaces its API module with ./api, which the module zip does not
# contain (it is a module of its own): we fetch that module at the version go.mod requires and
# put it there, then build in the copied module so its replace directives apply.
# `build-flux.sh download` only fetches (for a warm-up in the background).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode="${1:-build}"
out="$(dirname "$FLUX_BIN")"
if [ "$mode" = build ] && [ -x "$FLUX_BIN/source-controller" ] && [ -x "$FLUX_BIN/kustomize-controller" ] \
   && [ -d "$FLUX_CRDS" ]; then
  exit 0
fi
need_go
need_apt python3 python3
work="$out/src"
mkdir -p "$FLUX_BIN" "$FLUX_CRDS" "$work"
moddir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

prepare() { # name version -> source tree in $work/<name>
  local name=$1 version=$2 dir api_version
  dir=$(moddir "github.com/fluxcd/$name@$version") || die "step 'go mod download $name@$version' failed"
  rm -rf "${work:?}/$name"
  cp -r "$dir" "$work/$name"
  chmod -R u+w "$work/$name"
  api_version=$(awk -v m="github.com/fluxcd/$name/api" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$work/$name/go.mod")
  [ -n "$api_version" ] || die "step 'prepare $name': no version of $name/api in its go.mod"
  dir=$(moddir "github.com/fluxcd/$name/api@$api_version") || die "step 'go mod download $name/api@$api_version' failed"
  cp -r "$dir" "$work/$name/api"
  chmod -R u+w "$work/$name/api"
  cp "$work/$name"/config/crd/bases/*.yaml "$FLUX_CRDS/"
  # Only what the build needs (test-only modules may not be served here).
  (cd "$work/$name" && go list -deps . >/dev/null) || die "step 'go list -deps' (fetching modules) for $name failed"
}

for c in "source-controller $FLUX_SOURCE_VERSION" "kustomize-controller $FLUX_KUSTOMIZE_VERSION"; do
  # shellcheck disable=SC2086  # "name version"
  set -- $c
  [ "$mode" = build ] && [ -x "$FLUX_BIN/$1" ] && continue
  log "flux $1 $2: fetching modules (step 'prepare $1')"
  prepare "$1" "$2"
  [ "$mode" = download ] && continue
  log "flux $1 $2: compiling (step 'go build $1'; several minutes cold on 2 cores)"
  start=$SECONDS
  (cd "$work/$1" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$FLUX_BIN/$1" .) \
    || die "step 'go build $1' failed"
  log "flux $1 $2: built in $((SECONDS - start)) s"
done
[ "$mode" = build ] && rm -rf "$work"
exit 0
