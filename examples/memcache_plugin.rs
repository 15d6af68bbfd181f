//! A cache backend shipped as a plugin: `memcache`, an in-memory LRU with a TTL per entry,
//! built as a shared library and loaded by the server at start-up, like the reference
//! article's Go `memcache.so`.
//!
//! It is an ordinary backend (a `Cache` impl and a `register_backend!` line) plus one
//! `export_plugin!()` line; its `tracing` events show up in the server's log. Build it, then
//! run the server with it:
//! ```text
//! cargo build --release --features dynamic --example memcache_plugin
//! cargo run --release --features dynamic -- \
//!     --plugin target/release/examples/libmemcache_plugin.so --cache memcache --log-level debug
//! ```
//! (On macOS the library is `libmemcache_plugin.dylib`.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use fibcache_core::{async_trait, export_plugin, register_backend, Cache, Config, Result};
use lru::LruCache;

/// A value and the instant it stops being valid.
struct Entry {
    value: String,
    expires_at: Instant,
}

/// At most `--cache-capacity` entries; the least recently used goes first.
struct Memcache {
    /// A `std` mutex: held for one lookup and never across an `.await`, and `get` needs `&mut`
    /// because it updates the LRU order.
    entries: Mutex<LruCache<String, Entry>>,
}

impl Memcache {
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written; go on.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Cache for Memcache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let now = Instant::now();
        let mut entries = self.lock();
        let result = match entries.get(key) {
            None => None,
            Some(entry) if entry.expires_at <= now => {
                entries.pop(key);
                None
            }
            Some(entry) => Some(entry.value.clone()),
        };
        drop(entries);
        tracing::debug!(key, hit = result.is_some(), "memcache get");
        Ok(result)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        // A TTL too long for the clock means "never expires" (about a century).
        let expires_at = now
            .checked_add(ttl)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let entry = Entry {
            value: value.to_owned(),
            expires_at,
        };
        self.lock().put(key.to_owned(), entry);
        tracing::debug!(key, ttl = ?ttl, "memcache set");
        Ok(())
    }
}

async fn create(config: &Config) -> Result<Memcache> {
    tracing::info!(capacity = config.capacity(), "memcache created");
    Ok(Memcache {
        entries: Mutex::new(LruCache::new(config.capacity())),
    })
}

register_backend! {
    name: "memcache",
    summary: "in-memory LRU with a TTL per entry, loaded from a plugin",
    factory: create,
}

export_plugin!();
