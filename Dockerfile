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
# The image's binaries keep their symbol table (a panic's backtrace names every function)
# but no DWARF: the release profile's line tables and the standard library's debug info
# are 75 MB of the 100 MB binary, and would push the image past 30 MB compressed. Builds
# for systemd hosts keep them (file:line in backtraces).
#
# Stages: `builder` compiles the sitg-bot binary and the simulators' binary
# (crates/sitg-sandbox) in one cargo invocation, with the cargo registry and the target
# dir in build-cache mounts, so a rebuild after a source change compiles only the
# project's own crates; `sandbox` is the simulators' image (`--target sandbox`, used by
# the tests on a real node); the last stage is the sitg-bot image.
# The runtime images are distroless (glibc, CA certificates, no shell) and run as the
# numeric non-root user 65532, which Kubernetes' runAsNonRoot can verify.
# scripts/image.sh builds both with podman, offline, from local stand-ins of the two
# base images.

ARG RUST_VERSION=1.95

# Build stages produce no image of their own: the OCI labels belong to the final one.
# hadolint ignore=DL3049
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# The source revision for sitg_bot_build_info (the build context has no .git).
ARG REVISION=unknown
ENV SITG_BUILD_REVISION=${REVISION}
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p sitg-bot --bin sitg-bot -p sitg-sandbox --bin sitg-sandbox \
    && mkdir -p /out \
    && objcopy --strip-debug target/release/sitg-bot /out/sitg-bot \
    && objcopy --strip-debug target/release/sitg-sandbox /out/sitg-sandbox

# The simulators of GitHub and the SITG backend (`sitg-sandbox serve`), for tests on a
# cluster: docker build --target sandbox -t ghcr.io/sitg/sitg-sandbox:0.1.0 .
FROM gcr.io/distroless/cc-debian12:nonroot AS sandbox
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sitg-sandbox" \
      org.opencontainers.image.description="Simulators of GitHub and the SITG backend for testing sitg-bot" \
      org.opencontainers.image.source="https://github.com/sitg/sitg-bot" \
      org.opencontainers.image.url="https://github.com/sitg/sitg-bot" \
      org.opencontainers.image.documentation="https://github.com/sitg/sitg-bot/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="SITG" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/sitg-sandbox /usr/local/bin/sitg-sandbox
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sitg-sandbox"]
CMD ["serve"]

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
