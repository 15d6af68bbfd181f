//! A network backend shipped as a plugin: `rediscache`, the Redis backend of
//! `fibcache-backends` built into a shared library, like the reference article's Go
//! `rediscache.so`.
//!
//! It shows that an asynchronous backend with its own connection works across the boundary:
//! the plugin drives the Redis client on a tokio runtime of its own, and the server's workers
//! never wait on it. The backend's optional capabilities cross too (the remaining lifetime of
//! an entry, and claims), so servers sharing one Redis through this plugin compute each cold
//! `n` once between them, as with the built-in `redis`. It reads the same settings as the built-in `redis` backend (`REDIS_URL`,
//! or `REDIS_ADDR` / `REDIS_PASSWORD` / `REDIS_DB`, or `REDIS_CLUSTER_NODES` for a Redis
//! Cluster). Build it, then run the server with it:
//! ```text
//! cargo build --release --features dynamic,redis --example rediscache_plugin
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --features dynamic -- \
//!     --plugin target/release/examples/librediscache_plugin.so --cache rediscache
//! ```
//! (On macOS the library is `librediscache_plugin.dylib`.)

#![forbid(unsafe_code)]

use fibcache_backends::redis::{RedisCache, RedisConfig};
use fibcache_core::{export_plugin, register_backend, Config, Result};

async fn create(config: &Config) -> Result<RedisCache> {
    let cache = RedisCache::connect(RedisConfig::from_config(config)?).await?;
    tracing::info!(endpoint = %cache.config().endpoint(), "rediscache created");
    Ok(cache)
}

register_backend! {
    name: "rediscache",
    summary: "shared Redis store, loaded from a plugin (REDIS_URL, REDIS_CLUSTER_NODES, ...)",
    factory: create,
}

export_plugin!();
