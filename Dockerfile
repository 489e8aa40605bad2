# syntax=docker/dockerfile:1
# Static (musl) binary on an empty, non-root runtime image.
FROM rust:1.95-alpine AS build
# musl-dev follows the base image's Alpine release; pinning it separately would break on every rebuild.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin kubilitics-ai \
 && strip target/release/kubilitics-ai

FROM scratch
COPY --from=build /src/target/release/kubilitics-ai /kubilitics-ai
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/kubilitics-ai"]
CMD ["run"]
