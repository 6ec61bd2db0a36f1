# replay-guard container image.
#   docker build -t replay-guard .
#   docker run -p 8080:8080 -v $PWD/replay-guard.toml:/etc/replay-guard/replay-guard.toml:ro replay-guard
# The build stage runs the same release build command as ./scripts/test.sh.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: built against placeholder sources,
# so this layer is reused until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin replay-guard \
 && rm -rf src target/release/.fingerprint/replay-guard-* target/release/deps/replay_guard-* \
    target/release/deps/libreplay_guard-* target/release/replay-guard
# Then replay-guard itself (the placeholders' fingerprints are gone, so
# cargo rebuilds it whatever the copied files' times are).
COPY src ./src
RUN cargo build --release --locked --bin replay-guard

# Minimal runtime: glibc, CA certificates (https upstreams, AWS), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/replay-guard /usr/local/bin/replay-guard
ENV REPLAY_GUARD_CONFIG=/etc/replay-guard/replay-guard.toml
# 8080: public listener; 9901: admin (/healthz /readyz /metrics). The mounted
# config must listen on 0.0.0.0:8080 and set an admin_listen (0.0.0.0:9901, or
# 127.0.0.1:9901 when only in-container probes need it) for HEALTHCHECK.
EXPOSE 8080 9901
USER 65532:65532
STOPSIGNAL SIGTERM
# `healthcheck` reads admin_listen from $REPLAY_GUARD_CONFIG and asks its
# /healthz (on loopback for a 0.0.0.0 or [::] listener), so it follows the
# mounted config's port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/replay-guard", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/replay-guard"]
CMD ["run"]
