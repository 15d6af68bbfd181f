//! The cache as one or more **tiers**, nearest first (`--cache memory+redis`): what a tier spec
//! may say ([`TierSpec`]), and [`Tiers`], the one owner of reading, copying nearer, writing and
//! choosing the tier whose claims coalesce computations across instances.
//!
//! - **Reads** try the tiers nearest first. A tier that fails (down, slow, garbled value) is
//!   skipped and the next one is asked: a failing nearer tier never hides a value a farther
//!   one holds.
//! - **Copies**: a hit in a farther tier is copied to the nearer ones, for the time the value
//!   has left there, read in the same round trip as the value
//!   ([`Cache::get_with_remaining`]) and less the time that round trip took, so that a copy
//!   never outlives its source. When the farther tier cannot tell that time, the copy lives
//!   [`UNKNOWN_LIFETIME`] at most.
//! - **Writes** go to every tier, for `--cache-ttl`.
//! - **Claims**: the farthest tier that offers [`Claims`](fibcache_core::Claims) is the one
//!   instances share, so it is the one whose claims coalesce them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use fibcache_core::Cache;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::cache::{GuardedCache, Lookup};
use crate::metrics::Metrics;
use crate::Settings;

/// The longest a nearer copy lives when the tier it came from cannot tell how long the value
/// has left there.
pub const UNKNOWN_LIFETIME: Duration = Duration::from_secs(1);

/// The backends of the cache, nearest first, as `--cache` names them: `memory`, or
/// `memory+redis`.
///
/// Parsing checks the spelling: no empty tier, no name twice. Whether each name is a backend
/// is the registry's business.
///
/// ```
/// use fibcache_server::TierSpec;
///
/// let spec: TierSpec = "memory + redis".parse()?;
/// assert_eq!(spec.names().collect::<Vec<_>>(), ["memory", "redis"]);
/// assert_eq!(spec.to_string(), "memory+redis");
///
/// assert!("memory+".parse::<TierSpec>().is_err());
/// let twice = "nop+nop".parse::<TierSpec>().unwrap_err();
/// assert!(twice.to_string().contains("listed twice"));
/// # Ok::<(), fibcache_server::TierSpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierSpec {
    /// Never empty, no name empty or listed twice.
    names: Vec<String>,
}

impl TierSpec {
    /// The backend names, nearest first.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

impl FromStr for TierSpec {
    type Err = TierSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut names: Vec<String> = Vec::new();
        for name in spec.split('+').map(str::trim) {
            if name.is_empty() {
                return Err(TierSpecError(format!(
                    "{spec:?} has an empty tier; name backends joined by `+`, nearest first \
                     (e.g. memory+redis)"
                )));
            }
            if names.iter().any(|seen| seen == name) {
                return Err(TierSpecError(format!(
                    "backend `{name}` is listed twice in {spec:?}; name each tier once"
                )));
            }
            names.push(name.to_owned());
        }
        Ok(TierSpec { names })
    }
}

impl fmt::Display for TierSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join("+"))
    }
}

/// A tier spec that does not parse (see [`TierSpec`]); the message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TierSpecError(String);

/// One tier: a backend under its own guard, and its hit counter.
struct Tier {
    guard: GuardedCache,
    hits: Counter,
}

/// The tiers of one app, nearest first, with the key of every `n`.
pub(crate) struct Tiers {
    /// Nearest first; never empty.
    tiers: Vec<Tier>,
    /// The key of every `n` in `0..=max_n` (at most 93 of them), built once.
    keys: Vec<String>,
    /// Lifetime of a written entry (`--cache-ttl`).
    ttl: Duration,
}

