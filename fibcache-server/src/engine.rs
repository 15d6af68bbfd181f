//! The request path of `GET /fib/{n}`: one type, [`Engine`], owns the cache, the single-flight
//! and the limits, and [`Engine::fib`] is the one call a handler makes.
//!
//! Read top to bottom, a request goes: [`Engine::fib`] reads the cache, tier by tier; on a miss
//! it joins the flight for `n` or starts one; the flight (`Engine::fly`) gets a slot on the
//! bounded pool and computes there, writes the cache, then hands the value to every waiter.
//! With cluster-wide coalescing (module `cluster`), the flight first claims `n` in the shared
//! store, and computes only if it won the claim; otherwise it waits for the winner's value.
//!
//! The cache is one or more **tiers**, nearest first (`--cache memory+redis`): a read tries
//! them in order, a hit in a farther tier is copied to the nearer ones, and a write goes to
//! every tier. Each tier has its own guard, so a tier that fails is skipped on its own.
//!
//! The article's server starts one computation per request, keeps it running after the client
//! left, and runs any number at once. Here:
//! - **Coalescing**: concurrent misses for the same `n` share one computation (a flight). It
//!   writes the cache *before* answering, so a client that asks again right after its answer
//!   gets a hit, and a request arriving meanwhile joins instead of computing again.
//! - **Bounded**: at most `max_computes` computations run at once, each on a blocking thread
//!   (never on an async worker, so cache hits are never held up). A flight that cannot get a
//!   slot within `queue_wait` answers [`Answer::Overloaded`] instead of queueing without limit.
//! - **Cancellable**: every waiting request holds a `Waiter`; when the last one is dropped
//!   (the client went away) the flight's [`CancellationToken`] is cancelled, which ends the wait
//!   for a slot at once and stops a running computation within milliseconds. A computation past
//!   `compute_timeout` is cancelled the same way and its waiters get [`Answer::TimedOut`].
//! - **The cache is never a reason for a wrong answer or an error**: reads and writes go through
//!   a guard (`cache.rs`), which bounds them, skips a cache that is down, and turns every fault into
//!   a miss.
//!
//! The flight runs as a task of its own rather than inside the request that started it: that
//! request may leave while others still wait for the same `n`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fibcache_core::fib::fib_slow;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;

use crate::cache::{GuardedCache, Lookup};
use crate::metrics::{Claimed, Finished, Metrics};
use crate::Settings;

/// What [`Engine::fib`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The cache had the number.
    Hit(u64),
    /// The number was computed (by this request's flight, possibly shared with others).
    Miss(u64),
    /// No computation slot came free within `queue_wait`.
    Overloaded,
    /// The computation ran past `compute_timeout`.
    TimedOut,
    /// The computation was stopped before it finished: the server is shutting down.
    Stopped,
}

/// How a flight ended, as its waiters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Value(u64),
    Overloaded,
    TimedOut,
    Stopped,
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Value(value) => Answer::Miss(value),
            Outcome::Overloaded => Answer::Overloaded,
            Outcome::TimedOut => Answer::TimedOut,
            Outcome::Stopped => Answer::Stopped,
        }
    }
}

/// A flight as the map holds it.
struct Slot {
    /// Tells this flight from a later one for the same `n`.
    id: u64,
    /// Cancelled when the last waiter leaves, on timeout, and at shutdown.
    cancel: CancellationToken,
    /// Every waiter's view of the outcome; `None` until it is known.
    outcome: watch::Receiver<Option<Outcome>>,
    /// Requests waiting on it now. Kept under the map's lock so that "the last waiter leaves"
    /// and "a new waiter joins" can never interleave.
    waiters: usize,
}

/// One tier of the cache: a backend under its own guard, and its hit counter.
pub(crate) struct Tier {
    guard: GuardedCache,
    hits: Counter,
}

impl Tier {
    /// `guard` as a tier, counting its hits into `metrics` under its backend's name.
    pub(crate) fn new(guard: GuardedCache, metrics: &Metrics) -> Self {
        let hits = metrics.hits(guard.name());
        Tier { guard, hits }
    }

    pub(crate) fn guard(&self) -> &GuardedCache {
        &self.guard
    }
}

pub(crate) struct Inner {
    /// Nearest first; never empty.
    pub(crate) tiers: Vec<Tier>,
    /// The tier whose claims coalesce computations across instances: the farthest that offers
    /// claims, when cluster-wide coalescing is on.
    pub(crate) claims_at: Option<usize>,
    /// Whether cluster-wide coalescing was asked for (`--cluster-coalescing on`).
    coalescing: bool,
    /// The cache key of every `n` in `0..=max_n`, built once rather than per request.
    keys: Vec<String>,
    /// The key of the claim on every `n`: `<prefix>claim:<n>`.
    pub(crate) claim_keys: Vec<String>,
    /// Makes this engine's claim tokens unlike any other instance's.
    pub(crate) token_seed: u64,
    ttl: Duration,
    flights: Mutex<HashMap<u64, Slot>>,
    /// One permit per computation that may run at once (`--max-computes`).
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    pub(crate) compute_timeout: Duration,
    /// The parent of every flight's token: cancelling it stops everything (shutdown).
    stop_all: CancellationToken,
    next_id: AtomicU64,
    pub(crate) metrics: Arc<Metrics>,
}

