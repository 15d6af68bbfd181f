//! Routing and the request handlers: `GET /fib/{n}`, `/healthz`, `/metrics`.
//!
//! Routing is a plain `match` on method and path. Every answer other than `/metrics` is JSON;
//! every error has an `error` field. Nothing here panics on any input.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fibcache_core::{fib, Cache, Error};
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    TRANSFER_ENCODING,
};
use hyper::{Method, Request, Response, StatusCode};

use crate::compute::{Engine, OnValue, Outcome};
use crate::metrics::Metrics;
use crate::throttle::Throttle;

/// A warning through `throttle`: at most one a period, the rest at debug level.
macro_rules! throttled {
    ($throttle:expr, $n:expr, $key:expr, $cause:expr, $msg:literal) => {
        match $throttle.admit() {
            Some(suppressed) => {
                tracing::warn!(n = $n, key = %$key, cause = %$cause, suppressed, $msg)
            }
            None => tracing::debug!(n = $n, key = %$key, cause = %$cause, $msg),
        }
    };
}

/// The body type of every response.
pub type Body = Full<Bytes>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    cache: Arc<dyn Cache>,
    backend: String,
    settings: Settings,
    engine: Engine,
    metrics: Arc<Metrics>,
    on_value: OnValue,
    /// Keeps an outage of the backend from writing a warning per request.
    warnings: Arc<Throttle>,
    /// The cache key of every `n` in `0..=max_n`, built once rather than per request.
    keys: Vec<String>,
}

/// The request-path settings of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest `n` accepted (`--max-n`).
    pub max_n: u64,
    /// Key namespace (`--cache-prefix`).
    pub prefix: String,
    /// Lifetime of a written entry (`--cache-ttl`).
    pub ttl: Duration,
    /// Longest a cache operation may take before it counts as failed (`--cache-timeout`).
    pub cache_timeout: Duration,
    /// Limits on computations.
    pub limits: crate::compute::Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_n: fib::MAX_N,
            prefix: "fib:".to_owned(),
            ttl: Duration::from_secs(15),
            cache_timeout: Duration::from_millis(250),
            limits: crate::compute::Limits {
                max_computes: std::thread::available_parallelism().map_or(2, |n| n.get()),
                compute_timeout: Duration::from_secs(30),
                queue_wait: Duration::from_millis(100),
            },
        }
    }
}

impl AppState {
    /// State for a server answering from `cache`, registered as `backend`.
    ///
    /// Must be called inside a tokio runtime.
    pub fn new(cache: Arc<dyn Cache>, backend: impl Into<String>, settings: Settings) -> Self {
        let metrics = Arc::new(Metrics::new());
        let warnings = Arc::new(Throttle::new(Duration::from_secs(1)));
        let keys = (0..=settings.max_n)
            .map(|n| cache_key(&settings.prefix, n))
            .collect();
        let engine = Engine::new(settings.limits, metrics.clone());
        let on_value: OnValue = {
            let cache = cache.clone();
            let metrics = metrics.clone();
            let warnings = warnings.clone();
            let prefix = settings.prefix.clone();
            let ttl = settings.ttl;
            let timeout = settings.cache_timeout;
            Arc::new(move |n, value| {
                let cache = cache.clone();
                let metrics = metrics.clone();
                let warnings = warnings.clone();
                let key = cache_key(&prefix, n);
                tokio::spawn(async move {
                    let value = value.to_string();
                    let write = cache.set(&key, &value, ttl);
                    match tokio::time::timeout(timeout, write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            metrics.cache_errors.inc();
                            let cause = chain(&err);
                            throttled!(warnings, n, key, cause, "cache write failed");
                        }
                        Err(_) => {
                            metrics.cache_errors.inc();
                            let cause = format!("no answer within {timeout:?}");
                            throttled!(warnings, n, key, cause, "cache write timed out");
                        }
                    }
                })
            })
        };
        AppState {
            inner: Arc::new(StateInner {
                cache,
                backend: backend.into(),
                settings,
                engine,
                metrics,
                on_value,
                warnings,
                keys,
            }),
        }
    }

    /// The metrics this server counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The computation engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The backend's registered name.
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.inner.backend)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// The canonical cache key of `n`: `05`, `+5` and `5` all map to `<prefix>5`.
pub fn cache_key(prefix: &str, n: u64) -> String {
    format!("{prefix}{n}")
}

