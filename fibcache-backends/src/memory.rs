//! The `memory` backend: a bounded LRU in this process, with a TTL per entry.
//!
//! It is the default backend: no setup, fast hits, and memory that stays bounded whatever keys
//! are asked for (at most `--cache-capacity` entries; the least recently used goes first).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use fibcache_core::{async_trait, Cache, Config, Result};
use lru::LruCache;
use tokio::time::Instant;

/// An entry and the instant it stops being valid.
struct Entry {
    value: String,
    expires_at: Instant,
}

/// A bounded LRU cache with a lifetime per entry.
///
/// Expired entries are removed lazily: the first `get` after expiry answers `None` and removes
/// the entry; an expired entry nobody asks for is evicted like any other when the capacity is
/// reached.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> fibcache_core::Result<()> {
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use fibcache_backends::memory::MemoryCache;
/// use fibcache_core::Cache;
///
/// let cache = MemoryCache::new(NonZeroUsize::new(2).unwrap());
/// let ttl = Duration::from_secs(15);
/// cache.set("fib:10", "55", ttl).await?;
/// cache.set("fib:11", "89", ttl).await?;
/// assert_eq!(cache.get("fib:10").await?.as_deref(), Some("55"));
/// // A third entry evicts the least recently used, fib:11.
/// cache.set("fib:12", "144", ttl).await?;
/// assert_eq!(cache.get("fib:11").await?, None);
/// assert_eq!(cache.get("fib:10").await?.as_deref(), Some("55"));
/// # Ok(())
/// # }
/// ```
pub struct MemoryCache {
    /// A `std` mutex rather than tokio's: it is held for a hash lookup and never across an
    /// `.await`, and an uncontended `std` mutex is several times cheaper (see tokio's "Which
    /// kind of mutex should you use?"). `get` needs `&mut` because it updates LRU order.
    entries: Mutex<LruCache<String, Entry>>,
}

impl MemoryCache {
    /// An empty cache that keeps at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize) -> Self {
        MemoryCache {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// How many entries are held, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way that
        // matters for a cache (at worst an entry is missing), so a poisoned lock is used on.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.lock();
        f.debug_struct("MemoryCache")
            .field("len", &entries.len())
            .field("capacity", &entries.cap())
            .finish()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(key) {
            None => Ok(None),
            Some(entry) if entry.expires_at <= now => {
                entries.pop(key);
                Ok(None)
            }
            Some(entry) => Ok(Some(entry.value.clone())),
        }
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let expires_at = Instant::now().checked_add(ttl).unwrap_or_else(far_future);
        let entry = Entry {
            value: value.to_owned(),
            expires_at,
        };
        self.lock().put(key.to_owned(), entry);
        Ok(())
    }
}

/// An instant so far ahead that it never comes (about 30 years, as tokio does for "never").
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

async fn create(config: &Config) -> Result<MemoryCache> {
    Ok(MemoryCache::new(config.capacity()))
}

fibcache_core::register_backend! {
    name: "memory",
    summary: "in-process LRU with a TTL per entry (--cache-capacity entries)",
    factory: create,
    descriptor: pub MEMORY,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> MemoryCache {
        MemoryCache::new(NonZeroUsize::new(capacity).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_entry_is_absent_and_removed() {
        let c = cache(8);
        c.set("k", "v", Duration::from_secs(15)).await.unwrap();
        tokio::time::advance(Duration::from_millis(14_999)).await;
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some("v"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(c.get("k").await.unwrap(), None);
        assert!(c.is_empty(), "the expired entry is gone, not only hidden");
        assert_eq!(c.get("k").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn set_restarts_the_lifetime() {
        let c = cache(8);
        c.set("k", "a", Duration::from_secs(10)).await.unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        c.set("k", "b", Duration::from_secs(10)).await.unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn the_least_recently_used_entry_goes_first_at_capacity() {
        let c = cache(2);
        let ttl = Duration::from_secs(60);
        c.set("a", "1", ttl).await.unwrap();
        c.set("b", "2", ttl).await.unwrap();
        // Reading `a` makes `b` the least recently used.
        assert_eq!(c.get("a").await.unwrap().as_deref(), Some("1"));
        c.set("c", "3", ttl).await.unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("b").await.unwrap(), None);
        assert_eq!(c.get("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(c.get("c").await.unwrap().as_deref(), Some("3"));
    }

    #[tokio::test]
    async fn a_huge_ttl_does_not_overflow() {
        let c = cache(2);
        c.set("k", "v", Duration::MAX).await.unwrap();
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some("v"));
    }
}
