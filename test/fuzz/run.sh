#!/bin/sh
# Build one fuzz target with clang and libFuzzer and run it for a while.
#
#   test/fuzz/run.sh TARGET SECONDS [libFuzzer options...]
#   test/fuzz/run.sh fuzz_http1 300 -jobs=4
#
# The build and a working copy of the seed corpus live in a temporary directory that is
# removed afterwards; the seeds in the tree are never modified. Crash, leak and timeout
# inputs are written to the current directory (libFuzzer's default), named
# crash-<sha1> and so on; replay one with the same binary or add it to the corpus.
set -eu

usage() {
    echo "usage: $0 TARGET SECONDS [libFuzzer options...]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
target=$1
seconds=$2
shift 2
case $seconds in '' | *[!0-9]*) usage ;; esac

root=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$root/test/fuzz/$target.c" ] || { echo "no such target: test/fuzz/$target.c" >&2; exit 2; }
command -v clang >/dev/null || { echo "clang is required" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ringside-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

cmake -S "$root" -B "$work/build" -DCMAKE_C_COMPILER=clang -DRINGSIDE_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target "$target" -j "$(nproc 2>/dev/null || echo 2)"

mkdir -p "$work/corpus"
if [ -d "$root/test/fuzz/corpus/$target" ]; then
    cp -R "$root/test/fuzz/corpus/$target/." "$work/corpus/"
fi

echo "fuzzing $target for $seconds s"
"$work/build/test/$target" -max_total_time="$seconds" -print_final_stats=1 "$@" "$work/corpus"
