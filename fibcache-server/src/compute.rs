//! Coalesced, bounded, cancellable computation of Fibonacci numbers.
//!
//! The article's server starts one computation per request, keeps it running after the client
//! left, and runs any number at once. Here:
//! - **Coalescing**: concurrent misses for the same `n` share one computation ("flight"); the
//!   computation writes the cache once, then answers every waiter.
//! - **Bounded**: at most `max_computes` computations run at once, each on a blocking thread
//!   (never on an async worker, so cache hits are never held up). A flight that cannot get a
//!   slot within `queue_wait` answers [`Outcome::Overloaded`] (HTTP 503) instead of queueing
//!   without limit.
//! - **Cancellable**: each waiting request holds a [`Waiter`]; when the last one is dropped
//!   (the client went away), the flight's [`Cancel`] flag is set and the computation stops
//!   within milliseconds. A computation past `compute_timeout` is cancelled the same way and
//!   its waiters get [`Outcome::Timeout`] (HTTP 504).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fibcache_core::fib::fib_slow;

/// A flag a running computation polls.
#[derive(Debug, Default)]
struct Cancel(std::sync::atomic::AtomicBool);

impl Cancel {
    fn new() -> Self {
        Cancel::default()
    }
    fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Finished, Metrics};

/// How a flight ended, as every waiter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The number.
    Value(u64),
    /// No computation slot came free in time.
    Overloaded,
    /// The computation ran past its time limit.
    Timeout,
    /// The computation was cancelled (server shutting down) or failed unexpectedly.
    Aborted,
}

/// Limits of the engine.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Computations running at once.
    pub max_computes: usize,
    /// Longest a computation may run.
    pub compute_timeout: Duration,
    /// Longest a cold request waits for a computation slot before it is answered 503.
    pub queue_wait: Duration,
}

/// What a finished computation should do with its value besides handing it to its waiters.
pub type OnValue = Arc<dyn Fn(u64, u64) -> tokio::task::JoinHandle<()> + Send + Sync>;

/// The shared part of a flight.
struct Flight {
    /// Distinguishes this flight from a later one for the same `n`.
    id: u64,
    cancel: Arc<Cancel>,
    /// Every waiter's view of the outcome; `None` until it is known.
    outcome: watch::Receiver<Option<Outcome>>,
}

/// A flight as the map holds it.
struct Slot {
    flight: Arc<Flight>,
    /// Requests waiting on it now. Kept under the map's lock so that "last waiter leaves" and
    /// "a new waiter joins" can never interleave.
    waiters: usize,
    /// Set once the outcome is published; a finished flight is never cancelled.
    done: bool,
}

struct Inner {
    flights: Mutex<HashMap<u64, Slot>>,
    permits: Arc<Semaphore>,
    limits: Limits,
    metrics: Arc<Metrics>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Runs computations; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.inner.limits)
            .field("flights", &self.lock().len())
            .finish()
    }
}

