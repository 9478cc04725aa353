#!/usr/bin/env bash
# Install what is missing, build, and run ringside with examples/ringside.yaml in front
# of the demo backend. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target ringside ringside-origin

build/test/ringside-origin --listen 127.0.0.1:3000 --demo >/dev/null &
backend=$!
trap 'kill "$backend" 2>/dev/null; wait "$backend" 2>/dev/null || true' EXIT
build/ringside --check-config examples/ringside.yaml

cat <<MSG

ringside is starting on :8080 in front of the demo backend on 127.0.0.1:3000. Try:
  curl -i http://127.0.0.1:8080/api/hello      proxied to the backend
  curl -i http://127.0.0.1:8080/echo           what the backend received
  curl    http://127.0.0.1:9090/metrics        Prometheus metrics
  curl    http://127.0.0.1:9090/readyz         readiness
  kill -HUP \$(pidof ringside)                 reload examples/ringside.yaml
Ctrl-C drains and stops.

MSG
build/ringside --config examples/ringside.yaml
