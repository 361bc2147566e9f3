# syntax=docker/dockerfile:1
# The two binaries: `worker` (package sellwindow-worker) and `starter` (package
# sellwindow-starter: `serve` runs the API, plus tokens and the demo). No system protoc
# needed: protos compile with the pure-Rust protox. The workspace needs Rust 1.92+ (edition 2024).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the target directory between builds (BuildKit,
# the default builder of `docker compose build`); the binaries are copied out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin worker --bin starter \
 && mkdir -p /out \
 && cp target/release/worker target/release/starter /out/

FROM debian:bookworm-slim
# ca-certificates for TLS to outside services (webhooks); curl for the compose healthcheck.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sellwindow
COPY --from=build /out/worker /out/starter /usr/local/bin/
USER sellwindow:sellwindow
EXPOSE 50051 8080
CMD ["starter", "serve"]
