# ringside container image.
#
#   docker build -t ringside:0.1.0 .                      # the sidecar (default target)
#   docker build --target origin -t ringside-origin:0.1.0 .  # the demo backend
#
# BASE_IMAGE must be Debian 12 (bookworm) or a derivative: the runtime stage installs
# the bookworm names of the shared libraries the builder linked against.
ARG BASE_IMAGE=debian:12

# ---- build ------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
# The -dev packages the README lists. python3 is only there because the test tree is
# part of the CMake project; no test runs here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      liburing-dev libyaml-dev libhiredis-dev libwslay-dev libxxhash-dev libjansson-dev \
      libcmocka-dev python3-minimal \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target ringside ringside-origin \
 && install -D -s -m 0755 /build/ringside /out/usr/local/bin/ringside \
 && install -D -s -m 0755 /build/test/ringside-origin /out/usr/local/bin/ringside-origin \
 && /out/usr/local/bin/ringside --version

# ---- runtime base: the shared libraries and an unprivileged user ------------------------
FROM ${BASE_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      liburing2 libyaml-0-2 libhiredis0.14 libwslay1 libxxhash0 libjansson4 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 65532 ringside \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ringside

# ---- the demo backend (docker-compose and the Kubernetes examples) ---------------------
FROM runtime AS origin
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ringside-origin" \
      org.opencontainers.image.description="Demo HTTP backend for ringside examples" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/usr/local/bin/ringside-origin /usr/local/bin/ringside-origin
USER 65532:65532
EXPOSE 3000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ringside-origin"]
CMD ["--listen", "0.0.0.0:3000", "--demo"]

# ---- ringside (default target) ----------------------------------------------------------
FROM runtime AS ringside
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ringside" \
      org.opencontainers.image.description="Sidecar HTTP reverse proxy: caching, WebSocket fan-out, metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/usr/local/bin/ringside /usr/local/bin/ringside
# The example configuration as a default; Kubernetes and compose mount their own over it.
# It reads the backend address from RINGSIDE_UPSTREAM (default 127.0.0.1:3000).
COPY examples/ringside.yaml /etc/ringside/ringside.yaml
# Nothing is written at run time (logs go to stdout), so the root filesystem can be
# mounted read-only. ringside handles SIGTERM (drain, exit 0) and SIGHUP (reload) itself
# and starts no child processes, so it runs as PID 1 without an init.
USER 65532:65532
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
# Docker and compose only; Kubernetes uses the probes in the manifests. The metrics
# listener's port is taken from RINGSIDE_METRICS_PORT when the config moves it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${RINGSIDE_METRICS_PORT:-9090} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == *' 200 '* ]]"]
ENTRYPOINT ["/usr/local/bin/ringside"]
CMD ["--config", "/etc/ringside/ringside.yaml"]
