# Builds the two binaries: `worker` and `starter` (API, tokens, demo). No system protoc needed:
# protos compile with the pure-Rust protox.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin worker --bin starter

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 sellwindow
COPY --from=build /src/target/release/worker /src/target/release/starter /usr/local/bin/
USER sellwindow
EXPOSE 50051 8080
CMD ["starter", "serve"]
