#!/usr/bin/env bash
# Cache-hit benchmark: ringside's response cache beside nginx proxy_cache and Varnish, all
# in front of the same nginx origin, driven by the same wrk settings with the same CPU
# pinning, measured in one interleaved session. Every measured run must be served from
# the cache; a peer that is not serving hits invalidates its runs. See README.md next to
# this file.
#
# Benchmarks are measurements, never pass/fail tests: the exit status only says whether
# the script could run (2) and whether every peer served hits (3 if one did not).
set -eu -o pipefail

BENCH_SCRIPT=cache.sh
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
PEERS="nginx,varnish,ringside-uring,ringside-epoll"
STORAGE_MIB=256 # every peer's cache size
# A measured run counts only if at most this share of its requests reached the origin
# (and, where the peer counts its hits, at least 100 minus this share were hits).
MISS_TOLERANCE_PCT=1

usage() {
    cat <<EOF
usage: $(basename "$0") [options]

Measures cache hits of ringside against nginx (proxy_cache) and Varnish for a ~100 B
JSON and a 16 KiB file, all in front of one nginx origin.

  --runs N        measured runs per peer and payload (default $RUNS)
  --duration S    seconds per measured run (default $DURATION)
  --warmup S      seconds of warm-up before every measured run (default $WARMUP)
  --build DIR     build directory holding the ringside binary (default: build/)
  --out FILE      also write a machine-readable summary (TSV) to FILE
  --peers LIST    comma list of peers to measure, from nginx, varnish,
                  ringside-uring, ringside-epoll (default: all of them)
  -h, --help      this text

Exit status: 0 when every measured peer served its runs from its cache, 3 when one did
not (its rows read INVALID), 2 when the benchmark could not run.
EOF
}

while (($#)); do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --build) BUILD_DIR=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --peers) PEERS=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

IFS=, read -r -a PEER_LIST <<<"$PEERS"
for peer in "${PEER_LIST[@]}"; do
    case $peer in
        nginx|varnish|ringside-uring|ringside-epoll) ;;
        *) die "unknown peer '$peer' (want nginx, varnish, ringside-uring, ringside-epoll)" ;;
    esac
done
((${#PEER_LIST[@]})) || die "--peers is empty"

bench_require
VARNISHD=${VARNISHD:-$(find_server varnishd || true)}
VARNISHSTAT=${VARNISHSTAT:-$(command -v varnishstat || true)}
bench_init
bench_write_payloads
start_origin

# ---------------------------------------------------------------------------------------
# Peers, each on the proxy CPU with one worker or thread pool

# Where each peer reports its hits: ringside's metrics URL, Varnish's working directory.
declare -A RINGSIDE_METRICS_URL=()
VARNISH_DIR=""

start_nginx_cache() {
    local dir="$WORK/nginx" port cache_root
    port=$(free_port)
    mkdir -p "$dir"
    # Memory-backed as far as nginx allows: its cache is files, so they go on tmpfs.
    if [[ -d /dev/shm && -w /dev/shm ]]; then
        cache_root=$(mktemp -d /dev/shm/ringside-bench-nginx.XXXXXX)
        CLEANUP_PATHS+=("$cache_root")
    else
        cache_root="$dir"
        note "warning: /dev/shm not writable, nginx's cache lives in $dir"
    fi
    # The workers may run as an unprivileged user; nginx creates and owns cache/ itself.
    chmod 755 "$cache_root"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    # Keeps cache files open between hits instead of an open() per request.
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
$(nginx_temp_paths "$dir")
    proxy_cache_path $cache_root/cache levels=1:2 keys_zone=bench:16m max_size=${STORAGE_MIB}m
                     inactive=10m use_temp_path=off;
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
            proxy_buffering on;
            proxy_cache bench;
            proxy_cache_valid 200 60s;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status always;
        }
    }
}
EOF
    start_pinned "$PROXY_CPU" "$dir/stderr.log" \
        "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    if wait_ready "$STARTED_PID" "http://127.0.0.1:$port/small.json?run=0"; then
        add_target nginx "$port" "$STARTED_PID" "nginx" "$dir/error.log"
    else
        skip_target nginx "did not start" "$dir/stderr.log" "$dir/error.log"
    fi
}

