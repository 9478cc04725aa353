# shellcheck shell=bash
# Shared by the benchmark scripts in this directory (sourced, never run): process
# bookkeeping, the nginx origin, wrk runs with per-process CPU accounting, and the
# summary tables. See README.md next to this file.
#
# The sourcing script sets BENCH_SCRIPT (its name, for messages), may change the
# defaults below, parses its options, then calls bench_require and bench_init.
# Everything here uses `set -eu -o pipefail` semantics.

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_LIB_DIR/../.." && pwd)

RUNS=5
DURATION=10
WARMUP=2
BUILD_DIR="$REPO_DIR/build"
OUT=""
THREADS=1
CONNECTIONS=64
LOAD_CPU=0   # wrk and the origin
PROXY_CPU=1  # the proxy under test

die() { printf '%s: %s\n' "${BENCH_SCRIPT:-bench}" "$*" >&2; exit 2; }
note() { printf '%s\n' "$*" >&2; }

# Servers live in sbin, which an unprivileged user's PATH may lack.
find_server() { # name
    local found
    if found=$(command -v "$1"); then echo "$found"; return 0; fi
    for found in "/usr/sbin/$1" "/usr/local/sbin/$1" "/sbin/$1"; do
        [[ -x $found ]] && { echo "$found"; return 0; }
    done
    return 1
}

# Checks the common options and the tools every benchmark needs; sets NGINX (the origin,
# NGINX in the environment names another binary).
bench_require() {
    [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer"
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "--duration wants a positive integer (seconds)"
    [[ $WARMUP =~ ^[0-9]+$ ]] || die "--warmup wants an integer (seconds)"
    command -v wrk >/dev/null || die "wrk not found"
    command -v curl >/dev/null || die "curl not found"
    command -v taskset >/dev/null || die "taskset not found"
    command -v timeout >/dev/null || die "timeout not found"
    NGINX=${NGINX:-$(find_server nginx || true)}
    [[ -n $NGINX && -x $NGINX ]] || die "nginx not found (it is the origin); set NGINX=/path/to/nginx"
    if [[ -n $OUT ]]; then
        : >"$OUT" || die "cannot write $OUT"
    fi
}

# Creates the work directory (removed at exit), installs the cleanup traps and pins this
# shell to the load CPU. Sets NCPU, CLK_TCK, WORK, PIDS.
bench_init() {
    NCPU=$(getconf _NPROCESSORS_ONLN)
    if ((NCPU < 2)); then
        note "warning: only $NCPU CPU online; proxy, wrk and origin all share CPU 0"
        PROXY_CPU=0
    fi
    CLK_TCK=$(getconf CLK_TCK)
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringside-bench.XXXXXX")
    chmod 755 "$WORK" # nginx workers may run as an unprivileged user
    PIDS=()
    CLEANUP_PATHS=("$WORK")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    # Everything the script runs (wrk, curl, the origin, the bookkeeping) stays on the
    # load CPU; only the proxies are started on the proxy CPU.
    taskset -pc "$LOAD_CPU" $$ >/dev/null
}

# Stops every process in PIDS by its PID (TERM, then KILL after 5 s) and removes
# CLEANUP_PATHS. Keeps the script's exit status.
bench_cleanup() {
    local status=$? pid i
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
    rm -rf "${CLEANUP_PATHS[@]}"
    exit "$status"
}

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

# A /proc/PID/status field in KiB (VmRSS, VmHWM), summed over the given PIDs.
status_kib() { # field pid...
    local field=$1 pid total=0 key value
    shift
    for pid in "$@"; do
        while read -r key value _; do
            if [[ $key == "$field:" ]]; then
                total=$((total + value))
                break
            fi
        done 2>/dev/null <"/proc/$pid/status" || true
    done
    echo "$total"
}

# VmRSS in KiB, summed over the given PIDs.
rss_kib() {
    status_kib VmRSS "$@"
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

# Sum of the values of every sample of a Prometheus metric whose labels contain the given
# text (empty: all samples), from a scrape of url; empty output if the metric is absent.
prometheus_sum() { # url metric [label-text]
    { curl -s --max-time 2 "$1" 2>/dev/null || true; } | awk -v m="$2" -v l="${3-}" '
        /^#/ { next }
        {
            name = $1; sub(/\{.*/, "", name)
            if (name != m || index($1, l) == 0) next
            s += $NF; found = 1
        }
        END { if (found) printf "%.0f\n", s }'
}

# ---------------------------------------------------------------------------------------
# Origin and payloads

# Writes the two payloads into $WORK/www; sets PAYLOADS, PAYLOAD_PATH, PAYLOAD_SIZE,
# PAYLOAD_LABEL.
bench_write_payloads() {
    mkdir -p "$WORK/www"
    printf '{"id":4711,"name":"ringside","status":"ok","tags":["sidecar","proxy"],"items":[1,2,3,4,5],"ttl":60}\n' \
        >"$WORK/www/small.json"
    awk 'BEGIN { s = ""; while (length(s) < 16384) s = s "0123456789abcdefghijklmnopqrstuv\n";
                 printf "%s", substr(s, 1, 16384) }' >"$WORK/www/16k.bin"
    PAYLOADS=(small 16k)
    declare -gA PAYLOAD_PATH=([small]=/small.json [16k]=/16k.bin)
    declare -gA PAYLOAD_SIZE=(
        [small]=$(stat -c %s "$WORK/www/small.json")
        [16k]=$(stat -c %s "$WORK/www/16k.bin")
    )
    declare -gA PAYLOAD_LABEL=(
        [small]="${PAYLOAD_SIZE[small]} B JSON"
        [16k]="${PAYLOAD_SIZE[16k]} B file (16 KiB)"
    )
}

# Temp paths of every nginx module that might be compiled in, kept inside the prefix.
nginx_temp_paths() {
    local dir=$1 t
    for t in client_body proxy fastcgi uwsgi scgi; do
        mkdir -p "$dir/${t}_temp"
        printf '    %s_temp_path %s/%s_temp;\n' "$t" "$dir" "$t"
    done
}

# The path of the origin's stub_status page: its request counter tells how many requests
# reached the origin.
ORIGIN_STATUS_PATH=/bench-origin-status

# Server-level directives a script adds to the origin (e.g. more locations).
ORIGIN_EXTRA_CONFIG=""

# Starts the origin nginx (one process, on the load CPU) serving $WORK/www with
# keep-alive and Cache-Control: max-age=60, plus ORIGIN_EXTRA_CONFIG. Sets ORIGIN_PORT
# and ORIGIN_PID; dies if it does not start.
start_origin() {
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
        location = $ORIGIN_STATUS_PATH { stub_status; }
$ORIGIN_EXTRA_CONFIG
    }
}
EOF
    start_pinned "$LOAD_CPU" "$WORK/origin/stderr.log" \
        "$NGINX" -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf"
    ORIGIN_PID=$STARTED_PID
    if ! wait_ready "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT$ORIGIN_STATUS_PATH"; then
        cat "$WORK/origin/stderr.log" "$WORK/origin/error.log" >&2 2>/dev/null || true
        die "origin nginx did not start"
    fi
}

