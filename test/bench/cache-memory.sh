#!/usr/bin/env bash
# Memory-bound benchmark: fills ringside's cache (one worker, a small memory bound) with
# several times its bound in distinct objects and compares what it holds and what the
# process grew by with the bound; Varnish with the same malloc storage size alongside.
# See README.md next to this file.
#
# Benchmarks are measurements, never pass/fail tests: the exit status only says whether
# the script could run (2) and whether a peer failed to answer (3).
set -eu -o pipefail

BENCH_SCRIPT=cache-memory.sh
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
MEMORY_MIB=64
FACTOR=4
SIZES=mixed
PEERS="ringside,varnish"
CONNECTIONS=16
FILL_LIMIT=45 # seconds: the whole script stays under two minutes

usage() {
    cat <<EOF
usage: $(basename "$0") [options]

Requests FACTOR x the cache's memory bound in distinct objects through ringside (and
Varnish), then reports cached bytes, objects, evictions and the growth of the process's
resident memory against the bound.

  --memory MIB    the cache's memory bound (default $MEMORY_MIB; ringside max_object 1MiB)
  --factor N      how many times the bound to request in distinct objects (default $FACTOR)
  --sizes KIND    object sizes: mixed (512 B to 256 KiB) or 16k (default $SIZES)
  --peers LIST    comma list from ringside, varnish (default $PEERS)
  --build DIR     build directory holding the ringside binary (default: build/)
  -h, --help      this text
EOF
}

while (($#)); do
    case "$1" in
        --memory) MEMORY_MIB=${2:?}; shift 2 ;;
        --factor) FACTOR=${2:?}; shift 2 ;;
        --sizes) SIZES=${2:?}; shift 2 ;;
        --peers) PEERS=${2:?}; shift 2 ;;
        --build) BUILD_DIR=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ $MEMORY_MIB =~ ^[1-9][0-9]*$ ]] || die "--memory wants a positive integer (MiB)"
[[ $FACTOR =~ ^[1-9][0-9]*$ ]] || die "--factor wants a positive integer"
[[ $SIZES == mixed || $SIZES == 16k ]] || die "--sizes wants mixed or 16k"
IFS=, read -r -a PEER_LIST <<<"$PEERS"
for peer in "${PEER_LIST[@]}"; do
    [[ $peer == ringside || $peer == varnish ]] || die "unknown peer '$peer' (want ringside, varnish)"