impl Engine {
    /// An engine with these limits, counting into `metrics`.
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Self {
        Engine {
            inner: Arc::new(Inner {
                flights: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(limits.max_computes.max(1))),
                limits,
                metrics,
                next_id: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        // The map holds plain data updated in single statements; a panic elsewhere while the
        // lock was held cannot leave it inconsistent, so poisoning is ignored.
        self.inner.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight for `n`, starting one if none is running.
    ///
    /// `on_value(n, value)` runs once per successful computation, before the waiters get the
    /// value (the server writes the cache there, so a client asking again right after its
    /// answer gets a hit, and a request arriving meanwhile joins instead of computing again). Await [`Waiter::outcome`] for the result; dropping
    /// the waiter leaves the flight, and the last one to leave cancels it.
    pub fn join(&self, n: u64, on_value: OnValue) -> Waiter {
        let mut flights = self.lock();
        if let Some(slot) = flights.get_mut(&n) {
            slot.waiters += 1;
            return Waiter {
                engine: self.clone(),
                n,
                flight: slot.flight.clone(),
            };
        }
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight {
            id: self
                .inner
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            cancel: Arc::new(Cancel::new()),
            outcome: rx,
        });
        flights.insert(
            n,
            Slot {
                flight: flight.clone(),
                waiters: 1,
                done: false,
            },
        );
        drop(flights);
        // A permit now, if one is free, saves a task wake-up in the common case.
        let permit = self.inner.permits.clone().try_acquire_owned().ok();
        tokio::spawn(self.clone().drive(n, flight.clone(), tx, permit, on_value));
        Waiter {
            engine: self.clone(),
            n,
            flight,
        }
    }

    /// Cancels every running computation (used when the shutdown grace period is over).
    pub fn cancel_all(&self) {
        for slot in self.lock().values() {
            slot.flight.cancel.cancel();
        }
    }

    /// Flights in the map now (running, or finished and writing the cache).
    pub fn flights(&self) -> usize {
        self.lock().len()
    }

    async fn drive(
        self,
        n: u64,
        flight: Arc<Flight>,
        tx: watch::Sender<Option<Outcome>>,
        permit: Option<OwnedSemaphorePermit>,
        on_value: OnValue,
    ) {
        let limits = self.inner.limits;
        let metrics = &self.inner.metrics;
        let permit = match permit {
            Some(p) => Some(p),
            None => tokio::time::timeout(limits.queue_wait, self.wait_permit(&flight))
                .await
                .ok()
                .flatten(),
        };
        let Some(permit) = permit else {
            if !flight.cancel.is_cancelled() {
                metrics.overloaded.inc();
            }
            self.publish(n, &flight, &tx, Outcome::Overloaded);
            self.remove(n, &flight);
            return;
        };
        if flight.cancel.is_cancelled() {
            // Everybody left while we waited for a slot: never start.
            self.remove(n, &flight);
            return;
        }
        metrics.computations_started.inc();
        metrics.computations_running.inc();
        let cancel = flight.cancel.clone();
        let running = tokio::task::spawn_blocking(move || {
            let result = fib_slow(n, || cancel.is_cancelled());
            drop(permit);
            result
        });
        let outcome = match tokio::time::timeout(limits.compute_timeout, running).await {
            Ok(Ok(Ok(value))) => {
                metrics.finished(Finished::Ok);
                Outcome::Value(value)
            }
            Ok(Ok(Err(_cancelled))) => {
                metrics.finished(Finished::Cancelled);
                tracing::debug!(n, "computation cancelled");
                Outcome::Aborted
            }
            Ok(Err(join_error)) => {
                // fib_slow does not panic for n <= MAX_N; should it ever, the waiters get an
                // error answer and the server goes on.
                metrics.finished(Finished::Cancelled);
                tracing::error!(n, cause = %join_error, "computation failed");
                Outcome::Aborted
            }
            Err(_elapsed) => {
                flight.cancel.cancel();
                metrics.finished(Finished::Timeout);
                tracing::warn!(n, limit = ?limits.compute_timeout, "computation timed out");
                Outcome::Timeout
            }
        };
        metrics.computations_running.dec();
        if let Outcome::Value(value) = outcome {
            // The cache first, then the answer: a client that asks again as soon as it has its
            // answer finds the value cached. The write is bounded by the cache timeout.
            let _ = on_value(n, value).await;
        }
        self.publish(n, &flight, &tx, outcome);
        self.remove(n, &flight);
    }

    /// Waits for a computation slot, giving up (with `None`) if every waiter leaves meanwhile.
    async fn wait_permit(&self, flight: &Flight) -> Option<OwnedSemaphorePermit> {
        let acquire = self.inner.permits.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                permit = &mut acquire => return permit.ok(),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    if flight.cancel.is_cancelled() {
                        return None;
                    }
                }
            }
        }
    }

    fn publish(
        &self,
        n: u64,
        flight: &Flight,
        tx: &watch::Sender<Option<Outcome>>,
        outcome: Outcome,
    ) {
        if let Some(slot) = self.lock().get_mut(&n) {
            if slot.flight.id == flight.id {
                slot.done = true;
            }
        }
        let _ = tx.send(Some(outcome));
    }

    fn remove(&self, n: u64, flight: &Flight) {
        let mut flights = self.lock();
        if flights.get(&n).is_some_and(|s| s.flight.id == flight.id) {
            flights.remove(&n);
        }
    }
}

/// One request's membership in a flight; dropping it leaves the flight.
pub struct Waiter {
    engine: Engine,
    n: u64,
    flight: Arc<Flight>,
}

impl Waiter {
    /// Waits for the flight's outcome.
    pub async fn outcome(&self) -> Outcome {
        let mut rx = self.flight.outcome.clone();
        loop {
            if let Some(outcome) = *rx.borrow_and_update() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                // The driver is gone without publishing: only possible if the runtime is
                // shutting down.
                return Outcome::Aborted;
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut flights = self.engine.lock();
        let Some(slot) = flights.get_mut(&self.n) else {
            return;
        };
        if slot.flight.id != self.flight.id {
            return;
        }
        slot.waiters -= 1;
        if slot.waiters == 0 && !slot.done {
            // Nobody wants the answer any more: stop computing, and let the next request for
            // this n start afresh.
            slot.flight.cancel.cancel();
            flights.remove(&self.n);
        }
    }
}
