//! The cache backends that ship with fibcache, each compiled in by a Cargo feature.
//!
//! Every backend registers itself with [`fibcache_core::register_backend!`]; linking this crate
//! is all it takes to make them selectable by name in the server. A backend whose feature is
//! off is not compiled at all, and neither is its client library: static composition means
//! the binary holds exactly what its features promise.
//!
//! Because registration happens through `inventory`, a binary must *reference* this crate for
//! the linker to keep it: a crate nothing names can be dropped together with its
//! registrations, silently. [`registry`] is the way that cannot fail: it names every backend
//! of this crate that is compiled in (`memory::MEMORY`, `redis::REDIS`), so calling it
//! keeps them linked.
//!
//! # Overview
//! - `memory` (feature `memory`): [`memory::MemoryCache`], a bounded LRU with a TTL per entry.
//! - `redis` (feature `redis`): a Redis store, or a Redis Cluster, shared by several servers;
//!   it also offers the optional capabilities `Expiry` and `Claims`.
//! - [`registry`]: every backend linked into the binary, this crate's named explicitly, and
//!   the ones whose feature is off noted, so that asking for one says how to get it
//!   ([`OPTIONAL`]).
//!
//! # Optional features
//! - `memory` (default): the in-process LRU backend `memory`.
//! - `redis`: the Redis backend `redis`, on the `redis` crate's tokio client (one server or a
//!   Redis Cluster).
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use fibcache_core::Config;
//!
//! let registry = fibcache_backends::registry()?;
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

use fibcache_core::{Registry, RegistryError};

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

/// Every backend this crate can provide, with the Cargo feature of this crate that compiles
/// it in, whether or not it is on in this build.
pub const OPTIONAL: &[(&str, &str)] = &[("memory", "memory"), ("redis", "redis")];

/// The backends this build of the crate registers, sorted (`nop` comes from `fibcache-core`).
pub const COMPILED_IN: &[&str] = &[
    #[cfg(feature = "memory")]
    "memory",
    #[cfg(feature = "redis")]
    "redis",
];

/// Tells `registry` about every backend of [`OPTIONAL`], so that asking for one whose feature
/// is off fails with [`RegistryErrorKind::NotCompiledIn`](fibcache_core::RegistryErrorKind)
/// naming the feature as a dependent passes it to Cargo (`fibcache-backends/redis`).
pub fn note_optional(registry: &mut Registry) {
    for (name, feature) in OPTIONAL {
        let feature = format!("{}/{feature}", env!("CARGO_PKG_NAME"));
        registry.note_optional(name, &feature);
    }
}

/// Every backend registered in this binary ([`Registry::new`]), with this crate's compiled-in
/// backends added by name so that the linker cannot drop them, and the others noted
/// ([`note_optional`]).
///
/// # Errors
/// [`RegistryErrorKind::Duplicate`](fibcache_core::RegistryErrorKind) when two linked crates
/// register one name.
pub fn registry() -> Result<Registry, RegistryError> {
    #[allow(unused_mut)]
    let mut registry = Registry::new()?;
    #[cfg(feature = "memory")]
    {
        registry = registry.with(&memory::MEMORY)?;
    }
    #[cfg(feature = "redis")]
    {
        registry = registry.with(&redis::REDIS)?;
    }
    note_optional(&mut registry);
    Ok(registry)
}