/// Computes Fibonacci numbers through a cache; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("flights", &self.lock().len())
            .field("available_slots", &self.inner.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine answering from `tiers` (nearest first, at least one) under `settings`,
    /// counting into `metrics`.
    pub(crate) fn new(tiers: Vec<Tier>, settings: &Settings, metrics: Arc<Metrics>) -> Self {
        assert!(!tiers.is_empty(), "an engine needs at least one cache tier");
        let keys = (0..=settings.max_n())
            .map(|n| format!("{}{n}", settings.prefix()))
            .collect();
        let claim_keys = (0..=settings.max_n())
            .map(|n| format!("{}claim:{n}", settings.prefix()))
            .collect();
        let claims_at = settings
            .cluster_coalescing()
            .then(|| tiers.iter().rposition(|tier| tier.guard.offers_claims()))
            .flatten();
        Engine {
            inner: Arc::new(Inner {
                tiers,
                claims_at,
                coalescing: settings.cluster_coalescing(),
                keys,
                claim_keys,
                token_seed: crate::cluster::seed(),
                ttl: settings.ttl(),
                flights: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(settings.max_computes().get())),
                queue_wait: settings.queue_wait(),
                compute_timeout: settings.compute_timeout(),
                stop_all: CancellationToken::new(),
                next_id: AtomicU64::new(0),
                metrics,
            }),
        }
    }

    /// The `n`-th Fibonacci number: from the cache, or computed once however many requests
    /// ask for it at the same time.
    ///
    /// `n` must be at most the `max_n` the engine was built with (the router checks).
    /// Dropping the returned future leaves the flight; the last request to leave cancels it.
    pub async fn fib(&self, n: u64) -> Answer {
        let metrics = &self.inner.metrics;
        if let Some(value) = self.read(n).await {
            return Answer::Hit(value);
        }
        // Boxed: the wait for a flight is the cold path, and keeping its state out of this
        // future keeps the future of every hit small (it is moved a few times per request).
        Box::pin(async {
            let mut waiter = self.join(n);
            // Counted once the request has joined: a miss seen in the metrics is a waiter.
            metrics.cache_misses.inc();
            waiter.outcome().await
        })
        .await
        .into()
    }

    /// Cancels every flight, running or still waiting for a slot, and every later one: used
    /// when the shutdown grace period is over.
    pub fn stop_all(&self) {
        self.inner.stop_all.cancel();
    }

    /// Whether every tier answers (what `/readyz` calls the cache being `ok`).
    pub(crate) fn cache_up(&self) -> bool {
        self.inner.tiers.iter().all(|tier| tier.guard.is_up())
    }

    pub(crate) fn key(&self, n: u64) -> &str {
        &self.inner.keys[n as usize]
    }

    /// The number under `n`'s key in the nearest tier that has it; a hit in a farther tier is
    /// copied to the nearer ones first.
    async fn read(&self, n: u64) -> Option<u64> {
        let key = self.key(n);
        for (at, tier) in self.inner.tiers.iter().enumerate() {
            if let Lookup::Value(value) = tier.guard.lookup(n, key).await {
                tier.hits.inc();
                if at > 0 {
                    self.copy_nearer(n, value, at).await;
                }
                return Some(value);
            }
        }
        None
    }

    /// Writes `value`, found in tier `found`, to the tiers nearer than it, for the lifetime it
    /// has left there when that tier can tell (never longer than `--cache-ttl`).
    pub(crate) async fn copy_nearer(&self, n: u64, value: u64, found: usize) {
        let key = self.key(n);
        let ttl = match self.inner.tiers[found].guard.remaining(n, key).await {
            Some(left) => left.min(self.inner.ttl),
            None => self.inner.ttl,
        };
        for tier in &self.inner.tiers[..found] {
            tier.guard.write(n, key, value, ttl).await;
        }
    }

    /// Writes `value` under `n`'s key to every tier, for `--cache-ttl`.
    pub(crate) async fn write(&self, n: u64, value: u64) {
        let key = self.key(n);
        for tier in &self.inner.tiers {
            tier.guard.write(n, key, value, self.inner.ttl).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        // The map holds plain data updated in single statements; a panic elsewhere while the
        // lock was held cannot leave it inconsistent, so poisoning is ignored.
        self.inner.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight for `n`, starting one if none is in progress.
    fn join(&self, n: u64) -> Waiter {
        let mut flights = self.lock();
        if let Some(slot) = flights.get_mut(&n) {
            slot.waiters += 1;
            return Waiter {
                engine: self.clone(),
                n,
                id: slot.id,
                outcome: slot.outcome.clone(),
            };
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = self.inner.stop_all.child_token();
        let (publish, outcome) = watch::channel(None);
        flights.insert(
            n,
            Slot {
                id,
                cancel: cancel.clone(),
                outcome: outcome.clone(),
                waiters: 1,
            },
        );
        drop(flights);
        tokio::spawn(self.clone().fly(n, id, cancel, publish));
        Waiter {
            engine: self.clone(),
            n,
            id,
            outcome,
        }
    }

    /// One flight: compute on the bounded pool, write the cache, hand the value to the waiters.
    async fn fly(
        self,
        n: u64,
        id: u64,
        cancel: CancellationToken,
        publish: watch::Sender<Option<Outcome>>,
    ) {
        let outcome = match self.inner.claims_at {
            Some(at) => self.settle_across_instances(n, id, &cancel, at).await,
            None => {
                if self.inner.coalescing {
                    self.inner.metrics.claimed(Claimed::Unsupported);
                }
                self.compute_and_write(n, &cancel).await
            }
        };
        let mut flights = self.lock();
        if flights.get(&n).is_some_and(|slot| slot.id == id) {
            flights.remove(&n);
        }
        // Under the map's lock: a waiter that leaves from now on finds the flight gone and
        // cancels nothing. If every waiter already left, nobody receives this.
        let _ = publish.send(Some(outcome));
    }

    /// Computes `n` here and writes the value to every tier.
    pub(crate) async fn compute_and_write(&self, n: u64, cancel: &CancellationToken) -> Outcome {
        let outcome = self.compute(n, cancel).await;
        if let Outcome::Value(value) = outcome {
            self.write(n, value).await;
        }
        outcome
    }

    /// Waits for a computation slot (at most `queue_wait`), then computes on a blocking thread
    /// (at most `compute_timeout`). A flight cancelled before it got its slot (every waiter
    /// left, or shutdown) never starts computing.
    pub(crate) async fn compute(&self, n: u64, cancel: &CancellationToken) -> Outcome {
        let inner = &self.inner;
        let metrics = &inner.metrics;
        let acquire = inner.permits.clone().acquire_owned();
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return Outcome::Stopped,
            permit = tokio::time::timeout(inner.queue_wait, acquire) => permit,
        };
        let Ok(Ok(permit)) = permit else {
            metrics.overloaded.inc();
            return Outcome::Overloaded;
        };
        if cancel.is_cancelled() {
            return Outcome::Stopped;
        }
        metrics.computations_started.inc();
        metrics.computations_running.inc();
        let token = cancel.clone();
        let running = tokio::task::spawn_blocking(move || {
            let result = fib_slow(n, || token.is_cancelled());
            drop(permit);
            result
        });
        let outcome = match tokio::time::timeout(inner.compute_timeout, running).await {
            Ok(Ok(Ok(value))) => {
                metrics.finished(Finished::Ok);
                Outcome::Value(value)
            }
            Ok(Ok(Err(_cancelled))) => {
                metrics.finished(Finished::Cancelled);
                tracing::debug!(n, "computation cancelled");
                Outcome::Stopped
            }
            Ok(Err(join_error)) => {
                // fib_slow does not panic for n <= MAX_N; should it ever, the waiters get an
                // error answer and the server goes on.
                metrics.finished(Finished::Cancelled);
                tracing::error!(n, cause = %join_error, "computation failed");
                Outcome::Stopped
            }
            Err(_elapsed) => {
                cancel.cancel();
                metrics.finished(Finished::Timeout);
                tracing::warn!(
                    n,
                    limit = %humantime::format_duration(inner.compute_timeout),
                    "computation timed out"
                );
                Outcome::TimedOut
            }
        };
        metrics.computations_running.dec();
        outcome
    }
}

/// One request's membership in a flight; dropping it leaves the flight.
struct Waiter {
    engine: Engine,
    n: u64,
    id: u64,
    outcome: watch::Receiver<Option<Outcome>>,
}

impl Waiter {
    /// Waits for the flight's outcome.
    async fn outcome(&mut self) -> Outcome {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.unwrap_or(Outcome::Stopped),
            // The flight is gone without publishing: only when the runtime shuts down.
            Err(_) => Outcome::Stopped,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut flights = self.engine.lock();
        let Some(slot) = flights.get_mut(&self.n).filter(|slot| slot.id == self.id) else {
            return;
        };
        slot.waiters -= 1;
        if slot.waiters == 0 {
            // Nobody wants the answer any more: stop computing, and let the next request for
            // this n start afresh.
            slot.cancel.cancel();
            flights.remove(&self.n);
        }
    }
}
