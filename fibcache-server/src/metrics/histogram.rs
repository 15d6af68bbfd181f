//! The request-duration histogram, observed with atomic adds only.
//!
//! `prometheus-client`'s own histogram takes a mutex on every observation, which both worker
//! threads of a busy server then contend for; this one is a fixed array of atomic counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

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
pub(crate) struct LatencyHistogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Observations per bucket (not cumulative), the last one above every bound (`+Inf`).
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    /// The sum of the observations, in nanoseconds: an integer, so adding to it is one atomic
    /// add (u64 nanoseconds overflow after 584 years of summed latency).
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
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

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}