impl Tiers {
    /// `caches` (each with its registered name, nearest first) as tiers, each under a guard
    /// with the cache time limit of `settings`, counting into `metrics`.
    ///
    /// # Panics
    /// When `caches` is empty.
    pub(crate) fn new(
        caches: Vec<(String, Arc<dyn Cache>)>,
        settings: &Settings,
        metrics: &Arc<Metrics>,
    ) -> Self {
        assert!(!caches.is_empty(), "an app needs at least one cache tier");
        let tiers = caches
            .into_iter()
            .map(|(name, cache)| {
                let hits = metrics.hits(&name);
                let guard =
                    GuardedCache::new(cache, name, settings.cache_timeout(), metrics.clone());
                Tier { guard, hits }
            })
            .collect();
        let keys = (0..=settings.max_n())
            .map(|n| format!("{}{n}", settings.prefix()))
            .collect();
        Tiers {
            tiers,
            keys,
            ttl: settings.ttl(),
        }
    }

    /// The key of `n` (`n` at most `max_n`).
    pub(crate) fn key(&self, n: u64) -> &str {
        &self.keys[n as usize]
    }

    /// The number under `n`'s key in the nearest tier that has it, counted as a hit of that
    /// tier; a failing tier is skipped, and a hit in a farther tier is copied nearer.
    pub(crate) async fn read(&self, n: u64) -> Option<u64> {
        for (at, tier) in self.tiers.iter().enumerate() {
            if let Lookup::Value(value) = self.read_from(at, n).await {
                tier.hits.inc();
                return Some(value);
            }
        }
        None
    }

    /// What tier `at` holds for `n`; a value found there is copied to the nearer tiers, for
    /// no longer than it has left in tier `at`.
    pub(crate) async fn read_from(&self, at: usize, n: u64) -> Lookup {
        let (key, guard) = (self.key(n), &self.tiers[at].guard);
        if at == 0 {
            return guard.lookup(n, key).await;
        }
        let asked = Instant::now();
        let (found, left) = guard.lookup_with_lifetime(n, key).await;
        if let Lookup::Value(value) = found {
            // The lifetime was measured at some moment after `asked`: counting from `asked`
            // ends the copy no later than the original.
            let life = match left {
                Some(left) => left.saturating_sub(asked.elapsed()),
                None => UNKNOWN_LIFETIME,
            };
            let life = life.min(self.ttl);
            if !life.is_zero() {
                for tier in &self.tiers[..at] {
                    tier.guard.write(n, key, value, life).await;
                }
            }
        }
        found
    }

    /// Writes `value` under `n`'s key to every tier, for `--cache-ttl`.
    pub(crate) async fn write(&self, n: u64, value: u64) {
        let key = self.key(n);
        for tier in &self.tiers {
            tier.guard.write(n, key, value, self.ttl).await;
        }
    }

    /// The tier whose claims coalesce computations across instances: the farthest that
    /// offers claims, if any.
    pub(crate) fn claim_tier(&self) -> Option<usize> {
        self.tiers
            .iter()
            .rposition(|tier| tier.guard.offers_claims())
    }

    /// The guarded backend of tier `at`.
    pub(crate) fn guard(&self, at: usize) -> &GuardedCache {
        &self.tiers[at].guard
    }

    /// Whether every tier answered the last time it was asked.
    pub(crate) fn all_up(&self) -> bool {
        self.tiers.iter().all(|tier| tier.guard.is_up())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_the_command_line_checks() {
        let spec: TierSpec = " memory +redis ".parse().unwrap();
        assert_eq!(spec.names().collect::<Vec<_>>(), ["memory", "redis"]);
        assert_eq!("nop".parse::<TierSpec>().unwrap().to_string(), "nop");
        for bad in ["", "+", "memory+", "+redis", "memory++redis"] {
            let err = bad.parse::<TierSpec>().unwrap_err().to_string();
            assert!(err.contains("has an empty tier"), "{bad:?}: {err}");
        }
        let err = "nop+memory+nop".parse::<TierSpec>().unwrap_err();
        assert!(
            err.to_string().contains("backend `nop` is listed twice"),
            "{err}"
        );
    }
}
