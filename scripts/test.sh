#!/usr/bin/env bash
# Install what is missing, build, and run every test:
#   1. gcc build: unit tests, fuzz corpus replays, end-to-end tests on io_uring and epoll
#   2. the same suite built with clang under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. deployment checks (image, compose, Kubernetes manifests, Helm chart, promtool):
#      test/deploy/run.sh, which says SKIP and why for a step whose tool cannot run
# Every build uses -Wall -Wextra -Werror.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test

jobs=$(nproc)
status=0
run_suite() { # name, build dir, cmake args...
    local name=$1 dir=$2
    shift 2
    echo "== $name"
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
    (cd "$dir" && ctest --output-on-failure -j"$jobs") || status=1
}

run_suite "gcc, release" build/test-gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite "clang, ASan+UBSan" build/test-asan -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_COMPILER=clang -DRINGSIDE_SANITIZE=ON

echo "== deployment checks"
RINGSIDE_BIN=build/test-gcc/ringside RINGSIDE_ORIGIN=build/test-gcc/test/ringside-origin \
    test/deploy/run.sh || status=1
exit $status
