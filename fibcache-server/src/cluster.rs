//! Cluster-wide coalescing: several instances sharing a store compute each cold `n` once
//! between them.
//!
//! Inside one instance, concurrent misses for `n` already share one flight. With a tier that
//! offers [`Claims`](fibcache_core::Claims) (Redis), each flight first **claims** `n` in the
//! shared store (`<prefix>claim:<n>`, for [`CLAIM_TTL`], with a token of its own):
//! - **Won**: it computes, renewing the claim every third of its lifetime so that a long
//!   computation keeps it, writes the value to every tier, then releases the claim.
//! - **Lost**: another instance computes. This one polls the shared tier for the value every
//!   [`POLL`], so it sees the value within that much of its write, and tries the claim again
//!   every [`RETRY_CLAIM`]: a winner that died (SIGKILL) stops renewing, its claim lapses
//!   within [`CLAIM_TTL`], and a waiter **takes over**. A waiter never waits past
//!   `--compute-timeout` (its clients get 504 then, as for a computation of their own).
//! - **The store fails** while claiming or waiting (down, paused, timing out): this instance
//!   computes, as it would without coalescing. Never a wrong answer, never a 5xx.
//!
//! Cancellation works as for any flight: when every local waiter has left, a waiting flight
//! stops waiting, and a winning one stops computing and releases its claim.
//!
//! # Guarantees and non-guarantees
//! - With the store up and every instance alive, a cold `n` is computed once across instances
//!   (more only if a computation outlives [`CLAIM_TTL`] while the store cannot be reached to
//!   renew it).
//! - A claim is only a way to save work: the answer never depends on it. Two instances that
//!   both compute (the store failed, a claim lapsed) write the same value.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::{GuardedCache, Lookup};
use crate::connection::AbortOnDrop;
use crate::engine::{Engine, Outcome};
use crate::metrics::Claimed;

/// How long a claim lives unless renewed: short, so that a dead winner's claim lapses soon.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(2);

/// How often a waiter looks for the value in the shared store.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// How often a waiter tries the claim again, in case its holder gave up or died.
pub(crate) const RETRY_CLAIM: Duration = Duration::from_millis(250);

/// A random number for this engine's claim tokens, so that no two instances share one.
pub(crate) fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// How a wait for another instance's value ended.
enum Waited {
    Value(u64),
    /// Time to try the claim again.
    Retry,
    /// The store failed.
    Failed,
    /// Every local waiter left, or the server is shutting down.
    Cancelled,
    /// `--compute-timeout` passed.
    TimedOut,
}

impl Engine {
    /// The value of a cold `n`, computed once across the instances that share tier `at` (see
    /// the module documentation): by this flight if it wins the claim, else by the winner.
    pub(crate) async fn settle_across_instances(
        &self,
        n: u64,
        id: u64,
        cancel: &CancellationToken,
        at: usize,
    ) -> Outcome {
        let inner = &self.inner;
        let shared = inner.tiers[at].guard();
        let claim_key = &inner.claim_keys[n as usize];
        let token = format!("{:016x}-{id}", inner.token_seed);
        let deadline = Instant::now() + inner.compute_timeout;
        let mut waited = false;
        loop {
            match shared.claim(n, claim_key, &token, CLAIM_TTL).await {
                None => {
                    inner.metrics.claimed(Claimed::Error);
                    return self.compute_and_write(n, cancel).await;
                }
                Some(true) => {
                    // Another instance may have written the value and released its claim
                    // since this one last looked: one more look costs a round trip, a
                    // computation costs far more.
                    if let Lookup::Value(value) = shared.lookup(n, self.key(n)).await {
                        shared.release(n, claim_key, &token).await;
                        return self.computed_elsewhere(n, value, at).await;
                    }
                    let how = if waited {
                        Claimed::TookOver
                    } else {
                        Claimed::Won
                    };
                    inner.metrics.claimed(how);
                    let renewing =
                        AbortOnDrop(tokio::spawn(renew(self.clone(), n, at, token.clone())));
                    let outcome = self.compute_and_write(n, cancel).await;
                    drop(renewing);
                    shared.release(n, claim_key, &token).await;
                    return outcome;
                }
                Some(false) => {
                    waited = true;
                    match self.wait_for_value(n, shared, cancel, deadline).await {
                        Waited::Value(value) => return self.computed_elsewhere(n, value, at).await,
                        Waited::Retry => continue,
                        Waited::Failed => {
                            inner.metrics.claimed(Claimed::Error);
                            return self.compute_and_write(n, cancel).await;
                        }
                        Waited::Cancelled => return Outcome::Stopped,
                        Waited::TimedOut => return Outcome::TimedOut,
                    }
                }
            }
        }
    }

    /// A value another instance computed, found in tier `at`: counted, and copied to the
    /// tiers nearer than it.
    async fn computed_elsewhere(&self, n: u64, value: u64, at: usize) -> Outcome {
        self.inner.metrics.claimed(Claimed::Waited);
        self.copy_nearer(n, value, at).await;
        Outcome::Value(value)
    }

    /// Polls `shared` for `n`'s value every [`POLL`] until it is there, for at most
    /// [`RETRY_CLAIM`].
    async fn wait_for_value(
        &self,
        n: u64,
        shared: &GuardedCache,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Waited {
        let retry = Instant::now() + RETRY_CLAIM;
        loop {
            match shared.lookup(n, self.key(n)).await {
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
            tokio::select! {
                () = cancel.cancelled() => return Waited::Cancelled,
                () = tokio::time::sleep(POLL.min(deadline - now)) => {}
            }
        }
    }
}

/// Keeps the claim on `n` while its winner computes: renews it every third of its lifetime,
/// until aborted. A renewal the store refuses (the claim lapsed and someone else took it) or
/// that fails changes nothing here: the computation goes on, as it would without a claim.
async fn renew(engine: Engine, n: u64, at: usize, token: String) {
    let shared = engine.inner.tiers[at].guard();
    let claim_key = &engine.inner.claim_keys[n as usize];
    loop {
        tokio::time::sleep(CLAIM_TTL / 3).await;
        if shared.renew(n, claim_key, &token, CLAIM_TTL).await == Some(false) {
            tracing::debug!(n, "the claim lapsed while computing; computing on");
            return;
        }
    }
}
