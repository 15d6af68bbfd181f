#!/usr/bin/env bash
# The load report with every backend: installs `wrk` and `redis-server` when they are missing,
# then runs `cargo bench --bench http` with the `redis` and `dynamic` features (see the header
# of benches/http.rs for what it measures and the FIBCACHE_BENCH_* settings).
#
#   scripts/bench.sh              # the load report: target/fibcache-bench/report.md, latency.svg
#   scripts/bench.sh memory redis # only the rows whose name contains one of these words
#   scripts/bench.sh --all        # every bench: the criterion benches, then the load report
#
# Installing needs Debian/Ubuntu's apt-get and root (or sudo). Without `wrk` the report uses
# its own Rust load generator and says so; without `redis-server` the redis row is skipped.
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
