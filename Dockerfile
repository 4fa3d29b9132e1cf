# Multi-stage build of the Syncline product binaries. Used by docker-compose.yml.
# The ES dev server (dev/es-devserver) is a development and test tool and is deliberately
# not part of this image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built with system OpenSSL (TLS, SCRAM, OAUTHBEARER), Cyrus SASL (GSSAPI)
# and libcurl (OAUTHBEARER/OIDC token retrieval): see docs/connecting.md.
RUN apt-get update && apt-get install -y --no-install-recommends \
      cmake libssl-dev libsasl2-dev libcurl4-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked \
      --bin syncline-publish --bin syncline-es-indexer --bin syncline-redis-invalidator \
      --bin syncline-ctl

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates curl libssl3 libsasl2-2 libsasl2-modules libsasl2-modules-gssapi-mit libcurl4 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 syncline
COPY --from=build /src/target/release/syncline-publish /src/target/release/syncline-es-indexer \
     /src/target/release/syncline-redis-invalidator /src/target/release/syncline-ctl /usr/local/bin/
COPY schemas /app/schemas
COPY examples /app/examples
WORKDIR /app
USER syncline