# Requests the origin has served so far (its stub_status counter, which counts the
# status request itself too); empty if it cannot be read.
origin_requests() {
    { curl -s --max-time 2 "http://127.0.0.1:$ORIGIN_PORT$ORIGIN_STATUS_PATH" 2>/dev/null || true; } \
        | awk 'NR == 3 && $3 ~ /^[0-9]+$/ { print $3 }'
}

# ---------------------------------------------------------------------------------------
# Targets. Each gets a port, a PID (0 for the origin baseline, which has no proxy) and a
# display name; a target that cannot start is reported and skipped.

TARGETS=()
declare -gA TARGET_PORT=() TARGET_PID=() TARGET_NAME=() TARGET_LOG=()
SKIPPED=()
# Targets whose runs do not measure what the benchmark claims (e.g. a cache that does
# not serve hits): id -> reason. Their rows are dropped from the results.
declare -gA INVALID=()

add_target() { # id port pid name [log file]
    TARGETS+=("$1")
    TARGET_PORT[$1]=$2
    TARGET_PID[$1]=$3
    TARGET_NAME[$1]=$4
    TARGET_LOG[$1]=${5-}
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

# Keeps in TARGETS only those that return the origin's bytes for every payload (and those
# already marked invalid, which are reported but not measured).
verify_targets() {
    local id payload url ok
    local -a verified=()
    for id in "${TARGETS[@]}"; do
        if [[ -n ${INVALID[$id]+set} ]]; then
            verified+=("$id")
            continue
        fi
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
        ((ok)) && verified+=("$id")
    done
    TARGETS=("${verified[@]}")
}

# ---------------------------------------------------------------------------------------
# Measurement

RAW_COLUMNS=(payload target run rps p50_us p99_us cpu_us_per_req proxy_cpu_pct rss_kib
             origin_cpu_us_per_req other_cpu_pct instructions_per_req requests errors
             origin_req_pct)

# Writes wrk's report script, probes perf and starts the raw result file. Sets RAW, TSV
# (where the summary goes) and PERF_OK.
bench_prepare() {
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
    local out
    if command -v perf >/dev/null \
        && out=$(perf stat -x, -e instructions -- true 2>&1) \
        && [[ $out != *"not supported"* && $out != *"not counted"* ]] \
        && [[ $(printf '%s\n' "$out" | awk -F, '/instructions/ { print $1 }') =~ ^[0-9]+$ ]]; then
        PERF_OK=1
    fi
    RAW="$WORK/raw.tsv"
    TSV="$WORK/summary.tsv"
    (IFS=$'\t'; echo "${RAW_COLUMNS[*]}") >"$RAW"
}

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

# Marks a target invalid, drops its results so far and says so loudly, with the end of
# its log if it is no longer running.
invalidate_target() { # id reason
    local pid=${TARGET_PID[$1]} log=${TARGET_LOG[$1]} status=0
    INVALID[$1]=$2
    if ((pid)) && ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || status=$?
        if ((status > 128)); then
            INVALID[$1]+="; it died of signal $((status - 128))"
        else
            INVALID[$1]+="; it exited with status $status"
        fi
        if [[ -n $log && -s $log ]]; then
            note "end of $1's log:"
            tail -n 20 "$log" | sed 's/^/    /' >&2
        fi
    fi
    awk -F'\t' -v t="$1" 'NR == 1 || $2 != t' "$RAW" >"$RAW.tmp" && mv "$RAW.tmp" "$RAW"
    note ""
    note "!!!!!! INVALID: $1: ${INVALID[$1]}"
    note "!!!!!! $1 is left out of the remaining runs and of the results"
    note ""
}

# One measured run. A script may define these hooks, each returning non-zero with a
# reason in HOOK_REASON to invalidate the target:
#   bench_before_run payload target run url       before the warm-up
#   bench_before_measure payload target run url   after the warm-up, outside the CPU window
#   bench_after_measure payload target run url requests origin_requests
#                                                 after the run, outside the CPU window
measure() { # payload target run
    local payload=$1 id=$2 run=$3
    local url="http://127.0.0.1:${TARGET_PORT[$id]}${PAYLOAD_PATH[$payload]}?run=$run"
    local log="$WORK/wrk.$payload.$id.$run.log" pid=${TARGET_PID[$id]}
    local -a pids=()
    local perf_pid="" perf_out="$WORK/perf.out"

    HOOK_REASON=""
    if declare -F bench_before_run >/dev/null \
        && ! bench_before_run "$payload" "$id" "$run" "$url"; then
        invalidate_target "$id" "$HOOK_REASON"
        return 0
    fi
    if ((WARMUP > 0)); then
        run_wrk "$WARMUP" "$url" "$WORK/warmup.log" || true
    fi
    if declare -F bench_before_measure >/dev/null \
        && ! bench_before_measure "$payload" "$id" "$run" "$url"; then
        invalidate_target "$id" "$HOOK_REASON"
        return 0
    fi
    if ((pid)); then
        mapfile -t pids < <(proc_tree "$pid")
    fi
    local proxy_before origin_before machine_before wrk_before origin_req_before
    origin_req_before=$(origin_requests)
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
    local proxy_after origin_after rss origin_req_after
    proxy_after=$(cpu_ticks "${pids[@]}")
    origin_after=$(cpu_ticks "$ORIGIN_PID")
    rss=$(rss_kib "${pids[@]}")
    origin_req_after=$(origin_requests)

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
    # The status request that closes the window is counted by the origin too.
    local origin_req="-"
    if [[ -n $origin_req_before && -n $origin_req_after ]]; then
        origin_req=$((origin_req_after - origin_req_before - 1))
    fi
    if declare -F bench_after_measure >/dev/null \
        && ! bench_after_measure "$payload" "$id" "$run" "$url" "$requests" "$origin_req"; then
        invalidate_target "$id" "$HOOK_REASON"
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
        -v has_proxy="$pid" -v rss="$rss" -v instr="$instr" -v oreq="$origin_req" \
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
            opr = (oreq == "-") ? "-" : sprintf("%.3f", 100 * oreq / req)
            print payload, id, run, sprintf("%.0f", rps), p50, p99, cpu, pct, mem, ocpu, \
                opct, instr, req, errors, opr
        }' >>"$RAW"
    tail -n 1 "$RAW" | awk -F'\t' '{
        printf "  %-6s %-16s run %-3s %7s req/s  p99 %6.2f ms  CPU %6s us/req  other %5s%%\n",
            $1, $2, $3, $4, $6 / 1000, $7, $11 }' >&2
}

