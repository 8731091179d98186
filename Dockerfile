# tether's container image: built in one stage, run from a small one as a non-root user.
#   docker build -t tether .
#   docker run --rm -p 8080:8080 -e TETHER_DATABASE_URL=postgres://… \
#     -v /srv/tether-secrets.json:/etc/tether/secrets.json:ro tether
FROM rust:1-bookworm AS build
# Debian's packages follow the base image's point release; pinning their versions here would
# break the build at the next one (hadolint DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tether

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/tether --create-home tether
COPY --from=build /src/target/release/tether /usr/local/bin/tether
USER 10001:10001
WORKDIR /var/lib/tether
# Listen on all interfaces inside the container; JSON log lines for the log collector. The
# secrets file is mounted (read-only) from a secret shared by every instance; its path is no
# secret (hadolint DL3064 goes by the variable's name).
# hadolint ignore=DL3064
ENV TETHER_BIND=0.0.0.0:8080 \
    TETHER_LOG_FORMAT=json \
    TETHER_SECRETS_FILE=/etc/tether/secrets.json
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["serve"]
