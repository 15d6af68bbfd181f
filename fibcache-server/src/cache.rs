//! Every cache call of the request path goes through [`GuardedCache`], so that the cache can
//! never make an answer wrong, an error, or slow.
//!
//! - **One time limit.** Each call may take at most `--cache-timeout`; past it the call is
//!   abandoned and counted as failed. The backend receives the same limit as
//!   [`Config::op_timeout`](fibcache_core::Config::op_timeout) for its own client.
//! - **One fail-fast window.** After a call times out or the backend reports
//!   [`ErrorKind::Unavailable`](fibcache_core::ErrorKind::Unavailable), the cache is skipped for [`SKIP_FOR`]: requests compute at once
//!   instead of each waiting out the limit on a store that is down. The first call after the
//!   window asks the store again. Any other failure (an error reply, a garbled value) says
//!   nothing about the next key and skips nothing.
//! - **Strict values.** A value that is not the decimal form of a non-negative `i64` is a miss:
//!   the request computes, and its write replaces the bad value. The value itself is never
//!   logged (it may be anything a client of a shared store wrote), only its length and why it
//!   was refused. One longer than [`MAX_VALUE_LEN`] cannot be valid, so the backend receives
//!   that bound as [`Config::max_value_len`](fibcache_core::Config::max_value_len): one that
//!   can (Redis) refuses a longer value without transferring it, as an error naming its
//!   length.
//! - **Counted, and logged without flooding.** Every failure, timeout, skipped call and refused
//!   value counts in `fibcache_cache_errors_total`. An outage (a timeout, or
//!   [`Error::Unavailable`]) is logged once when it starts and once when it ends, here only
//!   (the backends log it at debug level at most); other failures warn, throttled to one a
//!   second with the number held back. This is also the one place a panic inside a plugin's operation is
//!   logged: it arrives as a backend error carrying the panic's message and location, and the
//!   plugin does not log it itself (see `fibcache_core::plugin`'s guest side).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use fibcache_core::{Cache, Error};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::fib::MAX_VALUE_LEN;
use crate::metrics::Metrics;
use crate::throttle::Throttle;

/// How long the cache is skipped after it timed out or reported itself unavailable.
pub const SKIP_FOR: Duration = Duration::from_secs(1);

/// A warning at most once a period through `throttle`; the rest at debug level.
macro_rules! throttled {
    ($throttle:expr, $($field:tt)*) => {
        match $throttle.admit() {
            Some(suppressed) => tracing::warn!(suppressed, $($field)*),
            None => tracing::debug!($($field)*),
        }
    };
}

/// A backend with the request path's time limit, fail-fast window, value checks and counting.
pub(crate) struct GuardedCache {
    cache: Arc<dyn Cache>,
    /// The registered name, for log lines.
    backend: String,
    timeout: Duration,
    /// Until when calls are skipped, in milliseconds since `epoch` (0: not skipping). An
    /// atomic rather than a lock: every call reads it, and two failures racing to set it only
    /// move the deadline by a millisecond or two.
    skip_until: AtomicU64,
    /// The origin of `skip_until`; tokio's clock, so that tests can pause it.
    epoch: Instant,
    /// Whether the store answered the last time it was asked, so that losing it and getting it
    /// back are each logged once.
    healthy: AtomicBool,
    warnings: Throttle,
    metrics: Arc<Metrics>,
    /// This backend's `fibcache_cache_up` series: 1 while it answers, 0 while it is skipped.
    up: Gauge,
}

/// What [`GuardedCache::lookup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A usable number.
    Value(u64),
    /// No value.
    Absent,
    /// The cache failed, was skipped, or held an unusable value.
    Failed,
}

impl GuardedCache {
    /// Guards `cache` (registered as `backend`) with a limit of `timeout` per call.
    pub(crate) fn new(
        cache: Arc<dyn Cache>,
        backend: impl Into<String>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let backend = backend.into();
        let up = metrics.cache_up(&backend);
        GuardedCache {
            cache,
            backend,
            timeout,
            skip_until: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
            warnings: Throttle::new(Duration::from_secs(1)),
            metrics,
            up,
        }
    }

    /// What the cache holds under `key` for `n`: a usable number, nothing, or a failure (an
    /// unusable value is a failure too). The caller computes unless it gets a number.
    pub(crate) async fn lookup(&self, n: u64, key: &str) -> Lookup {
        // `(*self.cache)`: a call on the `dyn Cache` itself, not on the `Arc`'s forwarding impl,
        // which would box a second future around the first.
        match self
            .call(n, key, "cache read", (*self.cache).get(key))
            .await
        {
            None => Lookup::Failed,
            Some(raw) => self.judge(n, key, raw),
        }
    }

    /// [`lookup`](Self::lookup), with the time the value has left when the backend can tell,
    /// read in the same call ([`Cache::get_with_remaining`]).
    pub(crate) async fn lookup_with_lifetime(
        &self,
        n: u64,
        key: &str,
    ) -> (Lookup, Option<Duration>) {
        let read = (*self.cache).get_with_remaining(key);
        match self.call(n, key, "cache read", read).await {
            None => (Lookup::Failed, None),
            Some(None) => (Lookup::Absent, None),
            Some(Some((raw, left))) => (self.judge(n, key, Some(raw)), left),
        }
    }

