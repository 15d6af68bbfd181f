//! fibcache inside an axum application: the `App` of `fibcache-server` is a tower `Service`,
//! nested under `/api` next to the application's own routes. Every per-request behaviour
//! (routing, `--max-n`-style limits, coalescing, the cache's time limit, metrics, JSON errors)
//! comes with it; connection limits are axum's business here.
//!
//! The backend is picked by name from every backend compiled in, with `FIB_CACHE` (default
//! `memory` when compiled in, else `nop`), and the app listens on 127.0.0.1:`FIB_PORT`
//! (default 8080):
//!
//! ```sh
//! cargo run --example embed_axum
//! curl -i localhost:8080/api/fib/20     # {"result":6765}, x-cache: miss, then hit
//! curl localhost:8080/                  # the application's own route
//! ```

#![forbid(unsafe_code)]

use anyhow::Context as _;
use axum::routing::get;
use axum::Router;
use fibcache_core::Config;
use fibcache_server::{App, Settings};

/// An environment variable, with the empty string counted as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = fibcache_server::backends()?;
    let name =
        env("FIB_CACHE").unwrap_or_else(|| fibcache_server::default_backend(&registry).to_owned());
    let cache = registry.create(&name, &Config::default()).await?;
    let fibcache = App::new(cache, &name, Settings::default());

    let router = Router::new()
        .route(
            "/",
            get(|| async { "an axum application with fibcache under /api\n" }),
        )
        .nest_service("/api", fibcache);

    let port: u16 = match env("FIB_PORT") {
        Some(port) => port.parse().context("FIB_PORT must be a port number")?,
        None => 8080,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    eprintln!(
        "embed_axum: listening addr={} backend={name}",
        listener.local_addr()?
    );
    axum::serve(listener, router).await?;
    Ok(())
}