/// Answers one request. Never fails: every error becomes a JSON response.
pub async fn handle<B>(req: Request<B>, state: AppState) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path();
    // No route reads a request body. One that announces a body is answered and the connection
    // closed, so that a client cannot hold it open by never sending the body it announced.
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let (mut response, n) = route(&method, path, &state).await;
    if has_body {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.inner.metrics.request(status, elapsed);
    tracing::info!(
        method = %method,
        path,
        status,
        n,
        duration_us = elapsed.as_micros() as u64,
        "request"
    );
    Ok(response)
}

async fn route(method: &Method, path: &str, state: &AppState) -> (Response<Body>, Option<u64>) {
    let get = method == Method::GET || method == Method::HEAD;
    if let Some(param) = path.strip_prefix("/fib/") {
        if param.contains('/') {
            return (not_found(path), None);
        }
        if !get {
            return (not_allowed(), None);
        }
        return match parse_n(param, state.inner.settings.max_n) {
            Ok(n) => (fib_response(n, state).await, Some(n)),
            Err((status, message)) => (error(status, &message), None),
        };
    }
    match path {
        "/healthz" if get => (health(state), None),
        "/metrics" if get => (metrics(state), None),
        "/healthz" | "/metrics" => (not_allowed(), None),
        _ => (not_found(path), None),
    }
}

/// Parses the `{n}` of `/fib/{n}`: an optional sign and decimal digits.
///
/// Not an integer is 400; an integer outside `0..=max_n` (however many digits) is 422.
fn parse_n(param: &str, max_n: u64) -> Result<u64, (StatusCode, String)> {
    let (negative, digits) = match param.as_bytes().first() {
        Some(b'-') => (true, &param[1..]),
        Some(b'+') => (false, &param[1..]),
        _ => (false, param),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = param.chars().take(32).collect();
        return Err((
            StatusCode::BAD_REQUEST,
            format!("n must be a decimal integer, got {shown:?}"),
        ));
    }
    let significant = digits.trim_start_matches('0');
    let out_of_range = || {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("n must be between 0 and {max_n}"),
        )
    };
    if significant.is_empty() {
        return Ok(0);
    }
    if negative || significant.len() > 20 {
        return Err(out_of_range());
    }
    match significant.parse::<u64>() {
        Ok(n) if n <= max_n => Ok(n),
        _ => Err(out_of_range()),
    }
}

async fn fib_response(n: u64, state: &AppState) -> Response<Body> {
    let inner = &state.inner;
    let key = &inner.keys[n as usize];
    if let Some(value) = cached(n, key, state).await {
        inner.metrics.cache_hits.inc();
        tracing::debug!(n, "cache hit");
        return result(value, "hit");
    }
    inner.metrics.cache_misses.inc();
    tracing::debug!(n, "cache miss; computing");
    let waiter = inner.engine.join(n, inner.on_value.clone());
    match waiter.outcome().await {
        Outcome::Value(value) => result(value, "miss"),
        Outcome::Overloaded => unavailable("every computation slot is busy; retry shortly"),
        Outcome::Timeout => error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "computing fib({n}) took longer than {}",
                humantime::format_duration(inner.settings.limits.compute_timeout)
            ),
        ),
        Outcome::Aborted => {
            unavailable("the computation was stopped (server shutting down); retry")
        }
    }
}

/// Asks the cache for `n`, within the cache timeout. Any failure, and any value that is not the
/// decimal form of a non-negative `i64`, is a miss: the caller computes (and overwrites the bad
/// value), so the cache can never make an answer wrong or an error.
async fn cached(n: u64, key: &str, state: &AppState) -> Option<u64> {
    let inner = &state.inner;
    let timeout = inner.settings.cache_timeout;
    match bounded(timeout, inner.cache.get(key)).await {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(raw))) => match parse_cached(&raw) {
            Some(value) => Some(value),
            None => {
                inner.metrics.cache_errors.inc();
                let shown: String = raw.chars().take(40).collect();
                tracing::warn!(n, key, value = ?shown, "cached value is not a number; recomputing");
                None
            }
        },
        Ok(Err(err)) => {
            inner.metrics.cache_errors.inc();
            let cause = chain(&err);
            throttled!(
                inner.warnings,
                n,
                key,
                cause,
                "cache read failed; computing"
            );
            None
        }
        Err(_) => {
            inner.metrics.cache_errors.inc();
            let cause = format!("no answer within {timeout:?}");
            throttled!(
                inner.warnings,
                n,
                key,
                cause,
                "cache read timed out; computing"
            );
            None
        }
    }
}