start_varnish() {
    local dir="$WORK/varnish" port
    [[ -n $VARNISHD && -x $VARNISHD ]] || { skip_target varnish "varnishd not found"; return; }
    [[ -n $VARNISHSTAT ]] || { skip_target varnish "varnishstat not found (needed to count hits)"; return; }
    port=$(free_port)
    mkdir -p "$dir"
    # -j none: no privilege separation, so it runs as whoever runs this script.
    # thread_pools=1 (default 2): one pool for one core. Varnish runs every request in
    # progress on a worker thread of its own, so it cannot run with one thread; the pool
    # keeps its default size (thread_pool_min 100, thread_pool_max 5000) and all of its
    # threads are pinned to the proxy CPU.
    start_pinned "$PROXY_CPU" "$dir/stderr.log" \
        "$VARNISHD" -F -j none -n "$dir/instance" -T none \
        -a "127.0.0.1:$port" -b "127.0.0.1:$ORIGIN_PORT" \
        -s "malloc,${STORAGE_MIB}m" -p thread_pools=1
    if wait_ready "$STARTED_PID" "http://127.0.0.1:$port/small.json?run=0"; then
        add_target varnish "$port" "$STARTED_PID" "varnish" "$dir/stderr.log"
        VARNISH_DIR="$dir/instance"
    else
        skip_target varnish "did not start" "$dir/stderr.log"
    fi
}

start_ringside() { # backend
    local backend=$1 id="ringside-$1" dir="$WORK/ringside-$1" port metrics_port
    local bin="$BUILD_DIR/ringside"
    [[ -x $bin ]] || { skip_target "$id" "$bin not found"; return; }
    port=$(free_port)
    metrics_port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/ringside.yaml" <<EOF
listen: 127.0.0.1:$port
workers: 1
io_backend: $backend
upstream: { address: 127.0.0.1:$ORIGIN_PORT }
metrics: { listen: 127.0.0.1:$metrics_port }
control: { listen: 127.0.0.1:$(free_port) }
log: { access: false }
cache: { memory: ${STORAGE_MIB}MiB, max_object: 8MiB }
routes:
  - match: { prefix: / }
    cache: {}
EOF
    start_pinned "$PROXY_CPU" "$dir/stderr.log" "$bin" --config "$dir/ringside.yaml"
    if wait_ready "$STARTED_PID" "http://127.0.0.1:$port/small.json?run=0"; then
        add_target "$id" "$port" "$STARTED_PID" "$id" "$dir/stderr.log"
        RINGSIDE_METRICS_URL[$id]="http://127.0.0.1:$metrics_port/metrics"
    else
        # A ringside that was asked for but cannot run with its cache serves no hits:
        # that is a finding, not a missing tool.
        add_target "$id" "$port" 0 "$id"
        INVALID[$id]="did not start with the cache configuration: $(tail -n 1 "$dir/stderr.log" 2>/dev/null \
            | sed 's|.*/ringside.yaml|ringside.yaml|')"
        note "!!!!!! INVALID: $id: ${INVALID[$id]}"
    fi
}

for peer in "${PEER_LIST[@]}"; do
    case $peer in
        nginx) start_nginx_cache ;;
        varnish) start_varnish ;;
        ringside-*) start_ringside "${peer#ringside-}" ;;
    esac
done

verify_targets
if ((${#TARGETS[@]} == 0)); then
    die "nothing to measure"
fi

# ---------------------------------------------------------------------------------------
# Proof of hits

# The peer's own count of cache hits so far; empty where it keeps none we can read.
peer_hits() { # target
    case $1 in
        ringside-*)
            prometheus_sum "${RINGSIDE_METRICS_URL[$1]}" ringside_cache_requests_total 'result="hit"' ;;
        varnish)
            { "$VARNISHSTAT" -n "$VARNISH_DIR" -1 -f MAIN.cache_hit 2>/dev/null || true; } \
                | awk '$1 == "MAIN.cache_hit" { print $2 }' ;;
        *) ;;
    esac
}

# The peer's hit count (empty if it has none), read again for up to a second until it
# reaches at least base + want: a peer may publish its counters a moment after it answered (Varnish sums
# its threads' counters when they finish a task).
peer_hits_above() { # target base want
    local hits i
    for ((i = 0; i < 10; i++)); do
        hits=$(peer_hits "$1")
        [[ -z $hits ]] || ((hits >= $2 + $3)) && break
        sleep 0.1
    done
    echo "$hits"
}

# The header that marks a hit for that peer, and the pattern of its line on a hit.
hit_header() { # target
    case $1 in
        nginx) echo 'X-Cache-Status ^X-Cache-Status:[[:space:]]*HIT' ;;
        # A hit carries the ids of this request and of the one that filled the cache.
        varnish) echo 'X-Varnish ^X-Varnish:[[:space:]]*[0-9]+[[:space:]]+[0-9]+' ;;
        ringside-*) echo 'Age ^Age:[[:space:]]*[0-9]+' ;;
    esac
}

# One GET; 0 if it answered 200. FETCH_RESULT describes the outcome for a message
# (status or curl's error, and the time taken).
fetch() { # url body-file headers-file
    local out status=0
    out=$(curl -s -S --max-time 5 -D "$3" -o "$2" -w '%{http_code} %{time_total}' "$1" 2>"$WORK/curl.err") \
        || status=$?
    if ((status != 0)); then
        FETCH_RESULT="curl exit $status after ${out#* } s: $(head -n 1 "$WORK/curl.err")"
        return 1
    fi
    FETCH_RESULT="status ${out%% *} after ${out#* } s"
    [[ ${out%% *} == 200 ]]
}

