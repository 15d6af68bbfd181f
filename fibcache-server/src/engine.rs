//! The request path of `GET /fib/{n}`: [`Engine::fib`] is the one call a handler makes, and it
//! reads top to bottom: **tiers read → single-flight join → settle (locally or across
//! instances) → write → answer**.
//!
//! Each step has one owner, and the engine only puts them in order:
//! - the tiers (`tiers.rs`): nearest-first reads that skip a failing tier, copies nearer that
//!   never outlive their source, writes, and which tier's claims coalesce instances;
//! - single-flight (`flight.rs`): concurrent misses for the same `n` share one piece of work,
//!   cancelled when its last waiter leaves;
//! - the computation pool (`pool.rs`): admission by cost, `--max-computes` slots, `--queue-wait`,
//!   `--compute-timeout`, panics caught;
//! - cluster coalescing (`cluster.rs`): one computation per cold `n` across the instances that
//!   share a store's claims; it receives the computation to run and knows nothing of the engine.
//!
//! A flight writes the cache *before* answering, so a client that asks again right after its
//! answer gets a hit, and a request arriving meanwhile joins instead of computing again.
//!
//! Nothing outlives the engine: dropping its last clone (or [`Engine::stop_all`]) cancels every
//! flight, and a cancelled computation gives its thread back within milliseconds.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::fib::Workload;
use crate::flight::Flights;
use crate::metrics::{Claimed, Metrics};
use crate::pool::{Outcome, Pool};
use crate::tiers::Tiers;
use crate::Settings;

/// What [`Engine::fib`] answers. New answers may be added, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The cache had the number.
    Hit(u64),
    /// The number was computed (by this request's flight, possibly shared with others, or by
    /// another instance).
    Miss(u64),
    /// `n` is above the engine's `max_n`.
    OutOfRange,
    /// No computation slot came free within `queue_wait`.
    Overloaded,
    /// The computation (or the wait for another instance's) ran past `compute_timeout`.
    TimedOut,
    /// Computing `n` would take longer than `compute_timeout`: not tried.
    TooCostly,
    /// The computation was stopped before it finished: the server is shutting down.
    Stopped,
    /// The computation failed (it panicked).
    Failed,
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Value(value) => Answer::Miss(value),
            Outcome::Overloaded => Answer::Overloaded,
            Outcome::TimedOut => Answer::TimedOut,
            Outcome::TooCostly => Answer::TooCostly,
            Outcome::Stopped => Answer::Stopped,
            Outcome::Panicked => Answer::Failed,
        }
    }
}

/// Computes Fibonacci numbers through a cache; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    max_n: u64,
    /// What a flight needs, shared with the flight tasks (which never hold the engine, so
    /// that dropping the engine stops them).
    settle: Arc<Settle>,
    /// Dropped with the engine, which cancels every flight.
    flights: Flights<Outcome>,
    metrics: Arc<Metrics>,
}

/// How a flight settles a cold `n`: across instances when a tier offers claims, else here.
struct Settle {
    tiers: Arc<Tiers>,
    pool: Pool,
    /// `Some` when cluster-wide coalescing is on and a tier offers claims.
    cluster: Option<Cluster>,
    /// Cluster-wide coalescing was asked for (to count when no tier can do it).
    coalescing: bool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("flights", &self.inner.flights.len())
            .field("available_slots", &self.inner.settle.pool.free_slots())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine answering from `tiers` under `settings` by running `workload`, counting into
    /// `metrics`. Must be called inside a tokio runtime.
    pub(crate) fn new(
        tiers: Tiers,
        workload: Arc<dyn Workload>,
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let tiers = Arc::new(tiers);
        let cluster = settings
            .cluster_coalescing()
            .then(|| tiers.claim_tier())
            .flatten()
            .map(|at| Cluster::new(tiers.clone(), at, settings, metrics.clone()));
        let settle = Settle {
            pool: Pool::new(workload, settings, metrics.clone()),
            tiers,
            cluster,
            coalescing: settings.cluster_coalescing(),
            metrics: metrics.clone(),
        };
        Engine {
            inner: Arc::new(Inner {
                max_n: settings.max_n(),
                settle: Arc::new(settle),
                flights: Flights::new(),
                metrics,
            }),
        }
    }

    /// The `n`-th Fibonacci number: from the cache, or computed once however many requests
    /// (of this instance, and of others sharing a store that offers claims) ask for it at the
    /// same time. Never panics: an `n` above `max_n` is [`Answer::OutOfRange`].
    ///
    /// Dropping the returned future leaves the flight; the last request to leave cancels it.
    pub async fn fib(&self, n: u64) -> Answer {
        let inner = &self.inner;
        if n > inner.max_n {
            return Answer::OutOfRange;
        }
        if let Some(value) = inner.settle.tiers.read(n).await {
            return Answer::Hit(value);
        }
        // Boxed: the wait for a flight is the cold path, and keeping its state out of this
        // future keeps the future of every hit small (it is moved a few times per request).
        Box::pin(async {
            let settle = inner.settle.clone();
            let mut waiter = inner.flights.join(n, move |id, cancel| async move {
                settle.run(n, id, cancel).await
            });
            // Counted once the request has joined: a miss seen in the metrics is a waiter.
            inner.metrics.missed();
            waiter.outcome().await.unwrap_or(Outcome::Stopped)
        })
        .await
        .into()
    }

    /// Cancels every flight, running or still waiting for a slot, and every later one: used
    /// when the shutdown grace period is over. Dropping the last clone of the engine does the
    /// same.
    pub fn stop_all(&self) {
        self.inner.flights.stop_all();
    }

    /// Completes once every flight task has ended: await it after
    /// [`stop_all`](Self::stop_all) to know that no flight of this engine runs any more (a
    /// flight started later is cancelled from the start).
    pub async fn stopped(&self) {
        self.inner.flights.stopped().await;
    }

    /// Whether every tier answers (what `/readyz` calls the cache being `ok`).
    pub(crate) fn cache_up(&self) -> bool {
        self.inner.settle.tiers.all_up()
    }
}

impl Settle {
    /// One flight: settle `n` (across instances, or here), having written the value to every
    /// tier when it was computed here.
    async fn run(&self, n: u64, id: u64, cancel: CancellationToken) -> Outcome {
        if !self.pool.admits(n) {
            return Outcome::TooCostly;
        }
        let compute = || self.compute_and_write(n, &cancel);
        match &self.cluster {
            Some(cluster) => cluster.settle(n, id, &cancel, compute).await,
            None => {
                if self.coalescing {
                    self.metrics.claimed(Claimed::Unsupported);
                }
                compute().await
            }
        }
    }

    async fn compute_and_write(&self, n: u64, cancel: &CancellationToken) -> Outcome {
        let outcome = self.pool.compute(n, cancel).await;
        if let Outcome::Value(value) = outcome {
            self.tiers.write(n, value).await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
