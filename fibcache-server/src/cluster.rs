//! Cluster-wide coalescing: several instances sharing a store compute each cold `n` once
//! between them.
//!
//! Inside one instance, concurrent misses for `n` already share one flight. With a tier that
//! offers [`Claims`](fibcache_core::Claims) (Redis), each flight first **claims** `n` in the
//! shared store (`<prefix>claim:<n>`, for [`CLAIM_TTL`], with a token of its own):
//! - **Won**: it looks for the value once more (another instance may have written it and
//!   released its claim since this one last looked), then computes, renewing the claim every
//!   third of its lifetime so that a long computation keeps it, writes the value to every
//!   tier, and releases the claim.
//! - **Lost**: another instance computes. This one polls the shared tier for the value every
//!   [`POLL`], and every [`RETRY_CLAIM`] tries the claim again and looks at the holder's: a
//!   winner that died (SIGKILL) stops renewing, its claim lapses within [`CLAIM_TTL`], and a
//!   waiter **takes over**. A waiter never waits past `--compute-timeout` (its clients get 504
//!   then, counted as `outcome="timeout"`).
//! - **Someone else's key**: a key at the claim's name that is not a live claim of this
//!   protocol is treated as no claim at all: one without a lifetime, with a lifetime longer
//!   than [`CLAIM_TTL`], or one whose lifetime is not seen renewed within [`CLAIM_TTL`] (a
//!   claim of the protocol is renewed or gone by then, whatever its type). This instance
//!   computes, counts `outcome="foreign"`, and logs it (throttled). So a key planted or left
//!   behind holds no request longer than one claim lifetime.
//! - **The store fails** while claiming or waiting (down, paused, timing out): this instance
//!   computes, as it would without coalescing. Never a wrong answer, never a 5xx.
//!
//! Cancellation works as for any flight: when every local waiter has left, a waiting flight
//! stops waiting, and a winning one stops computing and releases its claim.
//!
//! # Guarantees and non-guarantees
//! - With the store up and every instance alive, a cold `n` is computed once across instances
//!   (more only if a computation outlives [`CLAIM_TTL`] while the store cannot be reached to
//!   renew it, or the claim tier cannot tell a claim's lifetime and a computation outlives
//!   one).
//! - A claim is only a way to save work: the answer never depends on it. Two instances that
//!   both compute (the store failed, a claim lapsed) write the same value.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::cache::Lookup;
use crate::metrics::{Claimed, Metrics};
use crate::pool::Outcome;
use crate::throttle::Throttle;
use crate::tiers::Tiers;
use crate::Settings;

/// How long a claim lives unless renewed: short, so that a dead winner's claim lapses soon.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(2);

/// How often a waiter looks for the value in the shared store.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// How often a waiter tries the claim again, in case its holder gave up or died.
pub(crate) const RETRY_CLAIM: Duration = Duration::from_millis(250);

/// How much later a claim must end than last seen to count as renewed: more than the jitter
/// of measuring a lifetime over the network, less than what one renewal adds.
const RENEWAL_SLACK: Duration = Duration::from_millis(100);

/// Coalescing across the instances that share one tier's claims.
pub(crate) struct Cluster {
    tiers: Arc<Tiers>,
    /// The tier whose claims coalesce instances (see [`Tiers::claim_tier`]).
    at: usize,
    /// The key of the claim on every `n`: `<prefix>claim:<n>`.
    claim_keys: Vec<String>,
    /// Makes this instance's claim tokens unlike any other instance's.
    token_seed: u64,
    /// The longest a waiter waits for another instance's value (`--compute-timeout`).
    wait_limit: Duration,
    metrics: Arc<Metrics>,
    /// Keys that are not claims of the protocol are logged at most once a period.
    foreign: Throttle,
}

/// How a wait for another instance's value ended.
enum Waited {
    Value(u64),
    /// Time to look at the claim again.
    Retry,
    /// The store failed.
    Failed,
    /// Every local waiter left, or the server is shutting down.
    Cancelled,
    /// `--compute-timeout` passed.
    TimedOut,
}