/// Strictly parses a cached value: ASCII digits only, no sign or space, at most `i64::MAX`.
fn parse_cached(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<u64>().ok().filter(|&v| v <= i64::MAX as u64)
}

/// An error and its sources on one line.
fn chain(err: &Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn result(value: u64, cache: &'static str) -> Response<Body> {
    // `{"result":<digits>}` without the formatting machinery: this is the hit path.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut body = Vec::with_capacity(12 + digits.len() - at);
    body.extend_from_slice(b"{\"result\":");
    body.extend_from_slice(&digits[at..]);
    body.push(b'}');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(cache));
    resp
}

/// Awaits `op` for at most `limit`. An operation that is ready at once (an in-process cache)
/// costs no timer; only one that has to wait is raced against one.
async fn bounded<F: Future>(
    limit: Duration,
    op: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut op = std::pin::pin!(op);
    let first = std::future::poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => tokio::time::timeout(limit, op).await,
    }
}

fn health(state: &AppState) -> Response<Body> {
    let body = serde_json::json!({"status": "ok", "backend": state.inner.backend});
    json(StatusCode::OK, body.to_string())
}

fn metrics(state: &AppState) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(state.inner.metrics.encode())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// A 503 that tells the client when to come back.
fn unavailable(message: &str) -> Response<Body> {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn not_found(path: &str) -> Response<Body> {
    let shown: String = path.chars().take(64).collect();
    error(StatusCode::NOT_FOUND, &format!("no route for {shown:?}"))
}

fn not_allowed() -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed; use GET",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// A JSON error response `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(param: &str) -> Result<u64, u16> {
        parse_n(param, 92).map_err(|(status, _)| status.as_u16())
    }

    #[test]
    fn canonical_forms_of_one_number_parse_alike() {
        assert_eq!(status("5"), Ok(5));
        assert_eq!(status("05"), Ok(5));
        assert_eq!(status("+5"), Ok(5));
        assert_eq!(status("0000"), Ok(0));
        assert_eq!(status("-0"), Ok(0));
        assert_eq!(status("92"), Ok(92));
    }

    #[test]
    fn non_integers_are_400_and_out_of_range_is_422() {
        for bad in [
            "", "abc", "5a", "1.5", " 5", "5 ", "+", "-", "0x10", "1e3", "%35",
        ] {
            assert_eq!(status(bad), Err(400), "{bad:?}");
        }
        for out in [
            "-1",
            "93",
            "99999999999999999999",
            "184467440737095516160000",
        ] {
            assert_eq!(status(out), Err(422), "{out:?}");
        }
    }

    #[test]
    fn result_bodies_are_the_documented_json() {
        use http_body_util::BodyExt;
        for value in [0u64, 7, 55, 832_040, 7_540_113_804_746_346_429, u64::MAX] {
            let resp = result(value, "hit");
            let body = futures_body(resp.into_body().collect());
            assert_eq!(body, format!("{{\"result\":{value}}}"));
        }
    }

    fn futures_body<F: Future<Output = Result<http_body_util::Collected<Bytes>, Infallible>>>(
        fut: F,
    ) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(fut).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn cached_values_parse_strictly() {
        assert_eq!(parse_cached("55"), Some(55));
        assert_eq!(
            parse_cached("7540113804746346429"),
            Some(7_540_113_804_746_346_429)
        );
        for bad in [
            "",
            "garbage",
            "-5",
            "+5",
            " 5",
            "5\n",
            "9223372036854775808",
            "1e3",
        ] {
            assert_eq!(parse_cached(bad), None, "{bad:?}");
        }
    }
}
