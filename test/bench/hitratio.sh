#!/usr/bin/env bash
# Hit-ratio benchmark of the in-memory cache store: builds ringside-hitratio (or uses the
# one in --build DIR) and runs it; every other argument goes to the tool. See README.md
# next to this file.
#
# A measurement, never a pass/fail test: the exit status only says whether it could run.
set -eu -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=$ROOT/build
NO_BUILD=0

usage() {
    cat <<EOF
usage: $(basename "$0") [--build DIR] [--no-build] [ringside-hitratio options]

Replays Zipf traces (alpha 0.8, 1.0, 1.2; 1M requests over 100k keys; lognormal sizes
around 4 KiB), alone and mixed with scans, against the store with each eviction policy at
1%, 5% and 10% of the working set, and prints hit ratio and byte hit ratio.

  --build DIR   build directory (default: build/); configured as RelWithDebInfo if it
                is not configured yet, then ringside-hitratio is brought up to date in it
  --no-build    run the binary already in DIR as it is
  -h, --help    this text, then the tool's own options
EOF
}

ARGS=()
SHOW_HELP=0
while (($#)); do
    case "$1" in
        --build) BUILD_DIR=${2:?}; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        -h|--help) SHOW_HELP=1; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if ((SHOW_HELP)); then
    usage
    echo
    ARGS=(--help)
fi

BIN=$BUILD_DIR/ringside-hitratio
if ((!NO_BUILD)); then
    if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
        cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
    fi
    cmake --build "$BUILD_DIR" --target ringside-hitratio -j"$(nproc)" >&2
fi
if [[ ! -x $BIN ]]; then
    echo "hitratio.sh: no $BIN" >&2
    exit 1
fi
if grep -qs '^CMAKE_BUILD_TYPE:STRING=Debug' "$BUILD_DIR/CMakeCache.txt"; then
    echo "hitratio.sh: note: $BUILD_DIR is a Debug build; the ratios are the same, Mreq/s is not" >&2
fi
exec "$BIN" "${ARGS[@]}"
