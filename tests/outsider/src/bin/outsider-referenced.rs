//! References the library, as the unknown-backend error advises: `dash` is linked in.

use fibcache_outsider as _;

fn main() -> std::process::ExitCode {
    fibcache_server::cli::main(fibcache_server::about!())
}
