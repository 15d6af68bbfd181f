//! fibcache inside an axum application, keeping every guarantee of the `fibcache` binary: the
//! `App` of `fibcache-server` is a tower `Service`, nested under `/api` next to the
//! application's own routes and layers.
//!
//! - **Settings** come from the same flags and environment variables as `fibcache`'s
//!   (`SettingsArgs`, flattened into this program's own command line), so the limits and the
//!   backend's bound on values (`Settings::cache_config`) are those of the binary.
//! - **Metrics**: fibcache's series are registered into the application's own Prometheus
//!   registry, next to its own counter, and served at `/metrics` with the process metrics.
//! - **Mounting**: `mount_prefix("/api")` puts the prefix into the served OpenAPI document
//!   (`/api/openapi.json`) and into error messages.
//! - **Shutdown**: on SIGINT or SIGTERM, `/api/readyz` answers 503 for `--shutdown-delay` while
//!   everything else is served, then axum drains (`App::not_ready_for`).
//!
//! Connection limits (`--max-connections`, the idle watchdog) are axum's business here.
//!
//! ```sh
//! cargo run --example embed_axum -- --port 8080 --cache memory
//! curl -i localhost:8080/api/fib/20     # {"result":6765}, x-cache: miss, then hit
//! curl localhost:8080/                  # the application's own route
//! curl localhost:8080/metrics           # its counter, fibcache's series, process metrics
//! ```

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::Context as _;
use axum::http::HeaderValue;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use fibcache_server::cli::SettingsArgs;
use fibcache_server::metrics::prometheus_client::encoding::text::encode;
use fibcache_server::metrics::prometheus_client::metrics::counter::Counter;
use fibcache_server::metrics::prometheus_client::registry::Registry;
use fibcache_server::metrics::Metrics;
use fibcache_server::App;

/// An axum application with fibcache under /api.
#[derive(Parser)]
struct Args {
    /// fibcache's own flags: --cache, --cache-ttl, --max-n, ...
    #[command(flatten)]
    fibcache: SettingsArgs,

    /// Address to bind.
    #[arg(long, env = "FIB_HOST", default_value = "127.0.0.1")]
    host: String,

    /// Port to bind; 0 picks a free one.
    #[arg(long, env = "FIB_PORT", default_value_t = 8080)]
    port: u16,

    /// After SIGINT/SIGTERM, serve this long with /api/readyz at 503, then drain.
    #[arg(long, env = "FIB_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = args.fibcache.builder().mount_prefix("/api").build()?;
    let registry = fibcache_server::backends()?;
    let name = match args.fibcache.cache() {
        Some(name) => name.to_owned(),
        None => fibcache_server::default_backend(&registry).to_owned(),
    };
    let cache = registry
        .create(&name, &args.fibcache.cache_config())
        .await?;
    let fibcache = App::new(cache, &name, settings);

    // The application's own metrics, with fibcache's and the process's beside them.
    let mut metrics = Registry::default();
    let greetings = Counter::<u64>::default();
    metrics.register("embed_greetings", "Greetings served", greetings.clone());
    fibcache.metrics().register(&mut metrics);
    Metrics::register_process(&mut metrics);
    let metrics = std::sync::Arc::new(metrics);

    let router = Router::new()
        .route(
            "/",
            get(move || async move {
                greetings.inc();
                "an axum application with fibcache under /api\n"
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                let mut text = String::new();
                encode(&mut text, &metrics)
                    .map(|()| text)
                    .map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .nest_service("/api", fibcache.clone())
        // A layer of the application's own, around fibcache too.
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                let served_by = HeaderValue::from_static("embed_axum");
                response.headers_mut().insert("x-served-by", served_by);
                response
            },
        ));

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    eprintln!(
        "embed_axum: listening addr={} backend={name}",
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(fibcache.not_ready_for(args.shutdown_delay, signal()))
        .await?;
    eprintln!("embed_axum: stopped");
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
