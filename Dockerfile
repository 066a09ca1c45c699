# Nexus: a multi-stage image. The build stage compiles with the -dev packages; the runtime
# stage carries only the shared libraries the binary and the bundled plugins link against
# (tests/integration/test_dockerfile.py checks that list against ldd of what is built).
#
#   docker build -t nexus:latest .
#   docker run -p 8000:8000 -e NEXUS_AUTH_JWT_SECRET_FILE=/run/secrets/jwt ... nexus:latest

FROM debian:12-slim AS build
# The same packages as scripts/install-deps.sh's build profile.
ARG BUILD_PACKAGES="gcc make pkg-config libc6-dev libjansson-dev libyaml-dev libsqlite3-dev \
    libpq-dev libmariadb-dev libssl-dev libhiredis-dev"
RUN apt-get update \
    && apt-get install -y --no-install-recommends ${BUILD_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" all \
    && make install PREFIX=/usr/local DESTDIR=/out

FROM debian:12-slim
ARG RUNTIME_PACKAGES="libjansson4 libyaml-0-2 libsqlite3-0 libpq5 libmariadb3 libssl3 \
    libhiredis0.14 ca-certificates"
RUN apt-get update \
    && apt-get install -y --no-install-recommends ${RUNTIME_PACKAGES} \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 nexus \
    && useradd --uid 1000 --gid nexus --home-dir /app --shell /usr/sbin/nologin nexus \
    && mkdir -p /app/plugins /app/config /data /logs \
    && chown -R nexus:nexus /app /data /logs

COPY --from=build /out/usr/local/bin/nexus /usr/local/bin/nexus
COPY --from=build /out/usr/local/lib/nexus /usr/local/lib/nexus
COPY --chown=nexus:nexus config/config.prod.yaml /app/config/config.yaml

# Your plugins go in /app/plugins (a volume or a derived image); the bundled ones stay
# available beside them. SQLite, when chosen, lives in /data.
ENV NEXUS_CONFIG=/app/config/config.yaml \
    NEXUS_PLUGINS_DIR=/app/plugins:/usr/local/lib/nexus/plugins \
    NEXUS_DATABASE_PATH=/data/nexus.db

WORKDIR /app
USER 1000:1000
EXPOSE 8000
VOLUME ["/data", "/logs"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["nexus", "health"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["nexus"]
CMD ["serve"]
