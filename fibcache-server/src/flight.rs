//! Single-flight: concurrent requests for the same `n` share one piece of work (a *flight*).
//!
//! The first request for `n` starts the flight as a task of its own (it may leave while others
//! still wait); later ones join it. Every request holds a [`Waiter`]; when the last one is
//! dropped (its client went away) the flight's [`CancellationToken`] is cancelled and the next
//! request for `n` starts afresh.
//!
//! Nothing outlives its owner: every flight's token is a child of one token that
//! [`Flights::stop_all`] cancels and that dropping the [`Flights`] cancels too, and every flight
//! task is tracked by a [`TaskTracker`], so the owner can wait for them to end
//! ([`Flights::stopped`]). The flights know nothing of what they run.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// The flights in progress, by `n`, each ending in a `T`.
pub(crate) struct Flights<T> {
    shared: Arc<Shared<T>>,
    /// Cancels every flight when the owner drops this.
    _stop_on_drop: DropGuard,
}

/// What the flights' tasks and waiters share.
struct Shared<T> {
    map: Mutex<HashMap<u64, Slot<T>>>,
    next_id: AtomicU64,
    /// The parent of every flight's token.
    stop_all: CancellationToken,
    tracker: TaskTracker,
}

/// A flight as the map holds it.
struct Slot<T> {
    /// Tells this flight from a later one for the same `n`.
    id: u64,
    /// Cancelled when the last waiter leaves, and by `stop_all`.
    cancel: CancellationToken,
    /// Every waiter's view of the outcome; `None` until it is known.
    outcome: watch::Receiver<Option<T>>,
    /// Requests waiting on it now. Kept under the map's lock so that "the last waiter leaves"
    /// and "a new waiter joins" can never interleave.
    waiters: usize,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    pub(crate) fn new() -> Self {
        let stop_all = CancellationToken::new();
        Flights {
            _stop_on_drop: stop_all.clone().drop_guard(),
            shared: Arc::new(Shared {
                map: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                stop_all,
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Joins the flight for `n`, or starts one that runs `work(id, cancel)`: `id` tells this
    /// flight from any other, and `cancel` is cancelled when every waiter has left or all
    /// flights are stopped.
    pub(crate) fn join<F, W>(&self, n: u64, work: W) -> Waiter<T>
    where
        W: FnOnce(u64, CancellationToken) -> F,
        F: Future<Output = T> + Send + 'static,
    {
        let shared = &self.shared;
        let mut map = shared.lock();
        if let Some(slot) = map.get_mut(&n) {
            slot.waiters += 1;
            return Waiter {
                shared: shared.clone(),
                n,
                id: slot.id,
                outcome: slot.outcome.clone(),
            };
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = shared.stop_all.child_token();
        let (publish, outcome) = watch::channel(None);
        map.insert(
            n,
            Slot {
                id,
                cancel: cancel.clone(),
                outcome: outcome.clone(),
                waiters: 1,
            },
        );
        drop(map);
        let flight = work(id, cancel);
        let land = shared.clone();
        shared.tracker.spawn(async move {
            let outcome = flight.await;
            let mut map = land.lock();
            if map.get(&n).is_some_and(|slot| slot.id == id) {
                map.remove(&n);
            }
            // Under the map's lock: a waiter that leaves from now on finds the flight gone and
            // cancels nothing. If every waiter already left, nobody receives this.
            let _ = publish.send(Some(outcome));
        });
        Waiter {
            shared: shared.clone(),
            n,
            id,
            outcome,
        }
    }

    /// Cancels every flight, and every later one.
    pub(crate) fn stop_all(&self) {
        self.shared.stop_all.cancel();
    }

    /// Flights in progress.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().len()
    }

    /// Completes once no flight task is running any more and none can start: call after
    /// [`stop_all`](Self::stop_all) to wait for the flights to wind down.
    pub(crate) async fn stopped(&self) {
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot<T>>> {
        // The map holds plain data updated in single statements; a panic elsewhere while the
        // lock was held cannot leave it inconsistent, so poisoning is ignored.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request's membership in a flight; dropping it leaves the flight.
pub(crate) struct Waiter<T> {
    shared: Arc<Shared<T>>,
    n: u64,
    id: u64,
    outcome: watch::Receiver<Option<T>>,
}

impl<T: Clone> Waiter<T> {
    /// The flight's outcome; `None` if the flight ended without one (its task was dropped,
    /// which happens only when the runtime shuts down).
    pub(crate) async fn outcome(&mut self) -> Option<T> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        }
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        let mut map = self.shared.lock();
        let Some(slot) = map.get_mut(&self.n).filter(|slot| slot.id == self.id) else {
            return;
        };
        slot.waiters -= 1;
        if slot.waiters == 0 {
            // Nobody wants the answer any more: stop, and let the next request for this n
            // start afresh.
            slot.cancel.cancel();
            map.remove(&self.n);
        }
    }
}