done
((${#PEER_LIST[@]})) || die "--peers is empty"

bench_require
VARNISHD=${VARNISHD:-$(find_server varnishd || true)}
VARNISHSTAT=${VARNISHSTAT:-$(command -v varnishstat || true)}
bench_init
bench_write_payloads

# ---------------------------------------------------------------------------------------
# Origin: /obj/N answers for any N, its size picked by N's last digit.

mkdir -p "$WORK/www/sized"
if [[ $SIZES == mixed ]]; then
    SIZE_BY_DIGIT=(512 1024 2048 4096 8192 16384 32768 65536 131072 262144)
else
    SIZE_BY_DIGIT=(16384 16384 16384 16384 16384 16384 16384 16384 16384 16384)
fi
for digit in "${!SIZE_BY_DIGIT[@]}"; do
    awk -v n="${SIZE_BY_DIGIT[$digit]}" -v d="$digit" 'BEGIN {
        line = "object body of size class " d " 0123456789abcdefghijklmnopqrstuvwxyz\n"
        s = ""; while (length(s) < n) s = s line; printf "%s", substr(s, 1, n) }' \
        >"$WORK/www/sized/$digit.bin"
done
MEAN_SIZE=$(printf '%s\n' "${SIZE_BY_DIGIT[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')
BOUND_BYTES=$((MEMORY_MIB * 1024 * 1024))
OBJECTS=$(((FACTOR * BOUND_BYTES + MEAN_SIZE - 1) / MEAN_SIZE))

# shellcheck disable=SC2016 # nginx variables, not the shell's
ORIGIN_EXTRA_CONFIG='        location ~ ^/obj/[0-9]*([0-9])$ {
            add_header Cache-Control "max-age=600";
            try_files /sized/$1.bin =404;
        }'
start_origin

# wrk asks for /obj/1, /obj/2, ... once each. Once OBJECTS answers came back it stops
# and leaves a file behind, on which the script interrupts wrk (SIGINT makes it print its
# summary at once instead of sleeping out -d). done() reports how far the counter went
# and how many answers were not 200.
cat >"$WORK/fill.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end

next_object = 0 -- global, so that done() can read it through thread:get()
local answers = 0
local limit = tonumber(os.getenv("BENCH_OBJECTS"))
local done_file = os.getenv("BENCH_DONE_FILE")

request = function()
  next_object = next_object + 1
  return wrk.format("GET", "/obj/" .. next_object)
end

response = function(status, headers, body)
  answers = answers + 1
  if answers == limit then
    local f = io.open(done_file, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local requested = 0
  for _, t in ipairs(threads) do requested = requested + t:get("next_object") end
  io.write(string.format("FILL requests=%.0f requested=%.0f duration_us=%.0f status_errors=%.0f socket_errors=%.0f\n",
    summary.requests, requested, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

# ---------------------------------------------------------------------------------------
# Peers

start_ringside() { # sets PEER_PID, PEER_PORT, PEER_METRICS; 1 if it does not start
    local dir="$WORK/ringside" bin="$BUILD_DIR/ringside" metrics_port
    [[ -x $bin ]] || { note "ringside: $bin not found"; return 1; }
    PEER_PORT=$(free_port)
    metrics_port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/ringside.yaml" <<EOF
listen: 127.0.0.1:$PEER_PORT
workers: 1
upstream: { address: 127.0.0.1:$ORIGIN_PORT }
metrics: { listen: 127.0.0.1:$metrics_port }
control: { listen: 127.0.0.1:$(free_port) }
log: { access: false }
cache: { memory: ${MEMORY_MIB}MiB, max_object: 1MiB }
routes:
  - match: { prefix: / }
    cache: {}
EOF
    start_pinned "$PROXY_CPU" "$dir/stderr.log" "$bin" --config "$dir/ringside.yaml"
    PEER_PID=$STARTED_PID
    PEER_METRICS="http://127.0.0.1:$metrics_port/metrics"
    if ! wait_ready "$PEER_PID" "http://127.0.0.1:$PEER_PORT/small.json"; then
        note "ringside did not start:"
        tail -n 5 "$dir/stderr.log" | sed 's/^/    /' >&2
        return 1
    fi
}

start_varnish() { # sets PEER_PID, PEER_PORT, VARNISH_DIR; 1 if it does not start
    local dir="$WORK/varnish"
    [[ -n $VARNISHD && -x $VARNISHD ]] || { note "varnish: varnishd not found"; return 1; }
    [[ -n $VARNISHSTAT ]] || { note "varnish: varnishstat not found"; return 1; }
    PEER_PORT=$(free_port)
    mkdir -p "$dir"
    VARNISH_DIR="$dir/instance"
    start_pinned "$PROXY_CPU" "$dir/stderr.log" \
        "$VARNISHD" -F -j none -n "$VARNISH_DIR" -T none \
        -a "127.0.0.1:$PEER_PORT" -b "127.0.0.1:$ORIGIN_PORT" \
        -s "malloc,${MEMORY_MIB}m" -p thread_pools=1
    PEER_PID=$STARTED_PID
    if ! wait_ready "$PEER_PID" "http://127.0.0.1:$PEER_PORT/small.json"; then
        note "varnish did not start:"
        tail -n 5 "$dir/stderr.log" | sed 's/^/    /' >&2
        return 1
    fi
}

varnish_stat() { # counter
    { "$VARNISHSTAT" -n "$VARNISH_DIR" -1 -f "$1" 2>/dev/null || true; } | awk -v c="$1" '$1 == c { print $2 }'
}

# Stops the peer just measured by its PID so the next one has the CPU and memory alone.
stop_peer() {
    local i
    kill -TERM "$PEER_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$PEER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------
# Measurement

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
FAILED=0

# One peer: baseline, fill, read memory and the peer's own accounting. Appends a line to
# RESULTS: peer rss0 rss hwm anon0 anon requested answered errors seconds cached objects
# evictions (KiB for memory, bytes for cached; "-" where the peer reports nothing).
measure_peer() { # peer
    local peer=$1 pids rss0 anon0 rss hwm anon line cached objects evictions
    if ! "start_$peer"; then
        FAILED=1
        printf '%s\tdid not start\n' "$peer" >>"$RESULTS"
        return 0
    fi
    sleep 1 # let the start-up allocations settle
    mapfile -t pids < <(proc_tree "$PEER_PID")
    rss0=$(status_kib VmRSS "${pids[@]}")
    anon0=$(status_kib RssAnon "${pids[@]}")
    note "$peer: baseline RSS $((rss0 / 1024)) MiB; requesting $OBJECTS distinct objects" \
        "(mean $MEAN_SIZE B, $((FACTOR * MEMORY_MIB)) MiB in all)"
    local status=0 wrk_pid done_file="$WORK/fill.$peer.done"
    # timeout passes the SIGINT on to wrk.
    BENCH_OBJECTS=$OBJECTS BENCH_DONE_FILE=$done_file \
        timeout -s INT -k 5 $((FILL_LIMIT + 15)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNECTIONS" -d"${FILL_LIMIT}s" --timeout 10s -s "$WORK/fill.lua" \
        "http://127.0.0.1:$PEER_PORT/" >"$WORK/fill.$peer.log" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    while kill -0 "$wrk_pid" 2>/dev/null && [[ ! -e $done_file ]]; do
        sleep 0.1
    done
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || status=$?
    unset 'PIDS[-1]'
    line=$(grep '^FILL ' "$WORK/fill.$peer.log" || true)
    if ((status != 0)) || [[ -z $line ]]; then
        note "$peer: wrk failed (status $status)"
        tail -n 3 "$WORK/fill.$peer.log" | sed 's/^/    /' >&2
        FAILED=1
        printf '%s\twrk failed\n' "$peer" >>"$RESULTS"
        stop_peer
        return 0
    fi
    sleep 1 # frees and gauge updates after the last answer
    mapfile -t pids < <(proc_tree "$PEER_PID")
    rss=$(status_kib VmRSS "${pids[@]}")
    hwm=$(status_kib VmHWM "${pids[@]}")
    anon=$(status_kib RssAnon "${pids[@]}")
    if [[ $peer == ringside ]]; then
        cached=$(prometheus_sum "$PEER_METRICS" ringside_cache_bytes)
        objects=$(prometheus_sum "$PEER_METRICS" ringside_cache_objects)
        evictions=$(prometheus_sum "$PEER_METRICS" ringside_cache_evictions_total)
    else
        cached=$(varnish_stat SMA.s0.g_bytes)
        objects=$(varnish_stat MAIN.n_object)
        evictions=$(varnish_stat MAIN.n_lru_nuked)
    fi
    local -A f=()
    local kv
    for kv in ${line#FILL }; do f[${kv%%=*}]=${kv#*=}; done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$peer" "$rss0" "$rss" "$hwm" \
        "$anon0" "$anon" "${f[requested]}" "${f[requests]}" \
        $((f[status_errors] + f[socket_errors])) \
        "$(awk -v d="${f[duration_us]}" 'BEGIN { printf "%.1f", d / 1e6 }')" \
        "${cached:--}" "${objects:--}" "${evictions:--}" >>"$RESULTS"
    stop_peer
}

for peer in "${PEER_LIST[@]}"; do
    measure_peer "$peer"
done

# ---------------------------------------------------------------------------------------
# Report

echo
echo "cache memory bound: ${MEMORY_MIB} MiB configured; $OBJECTS distinct objects requested" \
    "(${FACTOR}x the bound; sizes: $SIZES, mean $MEAN_SIZE B), wrk -t1 -c$CONNECTIONS," \
    "one worker / thread pool on CPU $PROXY_CPU"
echo "ringside: cache { memory: ${MEMORY_MIB}MiB, max_object: 1MiB }; varnish: -s malloc,${MEMORY_MIB}m"
echo "cached = what the cache says it holds (ringside_cache_bytes; Varnish SMA.s0.g_bytes)," \
    "RSS0 = VmRSS at start, RSS and HWM (VmHWM) after the fill, all processes summed;" \
    "growth = RSS - RSS0; anon = the same for RssAnon (heap, without file-backed pages)"
echo
printf '%-9s %6s %9s %6s %7s %8s %8s %9s %8s %8s %8s %8s %8s %9s %8s\n' \
    peer bound requested errors seconds cached objects evictions RSS0 RSS HWM growth anon \
    'growth/' 'growth/'
printf '%-9s %6s %9s %6s %7s %8s %8s %9s %8s %8s %8s %8s %8s %9s %8s\n' \
    '' MiB '' '' '' MiB '' '' MiB MiB MiB MiB MiB cached bound
while IFS=$'\t' read -r -a r; do
    if ((${#r[@]} < 13)); then
        printf '%-9s %s\n' "${r[0]}" "${r[1]}"
        continue
    fi
    # peer rss0 rss hwm anon0 anon requested answered errors seconds cached objects evictions
    awk -v peer="${r[0]}" -v bound="$MEMORY_MIB" -v rss0="${r[1]}" -v rss="${r[2]}" \
        -v hwm="${r[3]}" -v anon0="${r[4]}" -v anon="${r[5]}" -v requested="${r[6]}" \
        -v errors="${r[8]}" -v secs="${r[9]}" -v cached="${r[10]}" -v objects="${r[11]}" \
        -v evictions="${r[12]}" 'BEGIN {
            mib = 1024 * 1024
            growth = (rss - rss0) * 1024 # bytes
            c = (cached == "-") ? "-" : sprintf("%.1f", cached / mib)
            o = (cached == "-" || cached == 0) ? "-" : sprintf("%.2f", growth / cached)
            printf "%-9s %6d %9d %6d %7s %8s %8s %9s %8.1f %8.1f %8.1f %8.1f %8.1f %9s %8.2f\n",
                peer, bound, requested, errors, secs, c, objects, evictions, rss0 / 1024,
                rss / 1024, hwm / 1024, growth / mib, (anon - anon0) / 1024, o,
                growth / (bound * mib)
        }'
done <"$RESULTS"
echo
while IFS=$'\t' read -r -a r; do
    ((${#r[@]} >= 13)) || continue
    if [[ ${r[10]} == - ]]; then
        echo "${r[0]}: reports no cached-bytes figure"
    elif ((r[10] <= BOUND_BYTES)); then
        echo "${r[0]}: cached bytes within the bound ($((r[10] / 1024)) KiB <= $((BOUND_BYTES / 1024)) KiB)"
    else
        echo "${r[0]}: cached bytes ABOVE the bound ($((r[10] / 1024)) KiB > $((BOUND_BYTES / 1024)) KiB)"
    fi
done <"$RESULTS"

((FAILED == 0)) || exit 3
