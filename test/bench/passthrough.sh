#!/usr/bin/env bash
# Pass-through benchmark: ringside beside nginx (upstream keepalive) and HAProxy, all in
# front of the same nginx origin, driven by the same wrk settings with the same CPU
# pinning, measured in one interleaved session. See README.md next to this file.
#
# Benchmarks are measurements, never pass/fail tests: the exit status only says whether
# the script itself could run.
set -eu -o pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

RUNS=5
DURATION=10
WARMUP=2
BUILD_DIR="$REPO_DIR/build"
OUT=""
RINGSIDE_BACKENDS="uring,epoll"
THREADS=1
CONNECTIONS=64
LOAD_CPU=0   # wrk and the origin
PROXY_CPU=1  # the proxy under test

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

die() { printf 'passthrough.sh: %s\n' "$*" >&2; exit 2; }
note() { printf '%s\n' "$*" >&2; }

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

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "--duration wants a positive integer (seconds)"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "--warmup wants an integer (seconds)"
command -v wrk >/dev/null || die "wrk not found"
command -v curl >/dev/null || die "curl not found"
command -v taskset >/dev/null || die "taskset not found"
command -v timeout >/dev/null || die "timeout not found"
# Servers live in sbin, which an unprivileged user's PATH may lack. NGINX and HAPROXY
# in the environment name other binaries.
find_server() { # name
    local found
    if found=$(command -v "$1"); then echo "$found"; return 0; fi
    for found in "/usr/sbin/$1" "/usr/local/sbin/$1" "/sbin/$1"; do
        [[ -x $found ]] && { echo "$found"; return 0; }
    done
    return 1
}
NGINX=${NGINX:-$(find_server nginx || true)}
HAPROXY=${HAPROXY:-$(find_server haproxy || true)}
[[ -n $NGINX && -x $NGINX ]] || die "nginx not found (it is the origin); set NGINX=/path/to/nginx"
if [[ -n $OUT ]]; then
    : >"$OUT" || die "cannot write $OUT"
fi

NCPU=$(getconf _NPROCESSORS_ONLN)
if ((NCPU < 2)); then
    note "warning: only $NCPU CPU online; proxy, wrk and origin all share CPU 0"
    PROXY_CPU=0
fi
CLK_TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringside-bench.XXXXXX")
chmod 755 "$WORK" # nginx workers may run as an unprivileged user
PIDS=()

cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Everything this script runs (wrk, curl, the origin, the bookkeeping) stays on the load
# CPU; only the proxies are started on the proxy CPU.
taskset -pc "$LOAD_CPU" $$ >/dev/null

# ---------------------------------------------------------------------------------------
# Process bookkeeping

