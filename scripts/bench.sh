#!/usr/bin/env bash
# The load report with every backend: installs `wrk` and `redis-server` when they are missing,
# then runs `cargo bench --bench http` with the `redis` and `dynamic` features, in release (see
# the header of benches/http/main.rs for what it measures and the FIBCACHE_BENCH_* settings).
#
#   scripts/bench.sh                          # target/fibcache-bench/report.md, latency.svg
#   FIBCACHE_BENCH_ROUNDS=3 scripts/bench.sh  # 3 rounds instead of 5
#   scripts/bench.sh memory redis             # only the rows whose name contains these words
#   scripts/bench.sh --all                    # every bench: criterion's, then the reports
#
# Installing needs Debian/Ubuntu's apt-get and root (or sudo). `wrk` is the report's only load
# generator and `redis-server` serves its redis row: without either, the report stops and says
# how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "bench.sh: ${missing[*]} missing and no apt-get here; install them yourself" >&2
    elif [ "$(id -u)" = 0 ]; then
        echo "bench.sh: installing ${missing[*]}" >&2
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    elif command -v sudo >/dev/null 2>&1; then
        echo "bench.sh: installing ${missing[*]} with sudo" >&2
        sudo apt-get update
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        echo "bench.sh: ${missing[*]} missing; not root and no sudo, so not installing" >&2
    fi
fi

if [ "${1:-}" = "--all" ]; then
    shift
    exec cargo bench --features redis,dynamic -- "$@"
fi
exec cargo bench --features redis,dynamic --bench http -- "$@"
