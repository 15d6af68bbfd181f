//! Prometheus metrics: what the server is doing, as counters, gauges and a latency histogram,
//! with the standard process metrics and a build-information series.
//!
//! Built on `prometheus-client` (the exposition is not hand-written), served in the Prometheus
//! text format 0.0.4, which `promtool check metrics` accepts, with its content type. The hot
//! path never takes a lock: every series a request can touch is created up front and kept as a
//! handle (an `Arc` around an atomic), so counting is one atomic add.
//!
//! # Overview
//! - `histogram`: the lock-free request-duration histogram.
//! - `process`: `process_*` series read from `/proc` at each scrape.

mod histogram;
mod outcome;
mod process;
mod reloads;

/// The Prometheus client this crate counts with, so that an embedder registers
/// [`Metrics`] into a [`Registry`] of the very same version.
pub use prometheus_client;

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use self::histogram::LatencyHistogram;
pub(crate) use self::outcome::{Claimed, Finished};

/// The `Content-Type` of [`Metrics::encode`]'s text: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The route a request went to, as the `route` label of the request series: probes and scrapes
/// are counted apart from `/fib`, so that they do not blur its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteName {
    Fib,
    Healthz,
    Livez,
    Readyz,
    Metrics,
    OpenApi,
    /// Anything the router does not answer (404).
    Other,
}