/// What this instance makes of a claim it could not take.
enum Holder {
    /// A live claim of the protocol: wait for its value.
    Live,
    /// The key vanished or its lifetime cannot be told: try the claim again now.
    Unclear,
    /// Not a live claim of the protocol, for the reason given.
    Foreign(&'static str),
    /// The store failed.
    Failed,
}

/// What a waiter saw of the claim it waits on.
struct Sighting {
    /// When the claim was first seen, or last seen renewed.
    renewed_at: Instant,
    /// When the claim ends, as last seen.
    ends_at: Option<Instant>,
    /// Whether the last look could not tell the claim's lifetime.
    unclear: bool,
}

impl Cluster {
    /// Coalescing through the claims of tier `at` of `tiers`, with the keys of `settings`.
    pub(crate) fn new(
        tiers: Arc<Tiers>,
        at: usize,
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let claim_keys = (0..=settings.max_n())
            .map(|n| format!("{}claim:{n}", settings.prefix()))
            .collect();
        Cluster {
            tiers,
            at,
            claim_keys,
            token_seed: seed(),
            wait_limit: settings.compute_timeout(),
            metrics,
            foreign: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// The value of a cold `n`, computed once across the instances that share the claim tier
    /// (see the module documentation): by `compute` if this flight wins the claim (or the
    /// store fails, or the key is someone else's), else by the winner. `id` tells this
    /// flight's claim from this instance's others.
    pub(crate) async fn settle<F>(
        &self,
        n: u64,
        id: u64,
        cancel: &CancellationToken,
        compute: impl FnOnce() -> F,
    ) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let shared = self.tiers.guard(self.at);
        let key = &self.claim_keys[n as usize];
        let token = format!("{:016x}-{id}", self.token_seed);
        let deadline = Instant::now() + self.wait_limit;
        let mut sighting: Option<Sighting> = None;
        loop {
            // Every waiter may have left while this flight was at the store: it takes no
            // claim for nobody.
            if cancel.is_cancelled() {
                self.metrics.claimed(Claimed::Cancelled);
                return Outcome::Stopped;
            }
            match shared.claim(n, key, &token, CLAIM_TTL).await {
                None => return self.compute_after(Claimed::Error, compute).await,
                Some(true) => {
                    // One more look costs a round trip, a computation costs far more.
                    if let Lookup::Value(value) = self.tiers.read_from(self.at, n).await {
                        shared.release(n, key, &token).await;
                        self.metrics.claimed(Claimed::Waited);
                        return Outcome::Value(value);
                    }
                    if cancel.is_cancelled() {
                        shared.release(n, key, &token).await;
                        self.metrics.claimed(Claimed::Cancelled);
                        return Outcome::Stopped;
                    }
                    let how = if sighting.is_some() {
                        Claimed::TookOver
                    } else {
                        Claimed::Won
                    };
                    self.metrics.claimed(how);
                    let renewing = tokio::spawn(renew(
                        self.tiers.clone(),
                        self.at,
                        n,
                        key.clone(),
                        token.clone(),
                    ));
                    let renewing = AbortOnDropHandle::new(renewing);
                    let outcome = compute().await;
                    drop(renewing);
                    shared.release(n, key, &token).await;
                    return outcome;
                }
                Some(false) => match self.look_at_holder(n, key, &mut sighting).await {
                    Holder::Live => {}
                    Holder::Unclear => continue,
                    Holder::Failed => return self.compute_after(Claimed::Error, compute).await,
                    Holder::Foreign(why) => {
                        match self.foreign.admit() {
                            Some(suppressed) => tracing::warn!(
                                n, key = %key, why, suppressed,
                                "a key at a claim's name is not a live claim; computing"
                            ),
                            None => tracing::debug!(n, key = %key, why, "foreign claim key"),
                        }
                        return self.compute_after(Claimed::Foreign, compute).await;
                    }
                },
            }
            let renewed_by = sighting.as_ref().map(|s| s.renewed_at + CLAIM_TTL);
            match self.wait_for_value(n, cancel, deadline, renewed_by).await {
                Waited::Value(value) => {
                    self.metrics.claimed(Claimed::Waited);
                    return Outcome::Value(value);
                }
                Waited::Retry => {}
                Waited::Failed => return self.compute_after(Claimed::Error, compute).await,
                Waited::Cancelled => {
                    self.metrics.claimed(Claimed::Cancelled);
                    return Outcome::Stopped;
                }
                Waited::TimedOut => {
                    self.metrics.claimed(Claimed::TimedOut);
                    return Outcome::TimedOut;
                }
            }
        }
    }

    async fn compute_after<F: Future<Output = Outcome>>(
        &self,
        how: Claimed,
        compute: impl FnOnce() -> F,
    ) -> Outcome {
        self.metrics.claimed(how);
        compute().await
    }

    /// Looks at the claim this flight could not take: how long it has left, and whether it
    /// was renewed since last seen.
    async fn look_at_holder(&self, n: u64, key: &str, seen: &mut Option<Sighting>) -> Holder {
        let Some(left) = self.tiers.guard(self.at).remaining(n, key).await else {
            // The tier offers no expiry or failed: a claim it cannot tell about is waited
            // on for one claim lifetime at most.
            if !self.tiers.guard(self.at).offers_expiry() {
                let now = Instant::now();
                let first = seen.get_or_insert(Sighting {
                    renewed_at: now,
                    ends_at: None,
                    unclear: false,
                });
                if now >= first.renewed_at + CLAIM_TTL {
                    return Holder::Foreign("its lifetime cannot be told and one has passed");
                }
                return Holder::Live;
            }
            return Holder::Failed;
        };
        let now = Instant::now();
        let sighting = seen.get_or_insert(Sighting {
            renewed_at: now,
            ends_at: None,
            unclear: false,
        });
        let Some(left) = left else {
            // Gone since the claim was refused (released: claim again now), or a key without
            // a lifetime; twice in a row, it is the latter.
            if std::mem::replace(&mut sighting.unclear, true) {
                return Holder::Foreign("it has no lifetime");
            }
            return Holder::Unclear;
        };
        sighting.unclear = false;
        if left > CLAIM_TTL {
            return Holder::Foreign("its lifetime is longer than a claim's");
        }
        let ends_at = now + left;
        if sighting
            .ends_at
            .is_some_and(|seen| ends_at > seen + RENEWAL_SLACK)
        {
            sighting.renewed_at = now;
        }
        sighting.ends_at = Some(sighting.ends_at.map_or(ends_at, |seen| seen.max(ends_at)));
        if now >= sighting.renewed_at + CLAIM_TTL {
            return Holder::Foreign("it was not renewed within a claim's lifetime");
        }
        Holder::Live
    }

    /// Polls the claim tier for `n`'s value every [`POLL`] until it is there, for at most
    /// [`RETRY_CLAIM`], and no later than `renewed_by` (when the claim must have been
    /// renewed) or `deadline`.
    async fn wait_for_value(
        &self,
        n: u64,
        cancel: &CancellationToken,
        deadline: Instant,
        renewed_by: Option<Instant>,
    ) -> Waited {
        let mut retry = Instant::now() + RETRY_CLAIM;
        if let Some(renewed_by) = renewed_by {
            retry = retry.min(renewed_by);
        }
        loop {
            match self.tiers.read_from(self.at, n).await {
                Lookup::Value(value) => return Waited::Value(value),
                Lookup::Absent => {}
                Lookup::Failed => return Waited::Failed,
            }
            let now = Instant::now();
            if now >= deadline {
                return Waited::TimedOut;
            }
            if now >= retry {
                return Waited::Retry;
            }
            let next = (now + POLL).min(deadline).min(retry);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Waited::Cancelled,
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

/// Keeps the claim `key` on `n` while its winner computes: renews it every third of its
/// lifetime, until aborted. A renewal the store refuses (the claim lapsed and someone else
/// took it) or that fails changes nothing here: the computation goes on, as it would without
/// a claim.
async fn renew(tiers: Arc<Tiers>, at: usize, n: u64, key: String, token: String) {
    let shared = tiers.guard(at);
    loop {
        tokio::time::sleep(CLAIM_TTL / 3).await;
        if shared.renew(n, &key, &token, CLAIM_TTL).await == Some(false) {
            tracing::debug!(n, "the claim lapsed while computing; computing on");
            return;
        }
    }
}

/// A random number for this instance's claim tokens, so that no two instances share one.
fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}
