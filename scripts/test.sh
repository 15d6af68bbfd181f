#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine.
#
# The Redis tests need a real `redis-server` (they start their own, on free loopback ports):
# it is installed from Debian's packages when it is missing and we are root; otherwise this
# stops with a message saying how to install it. Nothing is skipped silently.
#
# Then every test runs three times over, once per feature set whose registry differs:
#   all features (memory, redis, dynamic), the default (memory), and none (nop only).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing redis-server (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing; install it (Debian/Ubuntu: sudo apt-get install redis-server)" >&2
    exit 1
  fi
fi

echo "== all features: memory, redis, dynamic"
cargo test --workspace --all-features
echo "== default features: memory"
cargo test --workspace
echo "== no default features: nop only"
cargo test --workspace --no-default-features
