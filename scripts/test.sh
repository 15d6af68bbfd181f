#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine.
#
# Four tools come from outside Cargo, and are installed when missing; nothing is skipped
# silently: where this cannot install one, it stops with a message saying how to.
# - The WebAssembly tests build their guests for the `wasm32-wasip2` target: added with
#   `rustup target add` when missing.
# - The Redis tests need a real `redis-server` (they start their own, on free loopback ports),
#   and the metrics test `promtool` (Debian's `prometheus` package): installed from Debian's
#   packages when we are root.
# - schemathesis (PyPI, pinned below) checks the real server against its own OpenAPI document:
#   installed into a virtual environment of its own, target/schemathesis-venv.
#
# First the checks every submission passes, cheapest first, so that a formatting slip or a lint
# fails in seconds rather than after the tests: rustfmt, clippy with warnings denied, and the
# docs with rustdoc's warnings denied.
#
# Then every test runs with all features (memory, redis, dynamic, wasm); the tests whose outcome
# depends on the feature set run again with the default (memory) and with none (nop only); and
# schemathesis runs against the binary of the default build.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check (at ${SECONDS}s)"
cargo fmt --all -- --check
echo "== clippy, warnings denied (at ${SECONDS}s)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo doc, warnings denied (at ${SECONDS}s)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

SCHEMATHESIS=4.32.5
st_venv=target/schemathesis-venv

# Installs Debian packages if we are root on Debian/Ubuntu; fails, having done nothing, otherwise.
apt_updated=
debian_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ -z "$apt_updated" ]; then
    apt-get update -qq && apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# What the tests run besides cargo: the Debian package that provides each command.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
  echo "== installing ${missing[*]} (Debian packages) (at ${SECONDS}s)"
  if ! debian_install "${missing[@]}"; then
    echo "missing: ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if [ "$("$st_venv/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS" ]; then
  echo "== installing schemathesis $SCHEMATHESIS (PyPI) into $st_venv (at ${SECONDS}s)"
  if ! python3 -m venv "$st_venv" >/dev/null 2>&1; then
    # Debian's python3 leaves the venv module (with pip for it) to a package of its own.
    rm -rf "$st_venv"
    if ! debian_install python3 python3-venv || ! python3 -m venv "$st_venv"; then
      echo "python3 cannot make a virtual environment; install it (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  if ! "$st_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS"; then
    echo "could not install schemathesis; install it with:" >&2
    echo "  python3 -m venv $st_venv && $st_venv/bin/pip install schemathesis==$SCHEMATHESIS" >&2
    exit 1
  fi
fi

# Starts the `fibcache` binary the last `cargo test` built on a free port, logging to `$1`;
# sets `server_pid` and `server_addr`, and kills the server when the script exits. The log
# exists before the server starts (created here, appended to by the server), so reading it
# never races the server's own start.
start_fibcache() {
  local log=$1
  server_addr=
  : >"$log"
  # n up to 20 keeps every computation quick; a long --queue-wait keeps a busy machine from
  # turning a computation into a 503, which the document allows but the checks count as an error.
  (
    # Nothing from the caller's environment decides what the server does.
    for var in $(compgen -e); do
      case $var in FIB_* | REDIS_* | RUST_LOG) unset "$var" ;; esac
    done
    exec target/debug/fibcache --host 127.0.0.1 --port 0 --max-n 20 --queue-wait 5s --log-level warn
  ) 2>>"$log" &
  server_pid=$!
  # shellcheck disable=SC2064 # the PID is known now, and `server_pid` may change later
  trap "kill $server_pid 2>/dev/null || true" EXIT
  # Polling a log file: sleep is the only wait the shell has.
  for _ in $(seq 300); do
    server_addr=$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$log")
    if [ -n "$server_addr" ] || ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$server_addr" ]; then
    echo "fibcache did not start; its log:" >&2
    cat "$log" >&2
    return 1
  fi
}

# Runs schemathesis against the document the server of `start_fibcache` serves, with every
# check; any finding (or warning) fails.
run_schemathesis() {
  local dir=target/schemathesis log=target/schemathesis/server.log
  mkdir -p "$dir"
  start_fibcache "$log"
  # schemathesis and Hypothesis keep their databases in the working directory: run in target/.
  # `--include-path-regex ^/` selects every operation; without a filter, schemathesis leaves out
  # GET of the document it read the API from (here /openapi.json). timeout bounds a run that hangs.
  if ! (cd "$dir" && timeout 300 "../schemathesis-venv/bin/st" \
    --config-file ../../scripts/schemathesis.toml run "http://$server_addr/openapi.json" \
    --checks all --include-path-regex '^/' --max-examples 150 --request-timeout 10 --no-color); then
    echo "schemathesis found the above; the server's log:" >&2
    cat "$log" >&2
    exit 1
  fi
  kill "$server_pid"
  wait "$server_pid" || true
  trap - EXIT
}

# tests/wasm.rs builds the WebAssembly guests (guests/) for wasm32-wasip2.
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; then
  echo "== installing the wasm32-wasip2 target (rustup) (at ${SECONDS}s)"
  if ! rustup target add wasm32-wasip2; then
    echo "the WebAssembly tests need the wasm32-wasip2 target; install it with: rustup target add wasm32-wasip2" >&2
    exit 1
  fi
fi

echo "== all features: memory, redis, dynamic, wasm (at ${SECONDS}s)"
cargo test --workspace --all-features
# The other two feature sets run what depends on the feature set: every crate's unit tests and
# doc tests, and the integration tests whose outcome does (the registry, the HTTP API and
# metrics, the binary's name and version, the limits with and without `memory`, the memory
# backend, a `.wasm` plugin without `wasm`). The rest (connections, plugins, Redis, ...) do the
# same with any feature set and ran above, with all of them.
# fibcache-wasm is left out of both: its features do not follow the root's (it ran above), and
# building it under another feature set would build wasmtime again.
by_feature=(--lib --bins --test registry --test http --test embedding --test hardening
  --test memory --test wasm)
echo "== default features: memory (at ${SECONDS}s)"
cargo test --workspace --exclude fibcache-wasm "${by_feature[@]}"
cargo test --workspace --exclude fibcache-wasm --doc
echo "== schemathesis $SCHEMATHESIS: the default build against its own /openapi.json (at ${SECONDS}s)"
run_schemathesis
echo "== no default features: nop only (at ${SECONDS}s)"
cargo test --workspace --exclude fibcache-wasm --no-default-features "${by_feature[@]}"
cargo test --workspace --exclude fibcache-wasm --no-default-features --doc
echo "== all passed in ${SECONDS}s"
