//! Names nothing of the library: the linker drops it, and `dash` with it.

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main(fibcache_server::about!())
}
