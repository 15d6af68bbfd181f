//! The bounded computation pool: at most `--max-computes` computations at once, each on a
//! blocking thread (never on an async worker, so cache hits are never held up), each within
//! `--compute-timeout`, and none that cannot finish in time.
//!
//! - **Admission by cost.** A cold `n` whose [`Workload::estimate`] exceeds
//!   `--compute-timeout` is refused at once ([`Outcome::TooCostly`], HTTP 504) without taking
//!   a slot: two requests for `/fib/92` and `/fib/91` cannot hold every slot for the whole
//!   timeout while cold requests for small `n` are turned away.
//! - **Bounded waiting.** A computation that cannot get a slot within `--queue-wait` is
//!   [`Outcome::Overloaded`] (503) instead of queueing without limit.
//! - **Cancellable.** The computation asks its cancellation token as it goes; a cancelled one
//!   (every waiter left, shutdown, timeout) stops within milliseconds.
//! - **Told truly.** A computation past `--compute-timeout` is [`Outcome::TimedOut`]; its
//!   blocking thread keeps its slot, and counts as running, until it has actually stopped. A
//!   panicking workload is [`Outcome::Panicked`] (HTTP 500), counted as
//!   `outcome="panicked"`; the server goes on.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::fib::Workload;
use crate::metrics::{Finished, Metrics};
use crate::Settings;

/// How settling a cold `n` ended, as the waiters of its flight see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The value, computed here or by another instance.
    Value(u64),
    /// No computation slot came free within `--queue-wait`.
    Overloaded,
    /// The computation, or the wait for another instance's, ran past `--compute-timeout`.
    TimedOut,
    /// The estimate of the computation exceeds `--compute-timeout`: not tried.
    TooCostly,
    /// The computation was stopped before it finished (shutdown, or the app was dropped).
    Stopped,
    /// The workload panicked.
    Panicked,
}

/// The computation slots and the workload that runs in them.
pub(crate) struct Pool {
    workload: Arc<dyn Workload>,
    /// One permit per computation that may run at once (`--max-computes`). A permit moves into
    /// the blocking thread and is given back when that thread is done, not when its waiters
    /// stop waiting.
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    compute_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// A computation's hold on its slot, on its blocking thread: dropped when the thread is done
/// (returned, cancelled or panicked), it gives the slot back and stops counting as running.
struct Running {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Pool {
    /// A pool running `workload` under the limits of `settings`.
    pub(crate) fn new(
        workload: Arc<dyn Workload>,
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Pool {
            workload,
            permits: Arc::new(Semaphore::new(settings.max_computes().get())),
            queue_wait: settings.queue_wait(),
            compute_timeout: settings.compute_timeout(),
            metrics,
        }
    }

    /// Whether computing `n` may be tried: its estimate, if any, is within `--compute-timeout`.
    /// A refusal is counted.
    pub(crate) fn admits(&self, n: u64) -> bool {
        match self.workload.estimate(n) {
            Some(estimate) if estimate > self.compute_timeout => {
                self.metrics.refused();
                tracing::debug!(
                    n,
                    ?estimate,
                    "computation refused: it cannot finish in time"
                );
                false
            }
            _ => true,
        }
    }

    /// Slots free right now.
    pub(crate) fn free_slots(&self) -> usize {
        self.permits.available_permits()
    }

    /// Waits for a slot (at most `--queue-wait`), then computes `n` on a blocking thread (at
    /// most `--compute-timeout`). A computation cancelled before it got its slot never starts.
    pub(crate) async fn compute(&self, n: u64, cancel: &CancellationToken) -> Outcome {
        let metrics = &self.metrics;
        let acquire = self.permits.clone().acquire_owned();
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return Outcome::Stopped,
            permit = tokio::time::timeout(self.queue_wait, acquire) => permit,
        };
        let Ok(Ok(permit)) = permit else {
            metrics.overloaded();
            return Outcome::Overloaded;
        };
        if cancel.is_cancelled() {
            return Outcome::Stopped;
        }
        metrics.started();
        metrics.running().inc();
        let running = Running {
            _permit: permit,
            gauge: metrics.running().clone(),
        };
        let (token, workload) = (cancel.clone(), self.workload.clone());
        let thread = tokio::task::spawn_blocking(move || {
            let _running = running;
            workload.compute(n, &|| token.is_cancelled())
        });
        // Should this future be dropped mid-computation, the thread is told to stop too.
        let stop_if_dropped = cancel.clone().drop_guard();
        let finished = tokio::time::timeout(self.compute_timeout, thread).await;
        stop_if_dropped.disarm();
        match finished {
            Ok(Ok(Ok(value))) => {
                metrics.finished(Finished::Ok);
                Outcome::Value(value)
            }
            Ok(Ok(Err(_cancelled))) => {
                metrics.finished(Finished::Cancelled);
                tracing::debug!(n, "computation cancelled");
                Outcome::Stopped
            }
            Ok(Err(failed)) => {
                // A panic (the runtime never cancels a blocking task on its own).
                metrics.finished(Finished::Panicked);
                tracing::error!(n, cause = %failed, "computation panicked");
                Outcome::Panicked
            }
            Err(_elapsed) => {
                // The thread sees this within milliseconds; until then it keeps its slot.
                cancel.cancel();
                metrics.finished(Finished::Timeout);
                tracing::warn!(
                    n,
                    limit = %humantime::format_duration(self.compute_timeout),
                    "computation timed out"
                );
                Outcome::TimedOut
            }
        }
    }
}
