//! `fibcache_plugin_reloads_total{outcome}`: what SIGHUP did with each plugin file; and
//! `fibcache_plugin_info{kind,path,sha256}`: each plugin file loaded and the version serving.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

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

/// One plugin file as loaded: its kind, path as given, and the SHA-256 of its content.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginLabels {
    kind: &'static str,
    path: String,
    sha256: String,
}

impl Metrics {
    /// Adds the plugin series to `registry` (part of [`Metrics::register`]).
    pub(super) fn register_plugins(&self, registry: &mut Registry) {
        registry.register(
            "fibcache_plugin_reloads",
            "Plugin files read again on SIGHUP, by outcome (reloaded, unchanged, failed)",
            self.plugin_reloads.clone(),
        );
        registry.register(
            "fibcache_plugin_info",
            "1 for each plugin file loaded: its kind (native, wasm), path, and the SHA-256 of \
             the version serving",
            self.plugin_info.clone(),
        );
    }

    /// Names a plugin file in `fibcache_plugin_info` (at 1) while `serving`, or removes its
    /// series once another version of it serves: `kind` is `native` or `wasm`, `sha256` the
    /// hash of the content loaded, as 64 hex digits.
    pub fn plugin_serving(&self, kind: &'static str, path: &str, sha256: &str, serving: bool) {
        let labels = PluginLabels {
            kind,
            path: path.to_owned(),
            sha256: sha256.to_owned(),
        };
        if serving {
            self.plugin_info.get_or_create(&labels).set(1);
        } else {
            self.plugin_info.remove(&labels);
        }
    }

    /// Counts one plugin file's reload: `outcome` is `reloaded`, `unchanged` or `failed`.
    pub fn plugin_reloaded(&self, outcome: &'static str) {
        self.plugin_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}
