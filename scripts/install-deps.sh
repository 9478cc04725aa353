#!/usr/bin/env bash
# Install the Debian 12 packages ringside needs, only those that are missing.
#   scripts/install-deps.sh            build and run
#   scripts/install-deps.sh --test     also what the test suite uses
#   scripts/install-deps.sh --bench    also the peers the benchmarks compare against
set -euo pipefail

build=(build-essential cmake pkg-config liburing-dev libyaml-dev libhiredis-dev libwslay-dev
       libxxhash-dev libjansson-dev libcmocka-dev curl python3)
test_pkgs=(clang libclang-rt-14-dev wrk redis-server prometheus yamllint
           docker.io docker-compose debootstrap)
bench=(nginx-light haproxy varnish wrk linux-perf)

want=("${build[@]}")
for arg in "$@"; do
    case "$arg" in
    --test) want+=("${test_pkgs[@]}") ;;
    --bench) want+=("${bench[@]}") ;;
    *) echo "usage: $0 [--test] [--bench]" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm for the chart checks: any recent node will do; Debian's if there is none.
if [[ " $* " == *" --test "* ]] && ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
