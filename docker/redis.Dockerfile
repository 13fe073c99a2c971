# Redis for the compose stack, from Debian's package on the same base (registries such as
# Docker Hub may be unreachable; where they are not, `image: redis:7` does the same job).
ARG BASE=clicksmith-base:bookworm
FROM ${BASE}
# the base's Debian release fixes the version
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10003 --no-create-home --shell /usr/sbin/nologin redisdata \
    && mkdir -p /data && chown 10003:10003 /data
USER 10003:10003
VOLUME ["/data"]
WORKDIR /data
# append-only file in /data: queued jobs, run records and sessions survive a restart
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--appendonly", "yes", "--dir", "/data"]