impl RouteName {
    const ALL: [RouteName; 7] = [
        RouteName::Fib,
        RouteName::Healthz,
        RouteName::Livez,
        RouteName::Readyz,
        RouteName::Metrics,
        RouteName::OpenApi,
        RouteName::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            RouteName::Fib => "/fib",
            RouteName::Healthz => "/healthz",
            RouteName::Livez => "/livez",
            RouteName::Readyz => "/readyz",
            RouteName::Metrics => "/metrics",
            RouteName::OpenApi => "/openapi.json",
            RouteName::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    features: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The statuses the server answers with, pre-created so that counting needs no lookup.
const STATUSES: [u16; 8] = [200, 400, 404, 405, 422, 500, 503, 504];

/// Every metric the server exports, and the registry that encodes them.
///
/// `GET /metrics` shows them with the standard process metrics. An embedder with a registry
/// of its own adds them to it with [`Metrics::register`], and the process metrics with
/// [`Metrics::register_process`] if it has none:
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use prometheus_client::registry::Registry;
///
/// let app = fibcache_server::App::new(
///     Arc::new(fibcache_core::nop::NopCache),
///     "nop",
///     fibcache_server::Settings::default(),
/// );
/// let mut mine = Registry::default();
/// app.metrics().register(&mut mine);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &mine).unwrap();
/// assert!(text.contains("fibcache_cache_hits_total"));
/// assert!(!text.contains("process_cpu_seconds_total"));
/// # }
/// ```
pub struct Metrics {
    /// What `GET /metrics` encodes: every series below and the process metrics.
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `requests` for every route and usual status, so that counting needs no lookup.
    by_route_status: [[Counter; STATUSES.len()]; RouteName::ALL.len()],
    /// Requests answered from the cache, by the tier that answered.
    hits: Family<TierLabel, Counter>,
    /// Requests the cache could not answer (not found, expired, or unusable value).
    cache_misses: Counter,
    /// Cache operations that failed or timed out, and values that did not parse.
    cache_errors: Counter,
    /// Computations that got a slot and began.
    computations_started: Counter,
    /// Computations that ended, by outcome.
    finished_family: Family<OutcomeLabel, Counter>,
    finished: [Counter; Finished::ALL.len()],
    /// Cold requests answered 504 at once: their computation could not finish in time.
    computations_refused: Counter,
    /// Computations running right now.
    computations_running: Gauge,
    /// Cold requests refused with 503 because no computation slot came free in time.
    overloaded: Counter,
    /// Connections open right now.
    pub(crate) connections_open: Gauge,
    /// Connections refused with 503 because `--max-connections` were open.
    pub(crate) connections_refused: Counter,
    /// 1 while a tier answers, 0 while the server skips it (it stopped answering).
    up: Family<TierLabel, Gauge>,
    /// Claims on keys for cluster-wide coalescing, by outcome.
    claimed: Family<OutcomeLabel, Counter>,
    claims: [Counter; Claimed::ALL.len()],
    durations: Family<RouteLabel, LatencyHistogram>,
    by_route_duration: [LatencyHistogram; RouteName::ALL.len()],
    /// Always 1, labelled with the version and the features.
    build: Family<BuildLabels, Gauge>,
    /// Plugin files reloaded on SIGHUP, by outcome (`reloaded`, `unchanged`, `failed`).
    plugin_reloads: Family<OutcomeLabel, Counter>,
    /// 1 for each plugin file loaded, labelled with the hash of the version serving.
    plugin_info: Family<reloads::PluginLabels, Gauge>,
}

impl Metrics {
    /// Every fibcache series at zero, in a registry of its own with the process metrics.
    pub(crate) fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let by_route_status = RouteName::ALL.map(|route| {
            STATUSES.map(|status| {
                let labels = RequestLabels {
                    route: route.label(),
                    status,
                };
                requests.get_or_create(&labels).clone()
            })
        });
        let finished_family = Family::<OutcomeLabel, Counter>::default();
        let finished = Finished::ALL.map(|how| {
            finished_family
                .get_or_create(&OutcomeLabel {
                    outcome: how.label(),
                })
                .clone()
        });
        let durations = Family::<RouteLabel, LatencyHistogram>::default();
        let by_route_duration = RouteName::ALL.map(|route| {
            durations
                .get_or_create(&RouteLabel {
                    route: route.label(),
                })
                .clone()
        });
        let claimed = Family::<OutcomeLabel, Counter>::default();
        let claims = Claimed::ALL.map(|how| {
            claimed
                .get_or_create(&OutcomeLabel {
                    outcome: how.label(),
                })
                .clone()
        });
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                features: crate::features().join(","),
            })
            .set(1);
        let mut metrics = Metrics {
            registry: Registry::default(),
            requests,
            by_route_status,
            hits: Family::default(),
            cache_misses: Counter::default(),
            cache_errors: Counter::default(),
            computations_started: Counter::default(),
            finished_family,
            finished,
            computations_refused: Counter::default(),
            computations_running: Gauge::default(),
            overloaded: Counter::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            up: Family::default(),
            claimed,
            claims,
            durations,
            by_route_duration,
            build,
            plugin_reloads: reloads::family(),
            plugin_info: Family::default(),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Metrics::register_process(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// Adds every `fibcache_*` series to `registry` (an embedder's own), sharing the counters
    /// this app counts into: its exposition then shows them as `GET /metrics` does. The
    /// process metrics are not added (see [`Metrics::register_process`]). Register one app's
    /// metrics into a registry once: two apps in one registry would repeat the series names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "fibcache_requests",
            "HTTP requests answered, by route and status code",
            self.requests.clone(),
        );
        registry.register(
            "fibcache_cache_hits",
            "Requests answered from the cache, by the tier that answered",
            self.hits.clone(),
        );
        registry.register(
            "fibcache_cache_misses",
            "Requests the cache had no usable value for",
            self.cache_misses.clone(),
        );
        registry.register(
            "fibcache_cache_errors",
            "Cache operations that failed or timed out, and cached values that did not parse",
            self.cache_errors.clone(),
        );
        registry.register(
            "fibcache_computations_started",
            "Fibonacci computations that began",
            self.computations_started.clone(),
        );
        registry.register(
            "fibcache_computations_finished",
            "Fibonacci computations that ended, by outcome",
            self.finished_family.clone(),
        );
        registry.register(
            "fibcache_computations_refused",
            "Cold requests answered 504 at once because their computation cannot finish within \
             --compute-timeout",
            self.computations_refused.clone(),
        );
        registry.register(
            "fibcache_computations_running",
            "Fibonacci computations running now",
            self.computations_running.clone(),
        );
        registry.register(
            "fibcache_overloaded",
            "Cold requests refused with 503 because every computation slot was busy",
            self.overloaded.clone(),
        );
        registry.register(
            "fibcache_connections_open",
            "Client connections open now",
            self.connections_open.clone(),
        );
        registry.register(
            "fibcache_connections_refused",
            "Connections answered 503 and closed because --max-connections were open",
            self.connections_refused.clone(),
        );
        registry.register(
            "fibcache_request_duration_seconds",
            "Time from request head to response, in seconds, by route",
            self.durations.clone(),
        );
        registry.register(
            "fibcache_cache_up",
            "1 while a cache tier answers, 0 while the server skips it because it stopped answering",
            self.up.clone(),
        );
        registry.register(
            "fibcache_claims",
            "Claims on cold keys for coalescing across instances, by outcome",
            self.claimed.clone(),
        );
        self.register_plugins(registry);
        registry.register(
            "fibcache_build_info",
            "Always 1: the fibcache-server version and the Cargo features of this build",
            self.build.clone(),
        );
    }

