#!/usr/bin/env bash
# Pass-through benchmark: ringside beside nginx (upstream keepalive) and HAProxy, all in
# front of the same nginx origin, driven by the same wrk settings with the same CPU
# pinning, measured in one interleaved session. See README.md next to this file.
#
# Benchmarks are measurements, never pass/fail tests: the exit status only says whether
# the script itself could run.
set -eu -o pipefail

BENCH_SCRIPT=passthrough.sh
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
RINGSIDE_BACKENDS="uring,epoll"

usage() {
    cat <<EOF
usage: $(basename "$0") [options]

Measures ringside pass-through against nginx (upstream keepalive) and HAProxy, plus a
baseline of wrk straight to the origin, for a ~100 B JSON and a 16 KiB file.

  --runs N               measured runs per target and payload (default $RUNS)
  --duration S           seconds per measured run (default $DURATION)
  --warmup S             seconds of warm-up before every measured run (default $WARMUP)
  --build DIR            build directory holding the ringside binary (default: build/)
  --out FILE             also write a machine-readable summary (TSV) to FILE
  --ringside-backends L  comma list of io_backend values to run ringside with
                         (default $RINGSIDE_BACKENDS; empty to skip ringside)
  -h, --help             this text
EOF
}

while (($#)); do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --build) BUILD_DIR=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --ringside-backends) RINGSIDE_BACKENDS=${2-}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

bench_require
# HAPROXY in the environment names another binary.
HAPROXY=${HAPROXY:-$(find_server haproxy || true)}
bench_init
bench_write_payloads
start_origin

# ---------------------------------------------------------------------------------------
# Targets

add_target origin "$ORIGIN_PORT" 0 "origin (direct)"

start_nginx_proxy() {
    local dir="$WORK/nginx" port
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
$(nginx_temp_paths "$dir")
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    start_pinned "$PROXY_CPU" "$dir/stderr.log" \
        "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    if wait_ready "$STARTED_PID" "http://127.0.0.1:$port/small.json"; then
        add_target nginx "$port" "$STARTED_PID" "nginx"
    else
        skip_target nginx "did not start" "$dir/stderr.log" "$dir/error.log"
    fi
}

start_haproxy() {
    local dir="$WORK/haproxy" port
    [[ -n $HAPROXY && -x $HAPROXY ]] || { skip_target haproxy "haproxy binary not found"; return; }
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    http-reuse always

frontend bench
    bind 127.0.0.1:$port
    default_backend origin

backend origin
    server origin 127.0.0.1:$ORIGIN_PORT
EOF
    start_pinned "$PROXY_CPU" "$dir/stderr.log" "$HAPROXY" -db -f "$dir/haproxy.cfg"
    if wait_ready "$STARTED_PID" "http://127.0.0.1:$port/small.json"; then
        add_target haproxy "$port" "$STARTED_PID" "haproxy"
    else
        skip_target haproxy "did not start" "$dir/stderr.log"
    fi
}

start_ringside() { # backend
    local backend=$1 id="ringside-$1" dir="$WORK/ringside-$1" port
    local bin="$BUILD_DIR/ringside"
    [[ -x $bin ]] || { skip_target "$id" "$bin not found"; return; }
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/ringside.yaml" <<EOF
listen: 127.0.0.1:$port
workers: 1
io_backend: $backend
upstream: {address: 127.0.0.1:$ORIGIN_PORT, pool_size: 64}
metrics: {listen: 127.0.0.1:$(free_port)}
control: {listen: 127.0.0.1:$(free_port)}
log: {level: warn, access: false}
EOF
    start_pinned "$PROXY_CPU" "$dir/stderr.log" "$bin" --config "$dir/ringside.yaml"
    if wait_ready "$STARTED_PID" "http://127.0.0.1:$port/small.json"; then
        add_target "$id" "$port" "$STARTED_PID" "$id"
    else
        skip_target "$id" "did not start" "$dir/stderr.log"
    fi
}

start_nginx_proxy
start_haproxy
IFS=, read -r -a backends <<<"$RINGSIDE_BACKENDS"
for backend in "${backends[@]}"; do
    [[ -n $backend ]] && start_ringside "$backend"
done

# Every target must return the origin's bytes before it is measured.
verify_targets
if ((${#TARGETS[@]} == 0)); then
    die "nothing to measure"
fi

# ---------------------------------------------------------------------------------------
# Measurement and summary

bench_prepare
bench_check_background
bench_run_interleaved

bench_split_targets
BENCH_RESULT_METRICS=(rps p50_us p99_us cpu_us_per_req proxy_cpu_pct rss_kib
                      origin_cpu_us_per_req other_cpu_pct instructions_per_req errors)
{
    printf '# ringside pass-through benchmark\n'
    if [[ -n $HAPROXY ]]; then printf '# haproxy\t%s\n' "$("$HAPROXY" -v 2>&1 | head -n 1)"; fi
} | bench_write_tsv

echo
echo "ringside pass-through benchmark: $RUNS run(s) x ${DURATION}s per target and payload," \
    "interleaved; ${WARMUP}s warm-up before each run"
bench_print_legend
bench_print_tables
bench_print_ratios
bench_copy_out
