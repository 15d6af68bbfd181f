//! The `fibcache` binary: the server's command line under this package's name, version and
//! description (see `fibcache_server::cli`). The package forwards its Cargo features to
//! `fibcache-server`, which links the backends they enable.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main(fibcache_server::about!())
}