    /// Adds the standard `process_*` series (CPU, memory, file descriptors, start time, read
    /// from `/proc` at each scrape) to `registry`.
    pub fn register_process(registry: &mut Registry) {
        registry.register_collector(Box::new(process::ProcessCollector));
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, route: RouteName, status: u16, elapsed: Duration) {
        let at = route as usize;
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.by_route_status[at][i].inc(),
            None => {
                let labels = RequestLabels {
                    route: route.label(),
                    status,
                };
                self.requests.get_or_create(&labels).inc()
            }
        };
        self.by_route_duration[at].observe(elapsed);
    }

    /// The hit counter of the tier `tier` (a backend's name).
    pub(crate) fn hits(&self, tier: &str) -> Counter {
        let label = TierLabel {
            tier: tier.to_owned(),
        };
        self.hits.get_or_create(&label).clone()
    }

    /// The `fibcache_cache_up` gauge of the tier `tier`, at 1.
    pub(crate) fn cache_up(&self, tier: &str) -> Gauge {
        let label = TierLabel {
            tier: tier.to_owned(),
        };
        let up = self.up.get_or_create(&label).clone();
        up.set(1);
        up
    }

    /// Counts one request that found no usable value in the cache and joined a flight.
    pub(crate) fn missed(&self) {
        self.cache_misses.inc();
    }

    /// Counts one cache operation that failed, timed out or was skipped, or a refused value.
    pub(crate) fn cache_error(&self) {
        self.cache_errors.inc();
    }

    /// Counts one computation that got its slot and begins.
    pub(crate) fn started(&self) {
        self.computations_started.inc();
    }

    /// The gauge of computations running now.
    pub(crate) fn running(&self) -> &Gauge {
        &self.computations_running
    }

    /// Counts one cold request refused at once because its computation cannot finish in time.
    pub(crate) fn refused(&self) {
        self.computations_refused.inc();
    }

    /// Counts one cold request refused because no computation slot came free in time.
    pub(crate) fn overloaded(&self) {
        self.overloaded.inc();
    }

    /// Counts one flight's claim outcome.
    pub(crate) fn claimed(&self, how: Claimed) {
        self.claims[how as usize].inc();
    }

    /// Counts one finished computation.
    pub(crate) fn finished(&self, how: Finished) {
        self.finished[how as usize].inc();
    }

    /// The exposition of every series, in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let encoded =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        if encoded.is_err() {
            // Encoding into a String cannot fail; say so in the output rather than panic.
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

#[cfg(test)]
impl Metrics {
    /// The value of one sample of the exposition, e.g. `fibcache_cache_errors_total`.
    pub(crate) fn sample(&self, sample: &str) -> f64 {
        let text = self.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{sample} missing from\n{text}"))
    }

    /// Claims counted with outcome `how`.
    pub(crate) fn claims_of(&self, how: Claimed) -> u64 {
        self.claims[how as usize].get()
    }

    /// Computations counted as finished with outcome `how`.
    pub(crate) fn finished_of(&self, how: Finished) -> u64 {
        self.finished[how as usize].get()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_cumulative_buckets_by_route_with_their_sum_and_count() {
        let metrics = Metrics::new();
        for us in [10, 50, 51, 3_000, 100_000_000] {
            metrics.request(RouteName::Fib, 200, Duration::from_micros(us));
        }
        metrics.request(RouteName::Metrics, 200, Duration::from_micros(10));
        let text = metrics.encode();
        let value = |sample: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{sample} missing from\n{text}"))
                .to_owned()
        };
        let bucket = |le: &str| {
            value(&format!(
                "fibcache_request_duration_seconds_bucket{{route=\"/fib\",le=\"{le}\"}}"
            ))
        };
        assert_eq!(bucket("5e-05"), "2", "10 µs and 50 µs are within 50 µs");
        assert_eq!(bucket("0.0001"), "3");
        assert_eq!(bucket("0.0032"), "4");
        assert_eq!(bucket("52.4288"), "4", "100 s is above the last bound");
        assert_eq!(bucket("+Inf"), "5");
        let count = r#"fibcache_request_duration_seconds_count{route="/fib"}"#;
        assert_eq!(value(count), "5");
        let scrapes = r#"fibcache_request_duration_seconds_count{route="/metrics"}"#;
        assert_eq!(value(scrapes), "1", "scrapes are counted apart");
        let sum: f64 = value(r#"fibcache_request_duration_seconds_sum{route="/fib"}"#)
            .parse()
            .unwrap();
        assert!((sum - 100.003111).abs() < 1e-9, "{sum}");
        let requests = r#"fibcache_requests_total{route="/fib",status="200"}"#;
        assert_eq!(value(requests), "5");
        assert!(
            text.contains("# TYPE fibcache_requests_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
