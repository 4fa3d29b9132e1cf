# Multi-stage build of every Syncline binary. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked \
      --bin syncline-publish --bin syncline-es-indexer --bin syncline-redis-invalidator --bin es-devserver

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 syncline
COPY --from=build /src/target/release/syncline-publish /src/target/release/syncline-es-indexer \
     /src/target/release/syncline-redis-invalidator /src/target/release/es-devserver /usr/local/bin/
COPY schemas /app/schemas
COPY examples /app/examples
WORKDIR /app
USER syncline
