#!/usr/bin/env bash
# Builds the pinned control plane from the Go module proxy and caches it by version:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd  (one go build)
#   kwok (fake nodes and pods), helm
# A second run finds the binaries and builds nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_go
export GOFLAGS="${GOFLAGS:--mod=mod}" CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)

build_k8s() {
  local have=1
  for b in "${K8S_BINS[@]}"; do [ -x "$K8S_BIN/$b" ] || have=0; done
  if [ $have = 1 ]; then log "kubernetes $K8S_VERSION: cached in $K8S_BIN"; return; fi
  local start=$SECONDS minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local staging="v0.${K8S_VERSION#v1.}"
  local work="$CACHE_DIR/k8s-$K8S_VERSION/src"
  mkdir -p "$work" "$K8S_BIN"
  log "kubernetes $K8S_VERSION: fetching go.mod (step 'download k8s.io/kubernetes')"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p') \
    || die "step 'download k8s.io/kubernetes@$K8S_VERSION' failed"
  local etcd_version
  etcd_version=$(sed -n 's#^[[:space:]]*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$gomod")
  [ -n "$etcd_version" ] || die "step 'find etcd version': not in $gomod"
  {
    echo "module kubilitics.local/controlplane"
    echo
    sed -n 's/^go .*/&/p' "$gomod"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $K8S_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $etcd_version"
    echo ")"
    echo
    echo "replace ("
    # Every staging module of the release, pinned to its published v0.X twin.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#	\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } > "$work/go.mod"
  cat > "$work/tools.go" <<GO
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "kubernetes $K8S_VERSION: resolving modules (step 'go mod tidy')"
  (cd "$work" && go mod tidy) || die "step 'go mod tidy' for kubernetes $K8S_VERSION failed"
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  log "kubernetes $K8S_VERSION + etcd $etcd_version: compiling ${K8S_BINS[*]} (step 'go build'; about 6 min cold on 2 cores)"
  (cd "$work" && go build -trimpath -ldflags "$ld" -o "$K8S_BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3) \
    || die "step 'go build' of kubernetes $K8S_VERSION failed"
  # go names the etcd binary after its module path element "server".
  mv -f "$K8S_BIN/server" "$K8S_BIN/etcd" || die "step 'go build': etcd binary missing"
  log "kubernetes $K8S_VERSION: built in $((SECONDS - start)) s"
}

build_simple() { # name version pkg bindir ldflags
  local name=$1 version=$2 pkg=$3 bindir=$4 ld=$5
  if [ -x "$bindir/$name" ]; then log "$name $version: cached in $bindir"; return; fi
  local start=$SECONDS
  mkdir -p "$bindir"
  log "$name $version: compiling (step 'go install $pkg@$version')"
  GOBIN="$bindir" go install -trimpath -ldflags "-s -w $ld" "$pkg@$version" \
    || die "step 'go install $pkg@$version' failed"
  log "$name $version: built in $((SECONDS - start)) s"
}

want="${*:-k8s kwok helm}"
for w in $want; do
  case $w in
    k8s) build_k8s ;;
    kwok) build_simple kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok "$KWOK_BIN" \
            "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" ;;
    helm) build_simple helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$HELM_BIN" \
            "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
    *) die "unknown component '$w' (k8s, kwok, helm)" ;;
  esac
done
