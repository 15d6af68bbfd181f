#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine.
#
# The Redis tests need a real `redis-server` (they start their own, on free loopback ports),
# and the metrics test `promtool` (Debian's `prometheus` package): each is installed from
# Debian's packages when it is missing and we are root; otherwise this stops with a message
# saying how to install it. Nothing is skipped silently.
#
# Then every test runs three times over, once per feature set whose registry differs:
#   all features (memory, redis, dynamic), the default (memory), and none (nop only).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run besides cargo: the Debian package that provides each command.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

echo "== all features: memory, redis, dynamic"
cargo test --workspace --all-features
echo "== default features: memory"
cargo test --workspace
echo "== no default features: nop only"
cargo test --workspace --no-default-features
