//! The `Cache` contract every backend implements.
//!
//! # Optional capabilities
//! The trait is kept to what every store can do: read a value, write a value with a lifetime.
//! What only some stores can do (an atomic claim on a key shared by several servers, say) is
//! added as an **optional capability**: a trait of its own, reached through a default method
//! of [`Cache`] that answers `None`. A backend that offers the capability overrides that one
//! method to return `Some(self)`; every other backend, and every plugin built before the
//! capability existed, compiles and behaves as before. Callers ask for the capability and fall
//! back to what they did without it. Adding one is therefore never a breaking change, for
//! backends written against this crate nor for plugins: the plugin ABI's function table grows
//! the same way, with optional entries a host reads only when the plugin provides them.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// A string-keyed, string-valued store with a lifetime per entry.
///
/// The server holds one `Arc<dyn Cache>` and calls it from every worker thread at once.
///
/// # Contract
/// - `get` of a key that was never set, was evicted, or whose lifetime is over is `Ok(None)`;
///   an expired value is never returned.
/// - `set` overwrites any previous value and restarts the lifetime.
/// - `Err` means the store itself failed: [`Error::Unavailable`](crate::Error::Unavailable)
///   when it could not be reached or did not answer (callers stop asking it for a moment),
///   [`Error::Backend`](crate::Error::Backend) for any other failure. Callers treat a failure
///   like a miss, so an implementation should fail fast rather than wait long: it receives the
///   caller's per-operation limit as [`Config::op_timeout`](crate::Config::op_timeout).
/// - Implementations must not hold a lock across an `.await`.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use fibcache_core::{async_trait, Cache, Result};
///
/// /// Remembers one value at a time.
/// #[derive(Default)]
/// struct Single(std::sync::Mutex<Option<(String, String)>>);
///
/// #[async_trait]
/// impl Cache for Single {
///     async fn get(&self, key: &str) -> Result<Option<String>> {
///         let slot = self.0.lock().unwrap();
///         Ok(slot.as_ref().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
///     }
///     async fn set(&self, key: &str, value: &str, _ttl: Duration) -> Result<()> {
///         *self.0.lock().unwrap() = Some((key.to_owned(), value.to_owned()));
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Returns the value stored under `key`, or `None` when there is none (never set, evicted
    /// or expired).
    ///
    /// # Errors
    /// [`Unavailable`](crate::Error::Unavailable) or [`Backend`](crate::Error::Backend) when
    /// the store cannot be asked.
    async fn get(&self, key: &str) -> Result<Option<String>>;

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    /// [`Unavailable`](crate::Error::Unavailable) or [`Backend`](crate::Error::Backend) when
    /// the store cannot be written.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;
}

#[async_trait]
impl<C: Cache + ?Sized> Cache for std::sync::Arc<C> {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        (**self).get(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        (**self).set(key, value, ttl).await
    }
}

#[async_trait]
impl<C: Cache + ?Sized> Cache for Box<C> {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        (**self).get(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        (**self).set(key, value, ttl).await
    }
}
