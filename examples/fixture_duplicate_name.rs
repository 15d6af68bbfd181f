//! Test fixture: a plugin that registers a backend named `memory`, a name the built-in memory
//! backend already has, so that the tests can show the clash is refused.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_duplicate_name
//! cargo run --features dynamic -- --plugin target/debug/examples/libfixture_duplicate_name.so
//! ```

#![forbid(unsafe_code)]

use fibcache_core::nop::NopCache;
use fibcache_core::{export_plugin, register_backend, Config, Result};

async fn create(_config: &Config) -> Result<NopCache> {
    Ok(NopCache)
}

register_backend! {
    name: "memory",
    summary: "test fixture that takes the built-in backend's name",
    factory: create,
}

export_plugin!();
