//! Prometheus metrics: what the server is doing, as counters and a latency histogram.
//!
//! Built on `prometheus-client` (the exposition format is not hand-written). The hot path never
//! takes a lock: every series a request can touch is created up front and kept as a handle
//! (an `Arc` around an atomic), so counting is one atomic add. The latency histogram is one of
//! our own, `LatencyHistogram`, for the same reason: `prometheus-client`'s histogram takes a
//! mutex on every observation, which both worker threads of a busy server then contend for.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// How a computation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// It produced its number.
    Ok,
    /// Every waiting client went away, or the server shut down.
    Cancelled,
    /// It ran past `--compute-timeout`.
    Timeout,
}

/// The statuses the server answers with, pre-created so that counting needs no lookup.
const STATUSES: [u16; 7] = [200, 400, 404, 405, 422, 503, 504];

/// Every metric the server exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabel, Counter>,
    by_status: [Counter; STATUSES.len()],
    /// Requests answered from the cache.
    pub(crate) cache_hits: Counter,
    /// Requests the cache could not answer (not found, expired, or unusable value).
    pub(crate) cache_misses: Counter,
    /// Cache operations that failed or timed out, and values that did not parse.
    pub(crate) cache_errors: Counter,
    /// Computations that got a slot and began.
    pub(crate) computations_started: Counter,
    finished: [Counter; 3],
    /// Computations running right now.
    pub(crate) computations_running: Gauge,
    /// Cold requests refused with 503 because no computation slot came free in time.
    pub(crate) overloaded: Counter,
    /// Connections open right now.
    pub(crate) connections_open: Gauge,
    /// Connections refused with 503 because `--max-connections` were open.
    pub(crate) connections_refused: Counter,
    duration: LatencyHistogram,
}

impl Metrics {
    /// A registry holding every fibcache series at zero.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<StatusLabel, Counter>::default();
        let by_status =
            STATUSES.map(|status| requests.get_or_create(&StatusLabel { status }).clone());
        registry.register(
            "fibcache_requests",
            "HTTP requests answered, by status code",
            requests.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "fibcache_cache_hits",
            "Requests answered from the cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "fibcache_cache_misses",
            "Requests the cache had no usable value for",
            cache_misses.clone(),
        );
        let cache_errors = Counter::default();
        registry.register(
            "fibcache_cache_errors",
            "Cache operations that failed or timed out, and cached values that did not parse",
            cache_errors.clone(),
        );
        let computations_started = Counter::default();
        registry.register(
            "fibcache_computations_started",
            "Fibonacci computations that began",
            computations_started.clone(),
        );
        let finished_family = Family::<OutcomeLabel, Counter>::default();
        let finished = ["ok", "cancelled", "timeout"].map(|outcome| {
            finished_family
                .get_or_create(&OutcomeLabel { outcome })
                .clone()
        });
        registry.register(
            "fibcache_computations_finished",
            "Fibonacci computations that ended, by outcome",
            finished_family,
        );
        let computations_running = Gauge::default();
        registry.register(
            "fibcache_computations_running",
            "Fibonacci computations running now",
            computations_running.clone(),
        );
        let overloaded = Counter::default();
        registry.register(
            "fibcache_overloaded",
            "Cold requests refused with 503 because every computation slot was busy",
            overloaded.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "fibcache_connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "fibcache_connections_refused",
            "Connections answered 503 and closed because --max-connections were open",
            connections_refused.clone(),
        );
        let duration = LatencyHistogram::default();
        registry.register(
            "fibcache_request_duration_seconds",
            "Time from request head to response, in seconds",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            by_status,
            cache_hits,
            cache_misses,
            cache_errors,
            computations_started,
            finished,
            computations_running,
            overloaded,
            connections_open,
            connections_refused,
            duration,
        }
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, status: u16, elapsed: Duration) {
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.by_status[i].inc(),
            None => self.requests.get_or_create(&StatusLabel { status }).inc(),
        };
        self.duration.observe(elapsed);
    }

    /// Counts one finished computation.
    pub(crate) fn finished(&self, how: Finished) {
        let i = match how {
            Finished::Ok => 0,
            Finished::Cancelled => 1,
            Finished::Timeout => 2,
        };
        self.finished[i].inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Encoding into a String cannot fail; say so in the output rather than panic.
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The upper bounds of the latency buckets, in microseconds: 50 µs doubling up to ~52 s, so
/// that cache hits land in the first buckets and long computations in the last.
const BOUNDS_US: [u64; 21] = {
    let mut bounds = [50; 21];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 2;
        i += 1;
    }
    bounds
};

/// A request-duration histogram observed with atomic adds only; cheap to clone (clones share
/// the counts).
#[derive(Debug, Clone, Default)]
struct LatencyHistogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Observations per bucket (not cumulative), the last one above every bound (`+Inf`).
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    /// The sum of the observations, in nanoseconds: an integer, so adding to it is one atomic
    /// add (u64 nanoseconds overflow after 584 years of summed latency).
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, elapsed: Duration) {
        let us = elapsed.as_micros();
        let bucket = BOUNDS_US
            .iter()
            .position(|&bound| us <= u128::from(bound))
            .unwrap_or(BOUNDS_US.len());
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = Vec::with_capacity(BOUNDS_US.len() + 1);
        let mut count = 0;
        for (i, counter) in self.0.counts.iter().enumerate() {
            let n = counter.load(Ordering::Relaxed);
            count += n;
            let bound = BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((bound, n));
        }
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_cumulative_buckets_with_their_sum_and_count() {
        let metrics = Metrics::new();
        for us in [10, 50, 51, 3_000, 100_000_000] {
            metrics.request(200, Duration::from_micros(us));
        }
        let text = metrics.encode();
        let value = |sample: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{sample} missing from\n{text}"))
                .to_owned()
        };
        let bucket = |le: &str| {
            value(&format!(
                "fibcache_request_duration_seconds_bucket{{le=\"{le}\"}}"
            ))
        };
        assert_eq!(bucket("0.00005"), "2", "10 µs and 50 µs are within 50 µs");
        assert_eq!(bucket("0.0001"), "3");
        assert_eq!(bucket("0.0032"), "4");
        assert_eq!(bucket("52.4288"), "4", "100 s is above the last bound");
        assert_eq!(bucket("+Inf"), "5");
        assert_eq!(value("fibcache_request_duration_seconds_count"), "5");
        let sum: f64 = value("fibcache_request_duration_seconds_sum")
            .parse()
            .unwrap();
        assert!((sum - 100.003111).abs() < 1e-9, "{sum}");
    }
}