    /// A raw value read under `key`, judged.
    fn judge(&self, n: u64, key: &str, raw: Option<String>) -> Lookup {
        let Some(raw) = raw else {
            return Lookup::Absent;
        };
        match parse(&raw) {
            Ok(value) => Lookup::Value(value),
            Err(why) => {
                self.metrics.cache_error();
                throttled!(
                    self.warnings,
                    n,
                    key,
                    len = raw.len(),
                    why,
                    "cached value refused; recomputing"
                );
                Lookup::Failed
            }
        }
    }

    /// Stores `value` under `key` for `ttl`; a failure is counted and logged, never returned.
    pub(crate) async fn write(&self, n: u64, key: &str, value: u64, ttl: Duration) {
        let value = value.to_string();
        let write = (*self.cache).set(key, &value, ttl);
        self.call(n, key, "cache write", write).await;
    }

    /// How long the key `key` has left ([`Expiry`](fibcache_core::Expiry)): `Some(None)`
    /// when it has no lifetime or is not there, `None` when the backend cannot tell or failed.
    pub(crate) async fn remaining(&self, n: u64, key: &str) -> Option<Option<Duration>> {
        let expiry = self.cache.expiry()?;
        self.call(n, key, "cache expiry", expiry.remaining(key))
            .await
    }

