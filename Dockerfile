# segscope: build the release binary, then run it on a slim Debian with nothing else.
# Build context is the repository root (see .dockerignore).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# protoc is not needed (qdrant-client ships generated code); CA certificates come with the image.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY templates ./templates
COPY prompts ./prompts
COPY schemas ./schemas
COPY examples ./examples
RUN cargo build --release --locked --bin segscope

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --shell /usr/sbin/nologin segscope \
    && mkdir -p /data && chown segscope /data
COPY --from=build /src/target/release/segscope /usr/local/bin/segscope
USER segscope
WORKDIR /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["segscope"]
CMD ["serve", "--bind", "0.0.0.0:8080", "--data-dir", "/data"]
