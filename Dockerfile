# replay-guard container image.
#   docker build -t replay-guard .
#   docker run -p 8080:8080 -v $PWD/replay-guard.toml:/etc/replay-guard/replay-guard.toml:ro replay-guard
# The build stage runs the same release build command as ./scripts/test.sh.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin replay-guard

# Minimal runtime: glibc, CA certificates (https upstreams, AWS), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/replay-guard /usr/local/bin/replay-guard
ENV REPLAY_GUARD_CONFIG=/etc/replay-guard/replay-guard.toml
# 8080: public listener; 9901: admin (/healthz /readyz /metrics). The mounted
# config must listen on 0.0.0.0:8080 and 0.0.0.0:9901 (or 127.0.0.1:9901 when
# only in-container probes need it).
EXPOSE 8080 9901
USER 65532:65532
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/replay-guard", "healthcheck", "--url", "http://127.0.0.1:9901/healthz"]
ENTRYPOINT ["/usr/local/bin/replay-guard"]
CMD ["run"]
