//! Test fixture: a plugin whose handshake says it was built with `panic = "abort"`, so that
//! the tests can show the server refuses a plugin whose panics it could not catch. Not an
//! example to follow.
//!
//! It only claims it: building it with `abort` for real would also build the server that way
//! (Cargo has one panic strategy per build), whereas the claim is all the check reads.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_panic_abort
//! cargo run --features dynamic -- --plugin target/debug/examples/libfixture_panic_abort.so
//! ```

#![forbid(unsafe_code)]

use fibcache_core::nop::NopCache;
use fibcache_core::{export_plugin, register_backend, Config, Result};

async fn create(_config: &Config) -> Result<NopCache> {
    Ok(NopCache)
}

// A backend, so that only the panic strategy check can refuse the library.
register_backend! {
    name: "panicabort",
    summary: "test fixture that claims panic = \"abort\"",
    factory: create,
}

export_plugin!(@fixture panic_unwind = false);
