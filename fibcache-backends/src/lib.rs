//! The cache backends that ship with fibcache, each compiled in by a Cargo feature.
//!
//! Every backend registers itself with [`fibcache_core::register_backend!`]; linking this crate
//! is all it takes to make them selectable by name in the server. A backend whose feature is
//! off is not compiled at all, and neither is its client library: static composition means
//! the binary holds exactly what its features promise.
//!
//! Because registration happens through `inventory`, a binary must *reference* this crate for
//! the linker to keep it (`use fibcache_backends as _;`): a crate nothing names can be dropped
//! together with its registrations, silently.
//!
//! # Overview
//! - `memory` (feature `memory`): [`memory::MemoryCache`], a bounded LRU with a TTL per entry.
//! - `redis` (feature `redis`): a Redis store, or a Redis Cluster, shared by several servers;
//!   it also offers the optional capabilities `Expiry` and `Claims`.
//! - [`OPTIONAL`]: every backend of this crate with the feature that compiles it in, so a
//!   request for one that is off can say how to get it.
//!
//! # Optional features
//! - `memory` (default): the in-process LRU backend `memory`.
//! - `redis`: the Redis backend `redis`, on the `redis` crate's tokio client (one server or a
//!   Redis Cluster).
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> fibcache_core::Result<()> {
//! use std::time::Duration;
//! use fibcache_core::{Config, Registry};
//!
//! let mut registry = Registry::new()?;
//! fibcache_backends::note_optional(&mut registry);
//! # #[cfg(feature = "memory")] {
//! let cache = registry.create("memory", &Config::default()).await?;
//! cache.set("fib:10", "55", Duration::from_secs(15)).await?;
//! assert_eq!(cache.get("fib:10").await?.as_deref(), Some("55"));
//! # }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

/// Every backend this crate can provide, with the Cargo feature (of both this crate and the
/// `fibcache` package) that compiles it in, whether or not it is on in this build.
pub const OPTIONAL: &[(&str, &str)] = &[("memory", "memory"), ("redis", "redis")];

/// The backends this build of the crate registers, sorted (`nop` comes from `fibcache-core`).
pub const COMPILED_IN: &[&str] = &[
    #[cfg(feature = "memory")]
    "memory",
    #[cfg(feature = "redis")]
    "redis",
];

/// Tells `registry` about every backend of [`OPTIONAL`], so that asking for one whose feature
/// is off fails with [`fibcache_core::Error::NotCompiledIn`] naming the feature.
pub fn note_optional(registry: &mut fibcache_core::Registry) {
    for (name, feature) in OPTIONAL {
        registry.note_optional(name, feature);
    }
}
