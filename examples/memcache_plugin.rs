//! A cache backend shipped as a plugin: `memcache`, the memory backend of `fibcache-backends`
//! (an LRU with a TTL per entry) built into a shared library and loaded by the server at
//! start-up, like the reference article's Go `memcache.so`.
//!
//! A plugin is an ordinary backend plus one `export_plugin!()` line: here, the factory makes a
//! `MemoryCache` and `register_backend!` gives it a name of its own, so it can sit next to the
//! built-in `memory`. Its `tracing` events show up in the server's log. Build it, then run the
//! server with it:
//! ```text
//! cargo build --release --features dynamic --example memcache_plugin
//! cargo run --release --features dynamic -- \
//!     --plugin target/release/examples/libmemcache_plugin.so --cache memcache
//! ```
//! (On macOS the library is `libmemcache_plugin.dylib`.)

#![forbid(unsafe_code)]

use fibcache_backends::memory::MemoryCache;
use fibcache_core::{export_plugin, register_backend, Config, Result};

async fn create(config: &Config) -> Result<MemoryCache> {
    tracing::info!(capacity = config.capacity(), "memcache created");
    Ok(MemoryCache::new(config.capacity()))
}

register_backend! {
    name: "memcache",
    summary: "in-memory LRU with a TTL per entry, loaded from a plugin",
    factory: create,
}

export_plugin!();