# Fills the cache with this run's URL, then asks again: the answer must be a hit with the
# origin's bytes, and the peer's hit counter (where it has one) must have grown.
bench_before_run() { # payload target run url
    local payload=$1 id=$2 url=$4 file="$WORK/www${PAYLOAD_PATH[$1]}"
    local hits_before hits_after
    local path="${PAYLOAD_PATH[$payload]}?run=$3"
    if ! fetch "$url" "$WORK/fill.body" /dev/null; then
        HOOK_REASON="filling the cache with $path failed ($FETCH_RESULT)"
        return 1
    elif ! cmp -s "$WORK/fill.body" "$file"; then
        HOOK_REASON="filling the cache with $path returned other bytes than the origin's"
        return 1
    fi
    hits_before=$(peer_hits "$id")
    if ! fetch "$url" "$WORK/hit.body" "$WORK/hit.headers"; then
        HOOK_REASON="the second request for $path failed ($FETCH_RESULT)"
        return 1
    elif ! cmp -s "$WORK/hit.body" "$file"; then
        HOOK_REASON="the second request for $path returned other bytes than the origin's"
        return 1
    fi
    hits_after=$(peer_hits_above "$id" "${hits_before:-0}" 1)
    local name pattern seen
    read -r name pattern < <(hit_header "$id")
    if ! tr -d '\r' <"$WORK/hit.headers" | grep -qiE "$pattern"; then
        seen=$(tr -d '\r' <"$WORK/hit.headers" | grep -iE "^$name:" | head -n 1 || true)
        HOOK_REASON="the second request for $path is no hit: ${seen:-no $name header}"
        return 1
    fi
    case $id in
        ringside-*|varnish)
            if [[ -z $hits_before || -z $hits_after ]] || ((hits_after <= hits_before)); then
                HOOK_REASON="its hit counter did not grow on a hit (before '${hits_before}', after '${hits_after}')"
                return 1
            fi ;;
    esac
    return 0
}

bench_before_measure() { # payload target run url
    HITS_BEFORE=$(peer_hits "$2")
    return 0
}

# After the run: the origin must have seen (almost) none of its requests, and the peer's
# own hit counter must account for (almost) all of them.
bench_after_measure() { # payload target run url requests origin_requests
    local id=$2 requests=$5 origin_req=$6 hits_after
    hits_after=$(peer_hits_above "$id" "${HITS_BEFORE:-0}" $((requests * (100 - MISS_TOLERANCE_PCT) / 100)))
    if [[ $origin_req == - ]]; then
        HOOK_REASON="could not read the origin's request counter"
        return 1
    fi
    if ((origin_req * 100 > requests * MISS_TOLERANCE_PCT)); then
        HOOK_REASON="run $3 ($1): $origin_req of $requests requests reached the origin"
        return 1
    fi
    if [[ -n $HITS_BEFORE || -n $hits_after ]]; then
        if [[ -z $HITS_BEFORE || -z $hits_after ]] \
            || (((hits_after - HITS_BEFORE) * 100 < requests * (100 - MISS_TOLERANCE_PCT))); then
            HOOK_REASON="run $3 ($1): its hit counter grew by $((${hits_after:-0} - ${HITS_BEFORE:-0})) for $requests requests"
            return 1
        fi
    fi
    return 0
}

# ---------------------------------------------------------------------------------------
# Measurement and summary

bench_prepare
bench_check_background
bench_run_interleaved

bench_split_targets
BENCH_SHOW_ORIGIN_PCT=1
BENCH_RESULT_METRICS=(rps p50_us p99_us cpu_us_per_req proxy_cpu_pct rss_kib
                      origin_cpu_us_per_req origin_req_pct other_cpu_pct
                      instructions_per_req errors)
{
    printf '# ringside cache-hit benchmark\n'
    if [[ -n $VARNISHD && -x $VARNISHD ]]; then
        printf '# varnish\t%s\n' "$("$VARNISHD" -V 2>&1 | head -n 1)"
    fi
} | bench_write_tsv

echo
echo "ringside cache-hit benchmark: $RUNS run(s) x ${DURATION}s per peer and payload," \
    "interleaved; ${WARMUP}s warm-up before each run"
bench_print_legend
echo "origin % = the worst run's requests that reached the origin, in % of those served;" \
    "every run was checked to be a hit before it started (headers, the peer's hit counter)" \
    "and after it (origin % <= $MISS_TOLERANCE_PCT, the peer's hit counter)"
bench_print_tables
bench_print_ratios
bench_copy_out

if ((${#INVALID[@]})); then
    echo
    for id in "${!INVALID[@]}"; do
        echo "!!!!!! INVALID: $id served no cache hits: ${INVALID[$id]}"
    done
    exit 3
fi
