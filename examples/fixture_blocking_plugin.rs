//! Test fixture: a plugin backend `sleepy` whose `get` blocks its thread for 10 s
//! (`std::thread::sleep`, no `unsafe` needed), so that the tests can show a plugin that blocks
//! costs a request at most `--cache-timeout`: the server answers, `/livez` too, and the stuck
//! call is counted and logged. Not an example to follow. `set` works at once.
//!
//! It logs `sleepy: get woke up` when a sleep ends, so that a test can tell its answer came
//! while the plugin was still asleep.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_blocking_plugin
//! cargo run --features dynamic -- \
//!     --plugin target/debug/examples/libfixture_blocking_plugin.so --cache sleepy
//! ```

#![forbid(unsafe_code)]

use std::time::Duration;

use fibcache_core::{async_trait, export_plugin, register_backend, Cache, Config, Result};

/// How long `get` blocks its thread.
const SLEEP: Duration = Duration::from_secs(10);

struct Sleepy;

#[async_trait]
impl Cache for Sleepy {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        tracing::info!(key, "sleepy: get blocks its thread");
        std::thread::sleep(SLEEP);
        tracing::info!(key, "sleepy: get woke up");
        Ok(None)
    }

    async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<Sleepy> {
    Ok(Sleepy)
}

register_backend! {
    name: "sleepy",
    summary: "test fixture whose get blocks its thread for 10 s",
    factory: create,
}

export_plugin!();