# A port in 20000-32767 (below the usual ephemeral range) that nothing on 127.0.0.1
# accepts on and that this script has not handed out yet.
USED_PORTS=" "
free_port() {
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 12768))
        [[ $USED_PORTS == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# The PID and all its descendants (e.g. nginx master and worker).
proc_tree() {
    local root=$1 f line pid rest
    local -a fields
    {
        for f in /proc/[0-9]*/stat; do
            read -r line 2>/dev/null <"$f" || continue
            pid=${line%% *}
            rest=${line##*) }
            read -r -a fields <<<"$rest"
            echo "$pid ${fields[1]}"
        done
    } | awk -v root="$root" '
        { parent[$1] = $2 }
        END {
            keep[root] = 1; print root
            do {
                added = 0
                for (p in parent)
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; added = 1 }
            } while (added)
        }'
}

# utime+stime in clock ticks, summed over the given PIDs. A process's own line already
# includes all its threads.
cpu_ticks() {
    local pid line total=0
    local -a fields
    for pid in "$@"; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || continue
        read -r -a fields <<<"${line##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# CPU of this shell's reaped children (wrk, via timeout), in ticks, into CHILD_TICKS.
# No command substitution here: a subshell would add its own time when reaped.
read_child_ticks() {
    local line
    local -a fields
    read -r line </proc/$$/stat
    read -r -a fields <<<"${line##*) }"
    CHILD_TICKS=$((fields[13] + fields[14]))
}

# Busy ticks of the whole machine (every CPU, steal included), into MACHINE_TICKS.
read_machine_ticks() {
    local user nice system irq softirq steal
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice
    read -r _ user nice system _ _ irq softirq steal _ </proc/stat
    MACHINE_TICKS=$((user + nice + system + irq + softirq + steal))
}

# VmRSS in KiB, summed over the given PIDs.
rss_kib() {
    local pid total=0 key value
    for pid in "$@"; do
        while read -r key value _; do
            if [[ $key == VmRSS: ]]; then
                total=$((total + value))
                break
            fi
        done 2>/dev/null <"/proc/$pid/status" || true
    done
    echo "$total"
}

# Starts "$@" in the background pinned to CPU $1, logging to $2; sets STARTED_PID.
start_pinned() {
    local cpu=$1 log=$2
    shift 2
    taskset -c "$cpu" "$@" >"$log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# Waits (bounded) until url answers 200 while pid is alive. 0 when ready.
wait_ready() {
    local pid=$1 url=$2 i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null) == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------
# Origin and payloads

mkdir -p "$WORK/www"
printf '{"id":4711,"name":"ringside","status":"ok","tags":["sidecar","proxy"],"items":[1,2,3,4,5],"ttl":60}\n' \
    >"$WORK/www/small.json"
awk 'BEGIN { s = ""; while (length(s) < 16384) s = s "0123456789abcdefghijklmnopqrstuv\n";
             printf "%s", substr(s, 1, 16384) }' >"$WORK/www/16k.bin"

PAYLOADS=(small 16k)
declare -A PAYLOAD_PATH=([small]=/small.json [16k]=/16k.bin)
declare -A PAYLOAD_SIZE=(
    [small]=$(stat -c %s "$WORK/www/small.json")
    [16k]=$(stat -c %s "$WORK/www/16k.bin")
)
declare -A PAYLOAD_LABEL=(
    [small]="${PAYLOAD_SIZE[small]} B JSON"
    [16k]="${PAYLOAD_SIZE[16k]} B file (16 KiB)"
)

# Temp paths of every nginx module that might be compiled in, kept inside the prefix.
nginx_temp_paths() {
    local dir=$1 t
    for t in client_body proxy fastcgi uwsgi scgi; do
        mkdir -p "$dir/${t}_temp"
        printf '    %s_temp_path %s/%s_temp;\n' "$t" "$dir" "$t"
    done
}

ORIGIN_PORT=$(free_port)
mkdir -p "$WORK/origin"
cat >"$WORK/origin/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    types { application/json json; application/octet-stream bin; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
$(nginx_temp_paths "$WORK/origin")
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        root $WORK/www;
        location / { add_header Cache-Control "max-age=60"; }
    }
}
EOF
start_pinned "$LOAD_CPU" "$WORK/origin/stderr.log" \
    "$NGINX" -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf"
ORIGIN_PID=$STARTED_PID
if ! wait_ready "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/small.json"; then
    cat "$WORK/origin/stderr.log" "$WORK/origin/error.log" >&2 2>/dev/null || true
    die "origin nginx did not start"
fi

# ---------------------------------------------------------------------------------------
# Targets. Each gets a port, a PID (0 for the origin baseline, which has no proxy) and a
# display name; a target that cannot start is reported and skipped.

TARGETS=()
declare -A TARGET_PORT TARGET_PID TARGET_NAME
SKIPPED=()

add_target() { # id port pid name
    TARGETS+=("$1")
    TARGET_PORT[$1]=$2
    TARGET_PID[$1]=$3
    TARGET_NAME[$1]=$4
}

skip_target() { # id reason [log files...]
    local id=$1 reason=$2
    shift 2
    SKIPPED+=("$id: $reason")
    note "skip $id: $reason"
    local f
    for f in "$@"; do
        [[ -s $f ]] && tail -n 5 "$f" | sed 's/^/    /' >&2
    done
    return 0
}

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
VERIFIED=()
for id in "${TARGETS[@]}"; do
    ok=1
    for payload in "${PAYLOADS[@]}"; do
        url="http://127.0.0.1:${TARGET_PORT[$id]}${PAYLOAD_PATH[$payload]}"
        if ! curl -s --max-time 5 -o "$WORK/check.body" "$url" \
            || ! cmp -s "$WORK/check.body" "$WORK/www${PAYLOAD_PATH[$payload]}"; then
            ok=0
            skip_target "$id" "wrong or no response body for ${PAYLOAD_PATH[$payload]}"
            break
        fi
    done
    ((ok)) && VERIFIED+=("$id")
done
TARGETS=("${VERIFIED[@]}")

# ---------------------------------------------------------------------------------------
# Measurement

# wrk reports its figures through a done() hook so nothing is scraped from its text.
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f socket_errors=%.0f status_errors=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
EOF

PERF_OK=0
if command -v perf >/dev/null \
    && out=$(perf stat -x, -e instructions -- true 2>&1) \
    && [[ $out != *"not supported"* && $out != *"not counted"* ]] \
    && [[ $(printf '%s\n' "$out" | awk -F, '/instructions/ { print $1 }') =~ ^[0-9]+$ ]]; then
    PERF_OK=1
fi

# Runs wrk in the background and waits for it, so that a signal to this script is handled
# at once (bash defers traps while a foreground child runs) and cleanup stops wrk too.
run_wrk() { # seconds url logfile
    local pid status=0
    timeout -k 5 $(($1 + 30)) taskset -c "$LOAD_CPU" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1s" --latency -s "$WORK/report.lua" "$2" \
        >"$3" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || status=$?
    unset 'PIDS[-1]'
    return "$status"
}

RAW="$WORK/raw.tsv"
RAW_COLUMNS=(payload target run rps p50_us p99_us cpu_us_per_req proxy_cpu_pct rss_kib
             origin_cpu_us_per_req other_cpu_pct instructions_per_req requests errors)
(IFS=$'\t'; echo "${RAW_COLUMNS[*]}") >"$RAW"

measure() { # payload target run
    local payload=$1 id=$2 run=$3
    local url="http://127.0.0.1:${TARGET_PORT[$id]}${PAYLOAD_PATH[$payload]}?run=$run"
    local log="$WORK/wrk.$payload.$id.$run.log" pid=${TARGET_PID[$id]}
    local -a pids=()
    local perf_pid="" perf_out="$WORK/perf.out"

    if ((WARMUP > 0)); then
        run_wrk "$WARMUP" "$url" "$WORK/warmup.log" || true
    fi
    if ((pid)); then
        mapfile -t pids < <(proc_tree "$pid")
    fi
    local proxy_before origin_before machine_before wrk_before
    proxy_before=$(cpu_ticks "${pids[@]}")
    origin_before=$(cpu_ticks "$ORIGIN_PID")
    read_machine_ticks
    machine_before=$MACHINE_TICKS
    if ((PERF_OK && pid)); then
        local list
        list=$(IFS=,; echo "${pids[*]}")
        perf stat -x, -e instructions -p "$list" -o "$perf_out" &
        perf_pid=$!
        PIDS+=("$perf_pid")
    fi
    local status=0
    read_child_ticks
    wrk_before=$CHILD_TICKS
    run_wrk "$DURATION" "$url" "$log" || status=$?
    read_child_ticks
    read_machine_ticks
    local wrk_after=$CHILD_TICKS machine_after=$MACHINE_TICKS
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        unset 'PIDS[-1]'
    fi
    local proxy_after origin_after rss
    proxy_after=$(cpu_ticks "${pids[@]}")
    origin_after=$(cpu_ticks "$ORIGIN_PID")
    rss=$(rss_kib "${pids[@]}")

    local line
    line=$(grep '^BENCH ' "$log" || true)
    if ((status != 0)) || [[ -z $line ]]; then
        note "  $payload $id run $run: wrk failed (status $status)"
        tail -n 3 "$log" | sed 's/^/    /' >&2
        return 0
    fi
    local requests=0 duration_us=1 p50=0 p99=0 socket_errors=0 status_errors=0 kv
    for kv in ${line#BENCH }; do
        case $kv in
            requests=*) requests=${kv#*=} ;;
            duration_us=*) duration_us=${kv#*=} ;;
            p50_us=*) p50=${kv#*=} ;;
            p99_us=*) p99=${kv#*=} ;;
            socket_errors=*) socket_errors=${kv#*=} ;;
            status_errors=*) status_errors=${kv#*=} ;;
        esac
    done
    if ((requests == 0)); then
        note "  $payload $id run $run: no request completed"
        return 0
    fi
    local instr="-"
    if [[ -n $perf_pid ]]; then
        instr=$(awk -F, -v n="$requests" '/instructions/ && $1 ~ /^[0-9]+$/ && n > 0 { printf "%.0f", $1 / n }' \
            "$perf_out" 2>/dev/null)
        [[ -n $instr ]] || instr="-"
    fi
    awk -v OFS='\t' -v payload="$payload" -v id="$id" -v run="$run" -v hz="$CLK_TCK" \
        -v req="$requests" -v dur="$duration_us" -v p50="$p50" -v p99="$p99" \
        -v pb="$proxy_before" -v pa="$proxy_after" -v ob="$origin_before" -v oa="$origin_after" \
        -v mb="$machine_before" -v ma="$machine_after" -v wb="$wrk_before" -v wa="$wrk_after" \
        -v has_proxy="$pid" -v rss="$rss" -v instr="$instr" \
        -v errors=$((socket_errors + status_errors)) '
        BEGIN {
            rps = req / (dur / 1e6)
            cpu = "-"; pct = "-"; mem = "-"
            if (has_proxy) {
                cpu_us = (pa - pb) * 1e6 / hz
                cpu = sprintf("%.2f", cpu_us / req)
                pct = sprintf("%.1f", 100 * cpu_us / dur)
                mem = rss
            }
            ocpu = sprintf("%.2f", (oa - ob) * 1e6 / hz / req)
            # Busy time no process of ours was charged with: other load, steal, kernel.
            other = (ma - mb) - (pa - pb) - (oa - ob) - (wa - wb)
            opct = sprintf("%.1f", 100 * other * 1e6 / hz / dur)
            print payload, id, run, sprintf("%.0f", rps), p50, p99, cpu, pct, mem, ocpu, \
                opct, instr, req, errors
        }' >>"$RAW"
    tail -n 1 "$RAW" | awk -F'\t' '{
        printf "  %-6s %-16s run %-3s %7s req/s  p99 %6.2f ms  CPU %6s us/req  other %5s%%\n",
            $1, $2, $3, $4, $6 / 1000, $7, $11 }' >&2
}

if ((${#TARGETS[@]} == 0)); then
    die "nothing to measure"
fi

# Load that is not ours makes every figure noisy; say so before spending minutes on it.
read_machine_ticks
idle_before=$MACHINE_TICKS
sleep 2
read_machine_ticks
BACKGROUND_PCT=$(((MACHINE_TICKS - idle_before) * 100 / (2 * CLK_TCK)))
if ((BACKGROUND_PCT >= 10)); then
    note "warning: the machine was ${BACKGROUND_PCT}% busy (of one CPU) before the benchmark started;" \
        "other programs will disturb the figures (watch the 'other' column)"
fi
per_run=$((WARMUP + DURATION))
total=$((RUNS * ${#PAYLOADS[@]} * ${#TARGETS[@]} * per_run))
note "measuring ${TARGETS[*]}: $RUNS runs x ${#PAYLOADS[@]} payloads, ${WARMUP}s warm-up + ${DURATION}s each, about $((total / 60))m$((total % 60))s"
note "pinning: proxy on CPU $PROXY_CPU; wrk and origin on CPU $LOAD_CPU; wrk -t$THREADS -c$CONNECTIONS"
((PERF_OK)) || note "perf stat -e instructions unavailable here: no instructions/request column"

for ((run = 1; run <= RUNS; run++)); do
    for payload in "${PAYLOADS[@]}"; do
        for id in "${TARGETS[@]}"; do
            measure "$payload" "$id" "$run"
        done
    done
done

# ---------------------------------------------------------------------------------------
# Summary

declare -A COL
for i in "${!RAW_COLUMNS[@]}"; do COL[${RAW_COLUMNS[$i]}]=$((i + 1)); done

# "median min max n" of one column for one payload and target; "- - - 0" if no values.
stats() { # payload target column
    awk -F'\t' -v p="$1" -v t="$2" -v c="${COL[$3]}" \
        'NR > 1 && $1 == p && $2 == t && $c != "-" { print $c }' "$RAW" \
        | sort -g | awk '
            { v[NR] = $1 }
            END {
                if (NR == 0) { print "- - - 0"; exit }
                m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                print m, v[1], v[NR], NR
            }'
}

# Per-run ratio target/peer of one column (runs are interleaved, so run r of both saw the
# same machine state), then "median min max n" of those ratios.
ratio_stats() { # payload target peer column
    awk -F'\t' -v p="$1" -v t="$2" -v q="$3" -v c="${COL[$4]}" '
        NR > 1 && $1 == p && $c != "-" {
            if ($2 == t) a[$3] = $c
            if ($2 == q) b[$3] = $c
        }
        END { for (r in a) if ((r in b) && b[r] > 0) print a[r] / b[r] }' "$RAW" \
        | sort -g | awk '
            { v[NR] = $1 }
            END {
                if (NR == 0) { print "- - - 0"; exit }
                m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                print m, v[1], v[NR], NR
            }'
}

# "median [min-max]" with a printf format for each number; "-" without values.
fmt_range() { # format scale median min max n
    local f=$1 s=$2
    if [[ $3 == - ]]; then echo "-"; return; fi
    if (($6 == 1)); then
        awk -v f="$f" -v s="$s" -v m="$3" 'BEGIN { printf f, m / s }'
    else
        awk -v f="$f" -v s="$s" -v m="$3" -v lo="$4" -v hi="$5" \
            'BEGIN { printf f " [" f "-" f "]", m / s, lo / s, hi / s }'
    fi
}

fmt_one() { # format scale median
    if [[ $2 == - || $3 == - ]]; then echo "-"; return; fi
    awk -v f="$1" -v s="$2" -v m="$3" 'BEGIN { printf f, m / s }'
}

RINGSIDE_TARGETS=()
PEER_TARGETS=()
for id in "${TARGETS[@]}"; do
    case $id in
        ringside-*) RINGSIDE_TARGETS+=("$id") ;;
        nginx|haproxy) PEER_TARGETS+=("$id") ;;
    esac
done

TSV="$WORK/summary.tsv"
{
    printf '# ringside pass-through benchmark\n'
    printf '# date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '# kernel\t%s\n' "$(uname -r)"
    printf '# cpus\t%s (proxy on %s, wrk and origin on %s)\n' "$NCPU" "$PROXY_CPU" "$LOAD_CPU"
    printf '# background load before start\t%s%% of one CPU\n' "$BACKGROUND_PCT"
    printf '# wrk\t-t%s -c%s -d%ss --latency, %ss warm-up, %s runs\n' \
        "$THREADS" "$CONNECTIONS" "$DURATION" "$WARMUP" "$RUNS"
    printf '# nginx\t%s\n' "$("$NGINX" -v 2>&1 | sed 's/.*version: //')"
    if [[ -n $HAPROXY ]]; then printf '# haproxy\t%s\n' "$("$HAPROXY" -v 2>&1 | head -n 1)"; fi
    if [[ -x $BUILD_DIR/ringside ]]; then
        printf '# ringside\t%s\n' "$(timeout 5 "$BUILD_DIR/ringside" --version 2>&1 | head -n 1)"
    fi
    for s in "${SKIPPED[@]}"; do printf '# skipped\t%s\n' "$s"; done
    printf 'kind\tpayload\ttarget\tpeer\tmetric\tmedian\tmin\tmax\truns\n'
    for payload in "${PAYLOADS[@]}"; do
        for id in "${TARGETS[@]}"; do
            for metric in rps p50_us p99_us cpu_us_per_req proxy_cpu_pct rss_kib \
                          origin_cpu_us_per_req other_cpu_pct instructions_per_req errors; do
                read -r m lo hi n < <(stats "$payload" "$id" "$metric")
                ((n > 0)) || continue
                printf 'result\t%s\t%s\t-\t%s\t%s\t%s\t%s\t%s\n' "$payload" "$id" "$metric" "$m" "$lo" "$hi" "$n"
            done
        done
        for id in "${RINGSIDE_TARGETS[@]}"; do
            for peer in "${PEER_TARGETS[@]}"; do
                for metric in rps cpu_us_per_req p99_us instructions_per_req; do
                    read -r m lo hi n < <(ratio_stats "$payload" "$id" "$peer" "$metric")
                    ((n > 0)) || continue
                    printf 'ratio\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$payload" "$id" "$peer" "$metric" "$m" "$lo" "$hi" "$n"
                done
            done
        done
    done
} >"$TSV"

echo
echo "ringside pass-through benchmark: $RUNS run(s) x ${DURATION}s per target and payload," \
    "interleaved; ${WARMUP}s warm-up before each run"
echo "proxy pinned to CPU $PROXY_CPU (one worker/thread); wrk -t$THREADS -c$CONNECTIONS --latency" \
    "and the nginx origin on CPU $LOAD_CPU"
echo "figures: median [min-max] over runs; CPU us/req = the proxy's utime+stime (all its" \
    "processes and threads) / requests; busy = that CPU time / wall time;" \
    "RSS = VmRSS of all its processes at the end of a run;" \
    "other = the worst run's CPU busy time (% of one CPU) charged to none of proxy," \
    "origin and wrk: other load, steal, kernel work; high values mean a noisy run"
for s in "${SKIPPED[@]}"; do echo "skipped $s"; done
if ((BACKGROUND_PCT >= 10)); then
    echo "warning: the machine was ${BACKGROUND_PCT}% busy (of one CPU) before the start"
fi

# One table row: target, req/s, p50, p99, CPU/req, busy, RSS, [instr/req,] other, errors.
table_row() {
    printf '%-16s  %-22s  %6s  %-19s  %-18s  %5s  %7s' "$1" "$2" "$3" "$4" "$5" "$6" "$7"
    if ((PERF_OK)); then printf '  %9s' "$8"; fi
    printf '  %5s  %6s\n' "$9" "${10}"
}

for payload in "${PAYLOADS[@]}"; do
    echo
    echo "== $payload: ${PAYLOAD_LABEL[$payload]} =="
    table_row target 'req/s' 'p50 ms' 'p99 ms' 'CPU us/req' busy 'RSS MiB' 'instr/req' other errors
    for id in "${TARGETS[@]}"; do
        read -r -a rps < <(stats "$payload" "$id" rps)
        ((rps[3] > 0)) || { printf '%-16s  (no successful run)\n' "${TARGET_NAME[$id]}"; continue; }
        read -r -a p50 < <(stats "$payload" "$id" p50_us)
        read -r -a p99 < <(stats "$payload" "$id" p99_us)
        read -r -a cpu < <(stats "$payload" "$id" cpu_us_per_req)
        read -r -a pct < <(stats "$payload" "$id" proxy_cpu_pct)
        read -r -a rss < <(stats "$payload" "$id" rss_kib)
        read -r -a ins < <(stats "$payload" "$id" instructions_per_req)
        read -r -a other < <(stats "$payload" "$id" other_cpu_pct)
        errors_total=$(awk -F'\t' -v p="$payload" -v t="$id" \
            'NR > 1 && $1 == p && $2 == t { s += $NF } END { print s + 0 }' "$RAW")
        table_row "${TARGET_NAME[$id]}" \
            "$(fmt_range %.0f 1 "${rps[@]}")" \
            "$(fmt_one %.2f 1000 "${p50[0]}")" \
            "$(fmt_range %.2f 1000 "${p99[@]}")" \
            "$(fmt_range %.1f 1 "${cpu[@]}")" \
            "$(fmt_one %.0f%% 1 "${pct[0]}")" \
            "$(fmt_one %.1f 1024 "${rss[0]}")" \
            "$(fmt_one %.0f 1 "${ins[0]}")" \
            "$(fmt_one %.0f%% 1 "${other[2]}")" \
            "$errors_total"
    done
done

if ((${#RINGSIDE_TARGETS[@]} && ${#PEER_TARGETS[@]})); then
    echo
    echo "== ringside / peer, median [min-max] of per-run ratios =="
    echo "throughput: above 1 is better; CPU/req and p99: below 1 is better"
    printf '%-8s %-16s %-9s %-19s %-19s %s\n' payload ringside peer throughput 'CPU/req' p99
    for payload in "${PAYLOADS[@]}"; do
        for id in "${RINGSIDE_TARGETS[@]}"; do
            for peer in "${PEER_TARGETS[@]}"; do
                read -r -a tr < <(ratio_stats "$payload" "$id" "$peer" rps)
                read -r -a cr < <(ratio_stats "$payload" "$id" "$peer" cpu_us_per_req)
                read -r -a pr < <(ratio_stats "$payload" "$id" "$peer" p99_us)
                printf '%-8s %-16s %-9s %-19s %-19s %s\n' "$payload" "$id" "$peer" \
                    "$(fmt_range %.2f 1 "${tr[@]}")" \
                    "$(fmt_range %.2f 1 "${cr[@]}")" \
                    "$(fmt_range %.2f 1 "${pr[@]}")"
            done
        done
    done
elif ((${#RINGSIDE_TARGETS[@]} == 0)); then
    echo
    echo "no ringside rows, so no ratios"
fi

if [[ -n $OUT ]]; then
    cp "$TSV" "$OUT"
    echo
    echo "summary written to $OUT"
fi
