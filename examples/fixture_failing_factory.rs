//! Test fixture: a plugin backend `failing` whose factory always reports a configuration
//! error, so that the tests can show the server refuses to start with the plugin's message.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_failing_factory
//! cargo run --features dynamic -- \
//!     --plugin target/debug/examples/libfixture_failing_factory.so --cache failing
//! ```

#![forbid(unsafe_code)]

use fibcache_core::nop::NopCache;
use fibcache_core::{export_plugin, register_backend, Config, Error, Result};

async fn create(_config: &Config) -> Result<NopCache> {
    Err(Error::config(
        "failing",
        "FAILING_FIXTURE_SETTING is not set; this fixture never starts",
    ))
}

register_backend! {
    name: "failing",
    summary: "test fixture whose factory fails",
    factory: create,
}

export_plugin!();
