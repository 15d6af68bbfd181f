//! The HTTP application: routing, the request path, metrics and JSON errors, as one cloneable
//! [`App`] that is both what [`run`](crate::run) serves and a [`tower_service::Service`] that
//! nests in an axum or tower stack.
//!
//! Routing is plain: a prefix for `/fib/{n}`, then a table of the other paths, which the tests
//! of the OpenAPI document (`GET /openapi.json`) compare with the document. Every answer other
//! than `/metrics` is JSON; every error has an `error` field. Nothing here panics on any input.
//!
//! # What the `App` carries, and what it does not
//! Everything that concerns **one request** is in the `App`, however it is served: routing,
//! `--max-n`, the cache and its time limit, coalescing, the computation pool with
//! `--max-computes`, `--queue-wait` and `--compute-timeout`, metrics, the access log, JSON
//! errors, `HEAD`. What concerns **connections** belongs to whoever accepts them: with
//! [`run`](crate::run), the idle limit (`--header-timeout`), `--max-connections` and the
//! graceful shutdown (see [`ConnLimits`](crate::ConnLimits)); inside another server, that
//! server's own limits.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fibcache_core::Cache;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use tracing::Level;

use crate::engine::{Answer, Engine};
use crate::fib::{Fib, Workload};
use crate::metrics::{self, Metrics, RouteName};
use crate::openapi;
pub use crate::settings::{Settings, SettingsBuilder, SettingsError};
use crate::tiers::Tiers;

mod param;
mod response;
pub(crate) use param::parse_n;
use response::{error, json, not_allowed, result, unavailable, without_body};

/// The body type of every response.
pub type Body = Full<Bytes>;

/// The fibcache HTTP application; cheap to clone (clones share the cache, the flights and the
/// metrics).
///
/// Serve it with [`run`](crate::run), or nest it in another server as a
/// [`tower_service::Service`]: with axum, `Router::new().nest_service("/api", app)`
/// (`examples/embed_axum.rs` in the repository).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use fibcache_server::{App, Settings};
///
/// let settings = Settings::builder().max_n(30).build()?;
/// let cache = fibcache_server::backends()?
///     .create("nop", &settings.cache_config())
///     .await?;
/// let app = App::new(cache, "nop", settings);
///
/// // One request, as a tower service would receive it.
/// let request = hyper::Request::get("/fib/20").body(())?;
/// let response = app.handle(request).await;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["x-cache"], "miss");
///
/// // Beyond this app's `max_n`: a JSON 422, never a panic.
/// let response = app.handle(hyper::Request::get("/fib/31").body(())?).await;
/// assert_eq!(response.status(), 422);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// Set once shutdown has started: `/readyz` answers 503 from then on.
    draining: AtomicBool,
    backend: String,
    max_n: u64,
    compute_timeout: Duration,
    metrics: Arc<Metrics>,
    /// What `GET /openapi.json` answers, with this app's `max_n` and mount prefix: built once,
    /// shared by every answer.
    openapi: Bytes,
    /// Where the app is mounted in a larger router (`/api`), or empty (see
    /// [`SettingsBuilder::mount_prefix`]).
    mount: String,
}

impl App {
    /// An app answering from `cache`, the backend registered as `backend`.
    ///
    /// Must be called inside a tokio runtime (computations are spawned on it).
    pub fn new(cache: Arc<dyn Cache>, backend: impl Into<String>, settings: Settings) -> Self {
        App::tiered(vec![(backend.into(), cache)], settings)
    }

    /// An app answering from several caches as tiers, nearest first (`--cache memory+redis`):
    /// a read tries them in order and copies a hit to the nearer ones, a write goes to all.
    /// Each is named by its registered backend; `/healthz` shows the names joined by `+`.
    ///
    /// Must be called inside a tokio runtime (computations are spawned on it). An empty list
    /// is the `nop` backend: the app computes every answer and caches nothing.
    pub fn tiered(tiers: Vec<(String, Arc<dyn Cache>)>, settings: Settings) -> Self {
        App::with_workload(tiers, settings, Arc::new(Fib::default()))
    }

    /// [`App::tiered`] computing `workload` instead of the Fibonacci numbers.
    pub(crate) fn with_workload(
        tiers: Vec<(String, Arc<dyn Cache>)>,
        settings: Settings,
        workload: Arc<dyn Workload>,
    ) -> Self {
        let tiers = if tiers.is_empty() {
            let nop: Arc<dyn Cache> = Arc::new(fibcache_core::nop::NopCache);
            vec![("nop".to_owned(), nop)]
        } else {
            tiers
        };
        let metrics = Arc::new(Metrics::new());
        let backend = tiers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let tiers = Tiers::new(tiers, &settings, &metrics);
        let max_n = settings.max_n();
        App {
            inner: Arc::new(Inner {
                engine: Engine::new(tiers, workload, &settings, metrics.clone()),
                draining: AtomicBool::new(false),
                backend,
                max_n,
                compute_timeout: settings.compute_timeout(),
                metrics,
                openapi: openapi::document(max_n, settings.mount_prefix()),
                mount: settings.mount_prefix().to_owned(),
            }),
        }
    }