# Samples the machine for 2 s and warns when other programs already keep it busy. Sets
# BACKGROUND_PCT (of one CPU).
bench_check_background() {
    local idle_before
    read_machine_ticks
    idle_before=$MACHINE_TICKS
    sleep 2
    read_machine_ticks
    BACKGROUND_PCT=$(((MACHINE_TICKS - idle_before) * 100 / (2 * CLK_TCK)))
    if ((BACKGROUND_PCT >= 10)); then
        note "warning: the machine was ${BACKGROUND_PCT}% busy (of one CPU) before the benchmark started;" \
            "other programs will disturb the figures (watch the 'other' column)"
    fi
}

# Every run index for every payload and target in turn (interleaved), skipping targets
# that became invalid.
bench_run_interleaved() {
    local per_run=$((WARMUP + DURATION)) total run payload id
    local -a active=()
    for id in "${TARGETS[@]}"; do
        [[ -n ${INVALID[$id]+set} ]] || active+=("$id")
    done
    total=$((RUNS * ${#PAYLOADS[@]} * ${#active[@]} * per_run))
    note "measuring ${active[*]}: $RUNS runs x ${#PAYLOADS[@]} payloads, ${WARMUP}s warm-up + ${DURATION}s each, about $((total / 60))m$((total % 60))s"
    note "pinning: proxy on CPU $PROXY_CPU; wrk and origin on CPU $LOAD_CPU; wrk -t$THREADS -c$CONNECTIONS"
    ((PERF_OK)) || note "perf stat -e instructions unavailable here: no instructions/request column"
    for ((run = 1; run <= RUNS; run++)); do
        for payload in "${PAYLOADS[@]}"; do
            for id in "${TARGETS[@]}"; do
                [[ -n ${INVALID[$id]+set} ]] && continue
                measure "$payload" "$id" "$run"
            done
        done
    done
}

# ---------------------------------------------------------------------------------------
# Summary

# "median min max n" of one column for one payload and target; "- - - 0" if no values.
stats() { # payload target column
    awk -F'\t' -v p="$1" -v t="$2" -v c="$(raw_column "$3")" \
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
    awk -F'\t' -v p="$1" -v t="$2" -v q="$3" -v c="$(raw_column "$4")" '
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

raw_column() { # name -> 1-based index
    local i
    for i in "${!RAW_COLUMNS[@]}"; do
        [[ ${RAW_COLUMNS[$i]} == "$1" ]] && { echo $((i + 1)); return 0; }
    done
    die "no raw column $1"
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

# Splits the measured targets into RINGSIDE_TARGETS (ringside-*) and PEER_TARGETS (every
# other proxy; the origin baseline is neither).
bench_split_targets() {
    local id
    RINGSIDE_TARGETS=()
    PEER_TARGETS=()
    for id in "${TARGETS[@]}"; do
        [[ -n ${INVALID[$id]+set} ]] && continue
        case $id in
            ringside-*) RINGSIDE_TARGETS+=("$id") ;;
            origin) ;;
            *) PEER_TARGETS+=("$id") ;;
        esac
    done
}

# Writes the machine-readable summary to $TSV. The caller's header lines (title and
# versions, each starting with '#') come on stdin, so this may run in a pipeline.
# BENCH_RESULT_METRICS lists the result metrics to include.
bench_write_tsv() {
    local payload id peer metric m lo hi n s
    {
        cat
        printf '# date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '# kernel\t%s\n' "$(uname -r)"
        printf '# cpus\t%s (proxy on %s, wrk and origin on %s)\n' "$NCPU" "$PROXY_CPU" "$LOAD_CPU"
        printf '# background load before start\t%s%% of one CPU\n' "$BACKGROUND_PCT"
        printf '# wrk\t-t%s -c%s -d%ss --latency, %ss warm-up, %s runs\n' \
            "$THREADS" "$CONNECTIONS" "$DURATION" "$WARMUP" "$RUNS"
        printf '# nginx\t%s\n' "$("$NGINX" -v 2>&1 | sed 's/.*version: //')"
        if [[ -x $BUILD_DIR/ringside ]]; then
            printf '# ringside\t%s\n' "$(timeout 5 "$BUILD_DIR/ringside" --version 2>&1 | head -n 1)"
        fi
        for s in "${SKIPPED[@]}"; do printf '# skipped\t%s\n' "$s"; done
        for id in "${!INVALID[@]}"; do printf '# invalid\t%s: %s\n' "$id" "${INVALID[$id]}"; done
        printf 'kind\tpayload\ttarget\tpeer\tmetric\tmedian\tmin\tmax\truns\n'
        for payload in "${PAYLOADS[@]}"; do
            for id in "${TARGETS[@]}"; do
                for metric in "${BENCH_RESULT_METRICS[@]}"; do
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
}

# The figures legend printed under the title.
bench_print_legend() {
    echo "proxy pinned to CPU $PROXY_CPU (one worker/thread); wrk -t$THREADS -c$CONNECTIONS --latency" \
        "and the nginx origin on CPU $LOAD_CPU"
    echo "figures: median [min-max] over runs; CPU us/req = the proxy's utime+stime (all its" \
        "processes and threads) / requests; busy = that CPU time / wall time;" \
        "RSS = VmRSS of all its processes at the end of a run;" \
        "other = the worst run's CPU busy time (% of one CPU) charged to none of proxy," \
        "origin and wrk: other load, steal, kernel work; high values mean a noisy run"
    local s id
    for s in "${SKIPPED[@]}"; do echo "skipped $s"; done
    for id in "${!INVALID[@]}"; do echo "INVALID $id: ${INVALID[$id]}"; done
    if ((BACKGROUND_PCT >= 10)); then
        echo "warning: the machine was ${BACKGROUND_PCT}% busy (of one CPU) before the start"
    fi
}

# One table row: target, req/s, p50, p99, CPU/req, busy, RSS, [instr/req,] other, errors,
# [origin %]. BENCH_SHOW_ORIGIN_PCT=1 adds the last column.
table_row() {
    printf '%-16s  %-22s  %6s  %-19s  %-18s  %5s  %7s' "$1" "$2" "$3" "$4" "$5" "$6" "$7"
    if ((PERF_OK)); then printf '  %9s' "$8"; fi
    printf '  %5s  %6s' "$9" "${10}"
    if ((${BENCH_SHOW_ORIGIN_PCT:-0})); then printf '  %8s' "${11}"; fi
    printf '\n'
}

# One table per payload with a row per target.
bench_print_tables() {
    local payload id errors_total
    local -a rps p50 p99 cpu pct rss ins other opct
    for payload in "${PAYLOADS[@]}"; do
        echo
        echo "== $payload: ${PAYLOAD_LABEL[$payload]} =="
        table_row target 'req/s' 'p50 ms' 'p99 ms' 'CPU us/req' busy 'RSS MiB' 'instr/req' other errors 'origin %'
        for id in "${TARGETS[@]}"; do
            if [[ -n ${INVALID[$id]+set} ]]; then
                printf '%-16s  INVALID (see above)\n' "${TARGET_NAME[$id]}"
                continue
            fi
            read -r -a rps < <(stats "$payload" "$id" rps)
            ((rps[3] > 0)) || { printf '%-16s  (no successful run)\n' "${TARGET_NAME[$id]}"; continue; }
            read -r -a p50 < <(stats "$payload" "$id" p50_us)
            read -r -a p99 < <(stats "$payload" "$id" p99_us)
            read -r -a cpu < <(stats "$payload" "$id" cpu_us_per_req)
            read -r -a pct < <(stats "$payload" "$id" proxy_cpu_pct)
            read -r -a rss < <(stats "$payload" "$id" rss_kib)
            read -r -a ins < <(stats "$payload" "$id" instructions_per_req)
            read -r -a other < <(stats "$payload" "$id" other_cpu_pct)
            read -r -a opct < <(stats "$payload" "$id" origin_req_pct)
            errors_total=$(awk -F'\t' -v p="$payload" -v t="$id" -v c="$(raw_column errors)" \
                'NR > 1 && $1 == p && $2 == t { s += $c } END { print s + 0 }' "$RAW")
            table_row "${TARGET_NAME[$id]}" \
                "$(fmt_range %.0f 1 "${rps[@]}")" \
                "$(fmt_one %.2f 1000 "${p50[0]}")" \
                "$(fmt_range %.2f 1000 "${p99[@]}")" \
                "$(fmt_range %.1f 1 "${cpu[@]}")" \
                "$(fmt_one %.0f%% 1 "${pct[0]}")" \
                "$(fmt_one %.1f 1024 "${rss[0]}")" \
                "$(fmt_one %.0f 1 "${ins[0]}")" \
                "$(fmt_one %.0f%% 1 "${other[2]}")" \
                "$errors_total" \
                "$(fmt_one %.2f%% 1 "${opct[2]}")"
        done
    done
}

# ringside / peer ratios for each payload, ringside target and peer.
bench_print_ratios() {
    local payload id peer
    local -a tr cr pr
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
}

# Copies the TSV summary to --out if one was given.
bench_copy_out() {
    if [[ -n $OUT ]]; then
        cp "$TSV" "$OUT"
        echo
        echo "summary written to $OUT"
    fi
}
