//! `fibcache_plugin_reloads_total{outcome}`: what SIGHUP did with each plugin file.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{Metrics, OutcomeLabel};

/// The outcomes a reload of one file can have, each exposed from the start at 0.
const OUTCOMES: [&str; 3] = ["reloaded", "unchanged", "failed"];

/// The family with every outcome at 0.
pub(super) fn family() -> Family<OutcomeLabel, Counter> {
    let family = Family::<OutcomeLabel, Counter>::default();
    for outcome in OUTCOMES {
        let _ = family.get_or_create(&OutcomeLabel { outcome });
    }
    family
}

impl Metrics {
    /// Counts one plugin file's reload: `outcome` is `reloaded`, `unchanged` or `failed`.
    pub fn plugin_reloaded(&self, outcome: &'static str) {
        self.plugin_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}