    /// The request path behind `GET /fib/{n}`, to call without HTTP.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The metrics this app counts into (what `GET /metrics` shows).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The backend's registered name (what `GET /healthz` shows).
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }

    /// Answers one request. Never fails: every error becomes a JSON response.
    ///
    /// The request is routed and dropped before the returned future is first polled, so the
    /// future borrows nothing (and is `'static`). This matters for speed: hyper reads ahead on
    /// a connection while a request is being answered, and a request still alive then keeps
    /// hyper's read buffer shared, which made hyper allocate a new buffer for every request.
    pub fn handle<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let started = Instant::now();
        let route = self.route(req.method(), self.unmounted(req.uri().path()));
        let label = route.label();
        let head = req.method() == Method::HEAD;
        // The access log is at debug level: at info, formatting and writing a line per request
        // cost a cache hit as much as answering it (`--log-level debug` turns it on).
        let logged = tracing::enabled!(Level::DEBUG)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        drop(req);
        let app = self.clone();
        async move {
            // Counts the request if an outer layer (a timeout, say) drops this future before
            // it answers; disarmed once it has.
            let cut_short = CutShort {
                app: &app,
                route: label,
                started,
            };
            let (mut response, n) = match route {
                Route::Fib(n) => (app.fib(n).await, Some(n)),
                Route::Fixed(Fixed::Health) => (app.health(), None),
                Route::Fixed(Fixed::Live) => (json(StatusCode::OK, r#"{"status":"ok"}"#), None),
                Route::Fixed(Fixed::Ready) => (app.readiness(), None),
                Route::Fixed(Fixed::Metrics) => (app.exposition(), None),
                Route::Fixed(Fixed::OpenApi) => {
                    (json(StatusCode::OK, app.inner.openapi.clone()), None)
                }
                Route::Refused(_, response) => (response, None),
            };
            if head {
                without_body(&mut response);
            }
            std::mem::forget(cut_short);
            let status = response.status().as_u16();
            let elapsed = started.elapsed();
            app.inner.metrics.request(label, status, elapsed);
            if let Some((method, path)) = logged {
                tracing::debug!(
                    method = %method,
                    path,
                    status,
                    n,
                    duration_us = elapsed.as_micros() as u64,
                    "request"
                );
            }
            response
        }
    }

    /// `path` without the mount prefix, when it still has it (the app served directly rather
    /// than nested by a router that strips the prefix).
    fn unmounted<'p>(&self, path: &'p str) -> &'p str {
        let mount = self.inner.mount.as_str();
        if mount.is_empty() {
            return path;
        }
        match path.strip_prefix(mount) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        }
    }

    /// Where a request goes; an answer already when it goes nowhere.
    fn route(&self, method: &Method, path: &str) -> Route {
        let get = method == Method::GET || method == Method::HEAD;
        if let Some(param) = path.strip_prefix(FIB_PREFIX) {
            if param.contains('/') {
                return Route::Refused(RouteName::Other, self.not_found(path));
            }
            if !get {
                return Route::Refused(RouteName::Fib, not_allowed());
            }
            return match parse_n(param, self.inner.max_n) {
                Ok(n) => Route::Fib(n),
                Err((status, message)) => Route::Refused(RouteName::Fib, error(status, &message)),
            };
        }
        match FIXED.iter().find(|(fixed, _)| *fixed == path) {
            Some(&(_, fixed)) if get => Route::Fixed(fixed),
            Some(&(_, fixed)) => Route::Refused(fixed.label(), not_allowed()),
            None => Route::Refused(RouteName::Other, self.not_found(path)),
        }
    }

    async fn fib(&self, n: u64) -> Response<Body> {
        let limit = humantime::format_duration(self.inner.compute_timeout);
        match self.inner.engine.fib(n).await {
            Answer::Hit(value) => result(value, "hit"),
            Answer::Miss(value) => result(value, "miss"),
            Answer::OutOfRange => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("n must be between 0 and {}", self.inner.max_n),
            ),
            Answer::Overloaded => unavailable("every computation slot is busy; retry shortly"),
            Answer::TimedOut => error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("computing fib({n}) took longer than {limit}"),
            ),
            Answer::TooCostly => error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "computing fib({n}) would take longer than {limit}; not tried (a cached value \
                     is still served)"
                ),
            ),
            Answer::Failed => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("computing fib({n}) failed"),
            ),
            Answer::Stopped => {
                let mut response =
                    unavailable("the computation was stopped (server shutting down); retry");
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                response
            }
        }
    }

    fn health(&self) -> Response<Body> {
        let body = serde_json::json!({"status": "ok", "backend": self.inner.backend});
        json(StatusCode::OK, body.to_string())
    }

    /// `/readyz`: ready (200) until shutdown starts, then 503, so that a load balancer stops
    /// sending before the listener closes. A cache that stopped answering keeps the server
    /// ready (answers stay right), and says so.
    fn readiness(&self) -> Response<Body> {
        if self.inner.draining.load(Ordering::Relaxed) {
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        let cache = if self.inner.engine.cache_up() {
            "ok"
        } else {
            "degraded"
        };
        let body = serde_json::json!({"status": "ready", "cache": cache});
        json(StatusCode::OK, body.to_string())
    }

    fn exposition(&self) -> Response<Body> {
        let mut resp = Response::new(Full::new(Bytes::from(self.inner.metrics.encode())));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        resp
    }

    /// Says from now on that the server is shutting down: `/readyz` answers 503. [`run`]
    /// does it when its shutdown future completes; a server of your own calls it when it
    /// starts draining.
    ///
    /// [`run`]: crate::run
    pub fn begin_shutdown(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// The shutdown trigger for a server of your own that keeps `--shutdown-delay`'s window:
    /// waits for `signal`, then answers `/readyz` with 503 ([`App::begin_shutdown`]) while
    /// still serving for `delay`, so that load balancers stop sending, and only then
    /// completes. Hand it to the server's graceful shutdown, e.g. axum's
    /// `serve(..).with_graceful_shutdown(app.not_ready_for(delay, signal))`.
    pub fn not_ready_for(
        &self,
        delay: Duration,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let app = self.clone();
        async move {
            signal.await;
            app.begin_shutdown();
            tracing::info!(
                delay = %humantime::format_duration(delay),
                "not ready; serving a while longer before shutting down"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The 404 answer for `path`, shown as the client sent it (with the mount prefix).
    fn not_found(&self, path: &str) -> Response<Body> {
        let full = format!("{}{path}", self.inner.mount);
        let shown: String = full.chars().take(64).collect();
        error(StatusCode::NOT_FOUND, &format!("no route for {shown:?}"))
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("backend", &self.inner.backend)
            .field("max_n", &self.inner.max_n)
            .field("engine", &self.inner.engine)
            .finish_non_exhaustive()
    }
}

/// `/fib/{n}`: the router sends every path that starts so to `parse_n` (and to 404 if the rest
/// holds another `/`).
pub(crate) const FIB_PREFIX: &str = "/fib/";

/// Every path the router answers besides `/fib/{n}`, with its route. The router looks paths up
/// here, and the OpenAPI tests check that the document lists exactly these and `/fib/{n}`: a
/// route added here and not documented fails them.
const FIXED: [(&str, Fixed); 5] = [
    ("/healthz", Fixed::Health),
    ("/livez", Fixed::Live),
    ("/readyz", Fixed::Ready),
    ("/metrics", Fixed::Metrics),
    ("/openapi.json", Fixed::OpenApi),
];

/// The paths of [`FIXED`], for the OpenAPI tests.
#[cfg(test)]
pub(crate) fn fixed_paths() -> impl Iterator<Item = &'static str> {
    FIXED.iter().map(|(path, _)| *path)
}

/// Where the router sends a request.
enum Route {
    /// `GET /fib/{n}`.
    Fib(u64),
    /// `GET` of one of the paths of [`FIXED`].
    Fixed(Fixed),
    /// Nowhere: the error answer (404, 405, 400, 422), and the route it counts under.
    Refused(RouteName, Response<Body>),
}

/// The routes with a fixed path (in [`FIXED`]).
#[derive(Clone, Copy)]
enum Fixed {
    Health,
    Live,
    Ready,
    Metrics,
    OpenApi,
}

impl Fixed {
    fn label(self) -> RouteName {
        match self {
            Fixed::Health => RouteName::Healthz,
            Fixed::Live => RouteName::Livez,
            Fixed::Ready => RouteName::Readyz,
            Fixed::Metrics => RouteName::Metrics,
            Fixed::OpenApi => RouteName::OpenApi,
        }
    }
}

impl Route {
    fn label(&self) -> RouteName {
        match self {
            Route::Fib(_) => RouteName::Fib,
            Route::Fixed(fixed) => fixed.label(),
            Route::Refused(name, _) => *name,
        }
    }
}

/// The app as a tower `Service`: always ready, never fails (errors are JSON responses).
impl<B> tower_service::Service<Request<B>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let answer = self.handle(req);
        Box::pin(async move { Ok(answer.await) })
    }
}

/// The status a request is counted under when an outer layer dropped it before it was
/// answered (nginx's "client closed request"; no client ever receives it).
pub const CUT_SHORT: u16 = 499;

/// Counts a request whose answer was dropped unfinished (see [`App::handle`]).
struct CutShort<'a> {
    app: &'a App,
    route: RouteName,
    started: Instant,
}

impl Drop for CutShort<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        self.app
            .inner
            .metrics
            .request(self.route, CUT_SHORT, elapsed);
    }
}

#[cfg(test)]
mod tests;
