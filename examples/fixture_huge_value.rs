//! Test fixture: a plugin backend `huge` whose `get` answers a value of 8 MiB (or
//! `HUGE_VALUE_BYTES` bytes) for every key, so that the tests can show the host refuses a
//! value longer than `Config::max_value_len` before copying it, as a failed read. Not an
//! example to follow. `set` works and stores nothing.
//!
//! Built and loaded by `tests/plugin.rs`; by hand:
//! ```text
//! cargo build --features dynamic --example fixture_huge_value
//! cargo run --features dynamic -- \
//!     --plugin target/debug/examples/libfixture_huge_value.so --cache huge
//! ```

#![forbid(unsafe_code)]

use std::time::Duration;

use fibcache_core::{async_trait, export_plugin, register_backend, Cache, Config, Result};

struct Huge {
    len: usize,
}

#[async_trait]
impl Cache for Huge {
    async fn get(&self, _key: &str) -> Result<Option<String>> {
        Ok(Some("9".repeat(self.len)))
    }

    async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

async fn create(config: &Config) -> Result<Huge> {
    let len = config
        .var("HUGE_VALUE_BYTES")
        .and_then(|len| len.parse().ok())
        .unwrap_or(8 << 20);
    Ok(Huge { len })
}

register_backend! {
    name: "huge",
    summary: "test fixture whose get answers a value of 8 MiB",
    factory: create,
}

export_plugin!();
