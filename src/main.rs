//! The `fibcache` binary: forwards the Cargo features to the workspace crates and starts the
//! server (see `fibcache_server::cli`).

#![forbid(unsafe_code)]

// Referenced so that the linker keeps every backend this build's features enable.
use fibcache_backends as _;

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main()
}
