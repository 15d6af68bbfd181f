//! Test fixture: a plugin of the current plugin ABI whose handshake says it was built with
//! fibcache-core 0.1.0, so that the tests can show the ABI version alone decides: the server
//! loads it, and logs the core version it claims. Not an example to follow.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_old_core
//! cargo run --features dynamic -- --plugin target/debug/examples/libfixture_old_core.so \
//!     --list-backends
//! ```

#![forbid(unsafe_code)]

use fibcache_core::nop::NopCache;
use fibcache_core::{export_plugin, register_backend, Config, Result};

async fn create(_config: &Config) -> Result<NopCache> {
    Ok(NopCache)
}

register_backend! {
    name: "oldcore",
    summary: "test fixture that claims fibcache-core 0.1.0",
    factory: create,
}

export_plugin!(@fixture core_version = "0.1.0");
