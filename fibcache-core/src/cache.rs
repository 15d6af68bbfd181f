//! The `Cache` contract every backend implements.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// A string-keyed, string-valued store with a lifetime per entry.
///
/// This is the interface of the article's `cache.Cache`, made async and thread-safe. The server
/// holds one `Arc<dyn Cache>` and calls it from every worker thread at once.
///
/// # Contract
/// - `get` of a key that was never set, or was evicted, is [`Error::NotFound`](crate::Error::NotFound).
/// - `get` of a key whose TTL is over is [`Error::Expired`](crate::Error::Expired) or
///   [`Error::NotFound`](crate::Error::NotFound) (a store such as Redis that drops expired keys
///   itself only knows the latter); either way the value is never returned again.
/// - `set` overwrites any previous value and restarts the TTL.
/// - A failure of the store itself is [`Error::Backend`](crate::Error::Backend): callers treat
///   it like a miss, so an implementation should fail fast rather than wait long.
/// - Implementations must not hold a lock across an `.await`.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Returns the value stored under `key`.
    ///
    /// # Errors
    /// [`NotFound`](crate::Error::NotFound), [`Expired`](crate::Error::Expired), or
    /// [`Backend`](crate::Error::Backend) when the store cannot be asked.
    async fn get(&self, key: &str) -> Result<String>;

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    /// [`Backend`](crate::Error::Backend) when the store cannot be written.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;
}

#[async_trait]
impl<C: Cache + ?Sized> Cache for std::sync::Arc<C> {
    async fn get(&self, key: &str) -> Result<String> {
        (**self).get(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        (**self).set(key, value, ttl).await
    }
}

#[async_trait]
impl<C: Cache + ?Sized> Cache for Box<C> {
    async fn get(&self, key: &str) -> Result<String> {
        (**self).get(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        (**self).set(key, value, ttl).await
    }
}