    /// Whether the store answered the last time it was asked.
    pub(crate) fn is_up(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether the backend offers [`Expiry`](fibcache_core::Expiry).
    pub(crate) fn offers_expiry(&self) -> bool {
        self.cache.expiry().is_some()
    }

    /// Whether the backend offers claims ([`Claims`](fibcache_core::Claims)).
    pub(crate) fn offers_claims(&self) -> bool {
        self.cache.claims().is_some()
    }

    /// [`Claims::claim`](fibcache_core::Claims::claim), guarded: `None` when the backend offers
    /// no claims or failed.
    pub(crate) async fn claim(
        &self,
        n: u64,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Option<bool> {
        let claims = self.cache.claims()?;
        self.call(n, key, "claim", claims.claim(key, token, ttl))
            .await
    }

    /// [`Claims::renew`](fibcache_core::Claims::renew), guarded: `None` when the backend offers
    /// no claims or failed.
    pub(crate) async fn renew(
        &self,
        n: u64,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Option<bool> {
        let claims = self.cache.claims()?;
        self.call(n, key, "claim renewal", claims.renew(key, token, ttl))
            .await
    }

    /// [`Claims::release`](fibcache_core::Claims::release), guarded: `None` when the backend offers
    /// no claims or failed.
    pub(crate) async fn release(&self, n: u64, key: &str, token: &str) -> Option<bool> {
        let claims = self.cache.claims()?;
        self.call(n, key, "claim release", claims.release(key, token))
            .await
    }

    /// Runs one cache operation under the guard: skipped while the window is open, bounded by
    /// the time limit, and any failure counted, logged (throttled) and turned into `None`.
    async fn call<T, F>(&self, n: u64, key: &str, what: &'static str, op: F) -> Option<T>
    where
        F: Future<Output = fibcache_core::Result<T>> + Unpin,
    {
        if self.skipping() {
            self.metrics.cache_error();
            return None;
        }
        match bounded(self.timeout, op).await {
            Ok(Ok(value)) => {
                self.answered();
                Some(value)
            }
            Ok(Err(err)) => {
                self.failed(&err, n, key, what);
                None
            }
            Err(_elapsed) => {
                self.timed_out(n, key, what);
                None
            }
        }
    }

    fn now_ms(&self) -> u64 {
        // Starts at 1 so that the initial 0 of `skip_until` is always in the past.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn skipping(&self) -> bool {
        self.now_ms() < self.skip_until.load(Ordering::Relaxed)
    }

    /// Opens the fail-fast window, logging the first failure of a series.
    fn skip(&self, cause: &str) {
        let until = self.now_ms() + SKIP_FOR.as_millis() as u64;
        self.skip_until.fetch_max(until, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            self.up.set(0);
            tracing::warn!(
                backend = %self.backend,
                cause,
                skip_for = ?SKIP_FOR,
                "cache unavailable; requests compute until it answers again"
            );
        }
    }

    fn answered(&self) {
        if !self.healthy.load(Ordering::Relaxed) && !self.healthy.swap(true, Ordering::Relaxed) {
            self.up.set(1);
            tracing::info!(backend = %self.backend, "cache answers again");
        }
    }

    fn failed(&self, err: &Error, n: u64, key: &str, what: &str) {
        self.metrics.cache_error();
        let cause = err.chain();
        if err.is_unavailable() {
            self.skip(&cause);
            // An outage is logged once, when it starts (and when it ends).
            tracing::debug!(n, key, backend = %self.backend, cause = %cause, "{what} failed; computing");
            return;
        }
        throttled!(self.warnings, n, key, backend = %self.backend, cause = %cause, "{what} failed; computing");
    }

    fn timed_out(&self, n: u64, key: &str, what: &str) {
        self.metrics.cache_error();
        let cause = format!(
            "no answer within {}",
            humantime::format_duration(self.timeout)
        );
        self.skip(&cause);
        tracing::debug!(n, key, backend = %self.backend, cause = %cause, "{what} timed out; computing");
    }
}

/// Why a cached value was refused, or the number it holds: ASCII digits only (no sign, space
/// or newline), at most `i64::MAX`.
fn parse(raw: &str) -> Result<u64, &'static str> {
    if raw.is_empty() {
        return Err("empty");
    }
    if raw.len() > MAX_VALUE_LEN {
        return Err("longer than any valid value");
    }
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal number");
    }
    match raw.parse::<u64>() {
        Ok(value) if value <= i64::MAX as u64 => Ok(value),
        _ => Err("larger than i64::MAX"),
    }
}

/// Awaits `op` for at most `limit`. An operation that is ready at once (an in-process cache)
/// costs no timer; only one that has to wait is raced against one, in a box of its own so that
/// the timer's state does not make every caller's future larger.
async fn bounded<F: Future + Unpin>(
    limit: Duration,
    mut op: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut op).poll(cx))).await {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Box::pin(tokio::time::timeout(limit, op)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibcache_core::async_trait;

    #[test]
    fn values_parse_strictly() {
        assert_eq!(parse("55"), Ok(55));
        assert_eq!(parse("7540113804746346429"), Ok(7_540_113_804_746_346_429));
        for bad in [
            "",
            "garbage",
            "-5",
            "+5",
            " 5",
            "5\n",
            "9223372036854775808",
            "1e3",
            "00000000000000000000055",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    /// A store that is down: every call is `Unavailable`; counts the calls that reach it.
    #[derive(Default)]
    struct Down(AtomicU64);

    #[async_trait]
    impl Cache for Down {
        async fn get(&self, _key: &str) -> fibcache_core::Result<Option<String>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(Error::unavailable("down", "connection refused"))
        }
        async fn set(&self, _: &str, _: &str, _: Duration) -> fibcache_core::Result<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(Error::unavailable("down", "connection refused"))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_store_is_unavailable_it_is_skipped_for_the_window_then_asked_again() {
        let store = Arc::new(Down::default());
        let metrics = Arc::new(Metrics::new());
        let guard = GuardedCache::new(store.clone(), "down", SKIP_FOR, metrics.clone());
        assert_eq!(guard.lookup(1, "fib:1").await, Lookup::Failed);
        assert_eq!(store.0.load(Ordering::Relaxed), 1);

        tokio::time::advance(SKIP_FOR / 2).await;
        assert_eq!(guard.lookup(1, "fib:1").await, Lookup::Failed);
        guard.write(1, "fib:1", 1, SKIP_FOR).await;
        assert_eq!(store.0.load(Ordering::Relaxed), 1, "skipped in the window");

        tokio::time::advance(SKIP_FOR).await;
        assert_eq!(guard.lookup(1, "fib:1").await, Lookup::Failed);
        assert_eq!(store.0.load(Ordering::Relaxed), 2, "asked again after it");
        assert_eq!(
            metrics.sample("fibcache_cache_errors_total") as u64,
            4,
            "failures and skips are counted"
        );
    }

    /// Counts the warnings logged while it is the default subscriber.
    struct CountWarnings(Arc<AtomicU64>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_logged_once_however_long_it_lasts() {
        use tracing_subscriber::layer::SubscriberExt;
        let warnings = Arc::new(AtomicU64::new(0));
        let subscriber = tracing_subscriber::registry().with(CountWarnings(warnings.clone()));
        let _default = tracing::subscriber::set_default(subscriber);
        let metrics = Arc::new(Metrics::new());
        let guard = GuardedCache::new(Arc::new(Down::default()), "down", SKIP_FOR, metrics);
        for _ in 0..5 {
            assert_eq!(guard.lookup(1, "fib:1").await, Lookup::Failed);
            guard.write(1, "fib:1", 1, SKIP_FOR).await;
            tokio::time::advance(SKIP_FOR * 2).await;
        }
        assert_eq!(warnings.load(Ordering::Relaxed), 1);
    }

    /// A store that answers with a failure for one key and works for the others.
    struct Picky;

    #[async_trait]
    impl Cache for Picky {
        async fn get(&self, key: &str) -> fibcache_core::Result<Option<String>> {
            match key {
                "bad" => Err(Error::backend("picky", "WRONGTYPE")),
                _ => Ok(Some("8".to_owned())),
            }
        }
        async fn set(&self, _: &str, _: &str, _: Duration) -> fibcache_core::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_reply_skips_nothing() {
        let metrics = Arc::new(Metrics::new());
        let guard = GuardedCache::new(Arc::new(Picky), "picky", SKIP_FOR, metrics.clone());
        assert_eq!(guard.lookup(3, "bad").await, Lookup::Failed);
        assert_eq!(guard.lookup(6, "good").await, Lookup::Value(8));
        assert_eq!(metrics.sample("fibcache_cache_errors_total") as u64, 1);
    }
}
