//! Adds `dash` by its descriptor: the path the linker cannot drop.

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main_with(fibcache_server::about!(), &[&fibcache_outsider::DASH])
}
