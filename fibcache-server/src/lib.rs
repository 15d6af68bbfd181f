//! The fibcache HTTP server: routing, coalesced and bounded computation, metrics, and the CLI,
//! as a library.
//!
//! It serves `GET /fib/{n}` (a deliberately slow Fibonacci, cached), the probes `GET /healthz`,
//! `/livez` and `/readyz`, `GET /metrics`, and the OpenAPI 3.1 document of all of them at
//! `GET /openapi.json` (written in `fibcache-server/openapi.json`, served with the instance's
//! `--max-n`), on hyper 1 and tokio, answering from whichever [`fibcache_core::Cache`] the
//! operator picked by name. The cache can never make an answer wrong or an error: a failed,
//! slow or garbled cache read makes the request compute instead.
//!
//! Three ways to use it, from the most packaged to the least:
//! - **A binary of your own**: `fn main() -> ExitCode { fibcache_server::cli::main(fibcache_server::about!()) }`
//!   gives the whole `fibcache` command line under your binary's name, with every backend
//!   linked into it (yours included, registered with `fibcache_core::register_backend!`).
//! - **Your accept loop, our app**: [`App`] is a cloneable [`tower_service::Service`] that
//!   carries everything about one request (routing, limits, coalescing, metrics, JSON
//!   errors); nest it in axum with `Router::new().nest_service("/api", app)`.
//! - **Our accept loop**: [`run`] serves an [`App`] on a listener you bound, with the
//!   connection limits of [`ConnLimits`], until the shutdown future you pass completes.
//!
//! # Overview
//! - [`app`]: [`App`], [`Settings`], routing and responses.
//! - [`engine`]: the request path of `GET /fib/{n}` ([`Engine::fib`]): cache tiers
//!   ([`TierSpec`]), single-flight, the bounded computation pool with admission by cost,
//!   coalescing across instances, cancellation and timeouts.
//! - [`fib`]: the workload, the slow Fibonacci, and its cost estimate.
//! - [`server`]: [`run`] (the accept loop, connection limits, graceful shutdown).
//! - [`metrics`]: the Prometheus series.
//! - [`cli`]: flags and environment variables, start-up and exit codes; with the feature
//!   `dynamic`, `--plugin` loads backends from shared libraries through
//!   `fibcache_core::plugin`, which holds the workspace's only `unsafe` code.
//!
//! # Optional features
//! - `memory` (default): the in-process LRU backend `memory`.
//! - `redis`: the Redis backend `redis`.
//! - `dynamic`: `--plugin`, backends loaded from shared libraries.
//!
//! A crate that depends on `fibcache-server` gets `memory` unless it turns default features
//! off; the features are those of `fibcache-backends`, forwarded.
//!
//! # Example
//! Serve from the `nop` backend on a free port, ask once, and shut down:
//! ```
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! use fibcache_core::Config;
//! use fibcache_server::{run, App, ConnLimits, Settings};
//!
//! let cache = fibcache_server::backends()?.create("nop", &Config::default()).await?;
//! let app = App::new(cache, "nop", Settings::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(run(listener, app, ConnLimits::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut stream = tokio::net::TcpStream::connect(addr).await?;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! stream.write_all(b"GET /fib/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response).await?;
//! assert!(response.ends_with(r#"{"result":55}"#));
//!
//! let _ = stop.send(());
//! server.await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Referenced so that the linker keeps the backends crate and its `inventory` registrations.
use fibcache_backends as _;

pub mod app;
mod cache;
pub mod cli;
mod cluster;
mod connection;
pub mod engine;
pub mod fib;
mod flight;
mod logging;
pub mod metrics;
mod openapi;
mod pool;
pub mod server;
mod settings;
mod throttle;
mod tiers;

pub use app::App;
pub use engine::{Answer, Engine};
pub use server::{run, serve, ConnLimits};
pub use settings::{Settings, SettingsBuilder, SettingsError};
pub use tiers::{TierSpec, TierSpecError, UNKNOWN_LIFETIME};

/// Every backend compiled into this binary, by name: the ones of `fibcache-core` and
/// `fibcache-backends` that its features enable (named explicitly, so the linker cannot drop
/// them: [`fibcache_backends::registry`]), and any other crate's linked into it. Asking for a
/// backend of `fibcache-backends` whose feature is off fails with
/// [`RegistryErrorKind::NotCompiledIn`](fibcache_core::RegistryErrorKind), naming the
/// feature. Add a backend of a crate of your own with
/// [`Registry::with`](fibcache_core::Registry::with).
///
/// # Errors
/// [`RegistryErrorKind::Duplicate`](fibcache_core::RegistryErrorKind) when two linked crates
/// register one name.
pub fn backends() -> Result<fibcache_core::Registry, fibcache_core::RegistryError> {
    let mut registry = fibcache_backends::registry()?;
    // This crate forwards the features of `fibcache-backends` under the same names, and a
    // dependent names them through this crate.
    for (name, feature) in fibcache_backends::OPTIONAL {
        registry.note_optional(name, &format!("{}/{feature}", env!("CARGO_PKG_NAME")));
    }
    Ok(registry)
}

/// The Cargo features this build was made with, of `memory`, `redis`, `dynamic` and `wasm`:
/// the backends of `fibcache-backends` that are compiled in, and which kinds of plugin can be
/// loaded.
pub fn features() -> Vec<&'static str> {
    let mut features = fibcache_backends::COMPILED_IN.to_vec();
    if cfg!(feature = "dynamic") {
        features.push("dynamic");
    }
    if cfg!(feature = "wasm") {
        features.push("wasm");
    }
    features
}

/// [`features`] as `--version` shows them: `memory, redis, dynamic`, or `nop only`.
pub(crate) fn features_summary() -> String {
    match features().join(", ") {
        none if none.is_empty() => "nop only".to_owned(),
        some => some,
    }
}

/// The backend used when none is named: `memory` if it is compiled in, else `nop`.
pub fn default_backend(registry: &fibcache_core::Registry) -> &'static str {
    if registry.contains("memory") {
        "memory"
    } else {
        "nop"
    }
}
