//! The `Cache` contract and the backend registry of fibcache.
//!
//! fibcache serves `GET /fib/{n}` with a deliberately slow Fibonacci and caches the answers in
//! a backend chosen **by name at run time** from those compiled into the binary. This crate is
//! what every backend and the server agree on: the async [`Cache`] trait, the [`Error`] of one
//! operation, the [`register_backend!`] macro that makes a backend selectable by name, and the
//! [`Registry`] the server creates backends from (with its own [`RegistryError`]). It depends on no cache client library, so a
//! third-party backend needs nothing but this crate.
//!
//! # Overview
//! - [`cache`]: the [`Cache`] trait.
//! - [`registry`]: [`register_backend!`], [`Registry`], [`Descriptor`] (a backend's static
//!   description, for [`Registry::with`], the path the linker cannot drop), [`Config`] (what a
//!   factory receives).
//! - [`Error`] and [`ErrorKind`] (one cache operation), [`RegistryError`] and
//!   [`RegistryErrorKind`] (choosing or creating a backend).
//! - [`nop`]: the `nop` backend, always registered.
//! - `plugin` (feature `plugin`): the C-ABI boundary for backends loaded from shared
//!   libraries, both sides of it: `export_plugin!` for plugin authors, `load_plugins` for the
//!   host.
//! - `testing` (feature `testing`): the conformance suite every backend must pass, for a
//!   backend's own tests.
//!
//! # Optional features
//! - `plugin`: the C-ABI plugin boundary, both sides (`export_plugin!`, `load_plugins`; links
//!   `libloading` and tokio).
//! - `testing`: `testing::conformance`, the suite every backend must pass,
//!   for a backend's own tests (links tokio).
//!
//! # Unsafe code
//! The crate denies `unsafe` everywhere but in `plugin`, which holds every FFI type and every
//! `unsafe` line of the workspace together with the invariants they rely on; every other
//! crate of the workspace forbids `unsafe` outright.
//!
//! # Example
//! A backend in a crate of its own, registered with one macro line and created by name:
//! ```
//! use std::time::Duration;
//! use fibcache_core::{async_trait, register_backend, Cache, Config, Registry, Result};
//!
//! /// Remembers one value at a time.
//! #[derive(Default)]
//! struct Single(std::sync::Mutex<Option<(String, String)>>);
//!
//! #[async_trait]
//! impl Cache for Single {
//!     async fn get(&self, key: &str) -> Result<Option<String>> {
//!         let slot = self.0.lock().unwrap();
//!         Ok(slot.as_ref().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
//!     }
//!     async fn set(&self, key: &str, value: &str, _ttl: Duration) -> Result<()> {
//!         *self.0.lock().unwrap() = Some((key.to_owned(), value.to_owned()));
//!         Ok(())
//!     }
//! }
//!
//! async fn create(_config: &Config) -> Result<Single> {
//!     Ok(Single::default())
//! }
//!
//! register_backend! {
//!     name: "single",
//!     summary: "keeps the last value only",
//!     factory: create,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new()?;
//! let cache = registry.create("single", &Config::default()).await?;
//! cache.set("fib:10", "55", Duration::from_secs(15)).await?;
//! assert_eq!(cache.get("fib:10").await?.as_deref(), Some("55"));
//! assert_eq!(cache.get("fib:11").await?, None);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cache;
mod config;
mod error;
pub mod nop;
#[cfg(feature = "plugin")]
#[cfg_attr(docsrs, doc(cfg(feature = "plugin")))]
#[allow(unsafe_code)]
pub mod plugin;
pub mod registry;
#[cfg(feature = "reload")]
#[cfg_attr(docsrs, doc(cfg(feature = "reload")))]
pub mod reload;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use async_trait::async_trait;
pub use cache::{Cache, Claims, Expiry};
pub use error::{BoxError, Error, ErrorKind, RegistryError, RegistryErrorKind, Result};
pub use registry::{Backend, Config, Descriptor, Origin, Registry, DEFAULT_MAX_VALUE_LEN};

/// The version of this crate; a plugin reports the one it was built with (the plugin ABI
/// version, not this, decides whether it loads).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
