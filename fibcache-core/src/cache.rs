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
//!
//! The capabilities so far:
//! - [`Expiry`] ([`Cache::expiry`]): how long an entry has left, so that a copy in a nearer
//!   tier never outlives the original.
//! - [`Claims`] ([`Cache::claims`]): atomic, expiring claims on keys in a store shared by
//!   several servers, so that one of them computes a value the others wait for.

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
/// - `Err` means the store itself failed: [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable)
///   when it could not be reached or did not answer (callers stop asking it for a moment),
///   [`ErrorKind::Backend`](crate::ErrorKind::Backend) for any other failure. Callers treat a failure
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
    /// [`Unavailable`](crate::ErrorKind::Unavailable) or [`Backend`](crate::ErrorKind::Backend) when
    /// the store cannot be asked.
    async fn get(&self, key: &str) -> Result<Option<String>>;

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    /// [`Unavailable`](crate::ErrorKind::Unavailable) or [`Backend`](crate::ErrorKind::Backend) when
    /// the store cannot be written.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;

    /// The value under `key` and the time it has left, read together, so that a copy of it
    /// made elsewhere (a nearer tier) can be given no longer a life than the original has.
    ///
    /// The time is `None` when it is not known: the backend offers no [`Expiry`], or the value
    /// has no lifetime. The default reads the value with [`get`](Cache::get), then its
    /// lifetime with [`Expiry::remaining`] when offered: two round trips, so the lifetime is
    /// measured after the value was read and never overstates it (a value that expired in
    /// between reads as having no known lifetime). A backend that can answer both at once
    /// (Redis: one pipeline) overrides it.
    ///
    /// # Errors
    /// As [`Cache::get`].
    async fn get_with_remaining(&self, key: &str) -> Result<Option<(String, Option<Duration>)>> {
        let Some(value) = self.get(key).await? else {
            return Ok(None);
        };
        let left = match self.expiry() {
            Some(expiry) => expiry.remaining(key).await.unwrap_or(None),
            None => None,
        };
        Ok(Some((value, left)))
    }

    /// The [`Expiry`] capability, if this backend offers it. The default: not offered.
    fn expiry(&self) -> Option<&dyn Expiry> {
        None
    }

    /// The [`Claims`] capability, if this backend offers it. The default: not offered.
    fn claims(&self) -> Option<&dyn Claims> {
        None
    }
}

/// Optional capability: how long an entry has left.
///
/// A cache in front of this store (a nearer tier) uses it to give its copy of a value the
/// original's remaining lifetime, so that the copy never outlives it.
#[async_trait]
pub trait Expiry: Send + Sync {
    /// The time the value under `key` has left; `None` when there is no value, or it has no
    /// lifetime.
    ///
    /// # Errors
    /// As [`Cache::get`].
    async fn remaining(&self, key: &str) -> Result<Option<Duration>>;
}

/// Optional capability: atomic claims on keys, in a store shared by several servers.
///
/// Whoever holds the claim on a key computes its value; the others wait for the value to
/// appear under the key itself. A claim has a lifetime and lapses by itself unless renewed, so
/// a holder that dies frees it within that lifetime. A claim is held by a `token` that its
/// holder chooses unique (a random string): only the holder can renew or release it.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Claims `key` for `ttl` under `token`, if nobody holds it. `Ok(true)`: claimed;
    /// `Ok(false)`: someone else holds it.
    ///
    /// # Errors
    /// As [`Cache::set`].
    async fn claim(&self, key: &str, token: &str, ttl: Duration) -> Result<bool>;

    /// Extends the claim on `key` to `ttl` from now, if `token` still holds it.
    /// `Ok(false)`: it is not ours any more (it lapsed, and perhaps someone else claimed it).
    ///
    /// # Errors
    /// As [`Cache::set`].
    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool>;

    /// Gives up the claim on `key`, if `token` holds it. `Ok(false)`: it was not ours.
    ///
    /// # Errors
    /// As [`Cache::set`].
    async fn release(&self, key: &str, token: &str) -> Result<bool>;
}

#[async_trait]
impl<C: Cache + ?Sized> Cache for std::sync::Arc<C> {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        (**self).get(key).await
    }

    async fn get_with_remaining(&self, key: &str) -> Result<Option<(String, Option<Duration>)>> {
        (**self).get_with_remaining(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        (**self).set(key, value, ttl).await
    }

    fn expiry(&self) -> Option<&dyn Expiry> {
        (**self).expiry()
    }

    fn claims(&self) -> Option<&dyn Claims> {
        (**self).claims()
    }
}

#[async_trait]
impl<C: Cache + ?Sized> Cache for Box<C> {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        (**self).get(key).await
    }

    async fn get_with_remaining(&self, key: &str) -> Result<Option<(String, Option<Duration>)>> {
        (**self).get_with_remaining(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        (**self).set(key, value, ttl).await
    }

    fn expiry(&self) -> Option<&dyn Expiry> {
        (**self).expiry()
    }

    fn claims(&self) -> Option<&dyn Claims> {
        (**self).claims()
    }
}
