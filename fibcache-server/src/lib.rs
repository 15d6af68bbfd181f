//! The fibcache HTTP server: routing, coalesced and bounded computation, metrics, and the CLI.
//!
//! It serves `GET /fib/{n}` (a deliberately slow Fibonacci, cached), `GET /healthz` and
//! `GET /metrics` on hyper 1 and tokio, answering from whichever [`fibcache_core::Cache`] the
//! operator picked by name. The cache can never make an answer wrong or an error: a failed,
//! slow or garbled cache read makes the request compute instead.
//!
//! # Overview
//! - [`server`]: [`run`] (the accept loop, connection limits, graceful shutdown).
//! - [`http`]: routing and handlers, [`AppState`].
//! - [`compute`]: request coalescing, the bounded computation pool, cancellation and timeouts.
//! - [`metrics`]: the Prometheus series.
//! - [`cli`]: flags and environment variables, start-up and exit codes; with the feature
//!   `dynamic`, `--plugin` loads backends from shared libraries through
//!   `fibcache_core::plugin`, which holds the workspace's only `unsafe` code.
//!
//! # Example
//! Serve from an in-process cache on a free port, ask once, and shut down:
//! ```
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use fibcache_server::{run, AppState, ConnLimits, Settings};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let cache = Arc::new(fibcache_core::nop::NopCache);
//! let state = AppState::new(cache, "nop", Settings::default());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(run(listener, state, ConnLimits::default(), async {
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

// Referenced so that the linker keeps the backends crate and its `inventory` registrations.
use fibcache_backends as _;

pub mod cli;
pub mod compute;
pub mod http;
mod logging;
pub mod metrics;
pub mod server;
mod throttle;

pub use http::{AppState, Settings};
pub use server::{run, ConnLimits};
