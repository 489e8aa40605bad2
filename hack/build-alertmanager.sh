#!/usr/bin/env bash
# Builds Prometheus Alertmanager (cmd/alertmanager) from its Go module (the Go module proxy is the
# only source) into ~/.cache/kubilitics-ai/alertmanager-<version>/bin; cached (a second run is
# instant). The module's go.mod has no replace directives, so the module is copied and built in
# place (`go install pkg@version` would do the same, but refuses when a go.mod has replaces, and a
# copy lets the build reuse the module cache offline on the next version bump).
# `build-alertmanager.sh download` only fetches (for a warm-up in the background).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode="${1:-build}"
if [ "$mode" = build ] && [ -x "$ALERTMANAGER_BIN/alertmanager" ]; then
  exit 0
fi
need_go
need_apt python3 python3
out="$(dirname "$ALERTMANAGER_BIN")"
work="$out/src"
mkdir -p "$ALERTMANAGER_BIN" "$work"
log "alertmanager $ALERTMANAGER_VERSION: fetching modules (step 'go mod download alertmanager')"
dir=$(go mod download -json "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') \
  || die "step 'go mod download github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION' failed"
rm -rf "${work:?}/alertmanager"
cp -r "$dir" "$work/alertmanager"
chmod -R u+w "$work/alertmanager"
# The web UI's compiled assets (ui/app/dist, embedded with go:embed) are built by npm in the
# release process and are not part of the module zip; the tests use only the v2 API, so an empty
# placeholder UI is embedded instead.
for ui in elm mantine; do
  mkdir -p "$work/alertmanager/ui/app/dist/$ui"
  echo '<!doctype html><title>Alertmanager (UI not built)</title>' > "$work/alertmanager/ui/app/dist/$ui/index.html"
done
(cd "$work/alertmanager" && go list -deps ./cmd/alertmanager >/dev/null) \
  || die "step 'go list -deps' (fetching modules) for alertmanager failed"
[ "$mode" = download ] && exit 0
log "alertmanager $ALERTMANAGER_VERSION: compiling (step 'go build alertmanager'; a few minutes cold on 2 cores)"
start=$SECONDS
(cd "$work/alertmanager" && CGO_ENABLED=0 nice go build -trimpath -ldflags "-s -w" \
  -o "$ALERTMANAGER_BIN/alertmanager" ./cmd/alertmanager) || die "step 'go build alertmanager' failed"
log "alertmanager $ALERTMANAGER_VERSION: built in $((SECONDS - start)) s"
rm -rf "$work"
exit 0
