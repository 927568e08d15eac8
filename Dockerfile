# syntax=docker/dockerfile:1
#
# The sitg-bot image: one static-ish binary whose subcommand picks the role
# (`worker`, `operator`, `crd`). The Helm chart and a BotFleet without spec.image
# deploy ghcr.io/sitg/sitg-bot:<crate version>, so tag the image with the version in
# Cargo.toml:
#
#   docker build -t ghcr.io/sitg/sitg-bot:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker push ghcr.io/sitg/sitg-bot:0.1.0
#
# Stages: `chef` installs cargo-chef; `planner` reduces the workspace (the sitg-bot
# package and the simulators' crate, crates/sitg-sandbox, whose manifest the workspace
# needs even though the image never builds it) to a recipe of its dependencies; `builder` compiles those dependencies in a layer of their own
# (rebuilt only when Cargo.toml or Cargo.lock change), then the project itself.
# The final image is distroless (glibc, CA certificates, no shell) and runs as the
# numeric non-root user 65532, which Kubernetes' runAsNonRoot can verify.

ARG RUST_VERSION=1.95

# Build stages produce no image of their own: the OCI labels belong to the final one.
# hadolint ignore=DL3049
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --version "${CARGO_CHEF_VERSION}" --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p sitg-bot --bin sitg-bot --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p sitg-bot --bin sitg-bot \
    && install -D -m 0755 target/release/sitg-bot /out/sitg-bot

# Bookworm on both sides: the binary links against the glibc of its build image.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sitg-bot" \
      org.opencontainers.image.description="SITG GitHub App bot fleet: webhook worker, outbox executor and BotFleet operator" \
      org.opencontainers.image.source="https://github.com/sitg/sitg-bot" \
      org.opencontainers.image.url="https://github.com/sitg/sitg-bot" \
      org.opencontainers.image.documentation="https://github.com/sitg/sitg-bot/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="SITG" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/sitg-bot /usr/local/bin/sitg-bot
USER 65532:65532
# 8080: the worker's PORT (POST /webhooks/github) and the operator's /metrics;
# 9090: the worker's METRICS_PORT (/metrics, /healthz, /readyz).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/sitg-bot"]
CMD ["worker"]
