//! The `nop` backend: always registered, stores nothing.
//!
//! It is what the server falls back to when no caching backend is compiled in, and what a
//! benchmark uses to measure everything but the cache.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Cache, Config, Result};

/// A cache that never stores anything: every `get` is `Ok(None)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NopCache;

#[async_trait]
impl Cache for NopCache {
    async fn get(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }

    async fn set(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<()> {
        Ok(())
    }
}

async fn create(_config: &Config) -> Result<NopCache> {
    Ok(NopCache)
}

crate::register_backend! {
    name: "nop",
    summary: "stores nothing; every request computes",
    factory: create,
    descriptor: pub NOP,
}
