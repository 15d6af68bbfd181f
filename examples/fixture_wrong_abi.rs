//! Test fixture: a plugin that claims another plugin ABI version (999), so that the server's
//! refusal of it can be tested. Not an example to follow.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_wrong_abi
//! cargo run --features dynamic -- --plugin target/debug/examples/libfixture_wrong_abi.so
//! ```

use std::time::Duration;

use fibcache_core::{async_trait, export_plugin, register_backend, Cache, Config, Result};

struct Never;

#[async_trait]
impl Cache for Never {
    async fn get(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }

    async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<Never> {
    Ok(Never)
}

register_backend! {
    name: "wrongabi",
    summary: "test fixture built for plugin ABI 999",
    factory: create,
}

export_plugin!(@abi_version 999);
