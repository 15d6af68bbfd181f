//! Someone else's binary: the whole fibcache command line under this package's name, version
//! and description, with the backends `fibcache-server`'s default features bring.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main(fibcache_server::about!())
}
