# syntax=docker/dockerfile:1
# The operator on an empty, non-root image: one static binary, no shell, no libc to patch.
#
#   docker build -t REG/kubilitics-ai:TAG .         builds from source in a pinned Rust image
#   make image   (buildah bud --target prebuilt)   copies the binary hack/image.sh built on the host
#
# Both targets produce the same image: FROM scratch, uid 65532, ENTRYPOINT the binary.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
# A static-pie glibc binary (rustls, no OpenSSL); the explicit --target keeps build scripts dynamic.
RUN RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile image --locked \
      --bin kubilitics-ai --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/image/kubilitics-ai /kubilitics-ai

FROM scratch AS base
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubilitics-ai" \
      org.opencontainers.image.description="Talk to your Kubernetes cluster in natural language; changes run only after an approval naming their exact plan id." \
      org.opencontainers.image.source="https://github.com/kubilitics/kubilitics-ai" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
USER 65532:65532
EXPOSE 8080 9443
# PID 1 in the container: the binary itself handles SIGTERM (graceful stop, exit 0).
ENTRYPOINT ["/kubilitics-ai"]
CMD ["run"]

# make image: the static binary built on the host by hack/image.sh (never pulls the Rust image),
# with the host's CA bundle (hosted model endpoints are HTTPS; rustls reads the system roots).
FROM base AS prebuilt
COPY --chmod=0444 dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chmod=0555 dist/kubilitics-ai /kubilitics-ai

# Default target: built from source above, with the Rust image's CA bundle.
FROM base AS release
COPY --from=build --chmod=0444 /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chmod=0555 /kubilitics-ai /kubilitics-ai
