//! One accepted connection, served until it is done, idle too long, or the server shuts down.
//!
//! hyper's own header timeout arms a timer for every request head, and covers neither the
//! HTTP/1-or-2 detection (which waits for the first bytes with no limit) nor HTTP/2. Instead,
//! each connection here has one watchdog that counts what matters to a client waiting for an
//! answer: **requests**. A connection that has no request in progress, and has not started
//! one for `--header-timeout` (since it was opened, or since its last answer), is closed,
//! whatever bytes it sent: a client that sends nothing, half a request head, or an HTTP/2
//! preface and then no stream costs one connection slot for at most that long, on either
//! protocol. Bytes are not activity: a head trickled in one byte at a time, or an HTTP/2
//! client's own PINGs, never re-arm it. The watchdog's timer is re-armed at most once per
//! period, not per request.
//!
//! Closing is graceful: an idle HTTP/1 connection is closed, an HTTP/2 one is sent `GOAWAY`.
//! A request that raced the watchdog still gets its answer; a connection with nothing in
//! progress that does not close within [`LINGER`] of being told to is dropped.
//!
//! The watchdog runs as a task of its own and tells the connection through a [`CloseSignal`]:
//! polling a timer and the shutdown token next to the connection, as `select!` would, cost a
//! few hundred instructions on every wake-up of the connection, i.e. on every request.
//!
//! What the connection serves is any handler that turns a request into a response future: the
//! [`App`](crate::App) itself, or a tower stack around it (see [`crate::serve`]). Everything
//! hyper spawns beside the connection (the streams of an HTTP/2 connection) runs on the
//! server's [`Spawner`], so that the server knows when the last of it is done.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

/// What a handler or a response body may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection told to close, with nothing in progress, has to do so.
pub(crate) const LINGER: Duration = Duration::from_millis(200);

/// What a connection is doing, as its watchdog sees it.
struct Activity {
    /// Requests of this connection being answered now.
    in_flight: AtomicUsize,
    /// When the connection last became idle (opened, or answered a request), in milliseconds
    /// since `opened`.
    idle_since_ms: AtomicU64,
    opened: Instant,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            opened: Instant::now(),
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn idle_since(&self) -> Instant {
        self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }
}

/// A request in progress; dropping it (answered, or abandoned) makes the connection idle
/// from now if it was the last one.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_millis() as u64;
        activity.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the watchdog tells the connection to close.
#[derive(Default)]
struct CloseSignal {
    requested: AtomicBool,
    /// The connection task's waker (`AtomicWaker` clones it only when it changes, and a
    /// task's waker does not).
    waker: AtomicWaker,
}

impl CloseSignal {
    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether closing was requested; if not, `cx` is woken when it is.
    fn poll_requested(&self, cx: &Context<'_>) -> bool {
        if self.requested.load(Ordering::Acquire) {
            return true;
        }
        self.waker.register(cx.waker());
        // Requested between the first look and the waker being stored: seen here.
        self.requested.load(Ordering::Acquire)
    }
}

/// Completes once the connection has had no request in progress for `limit`.
async fn idle_for(activity: &Activity, limit: Duration) {
    let mut deadline = activity.opened + limit;
    loop {
        tokio::time::sleep_until(deadline).await;
        deadline = if activity.busy() {
            // Look again a whole period from now; by then the idle time is known exactly.
            Instant::now() + limit
        } else {
            let due = activity.idle_since() + limit;
            if due <= Instant::now() {
                return;
            }
            due
        };
    }
}

/// Runs what hyper spawns beside a connection (the streams of an HTTP/2 connection) as tasks
/// of the server's tracker, so that the server can wait for them.
#[derive(Clone)]
pub(crate) struct Spawner(pub(crate) TaskTracker);

impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// How the server tells its connections to stop.
#[derive(Clone)]
pub(crate) struct Stop {
    /// Cancelled when the server shuts down: finish what is in progress, then close.
    pub(crate) close: CancellationToken,
    /// Cancelled once the grace period is over: drop the connection now.
    pub(crate) abort: CancellationToken,
}

/// Serves one connection with `handler` until the client is done, the connection has been
/// idle for `idle_limit`, or the server stops.
pub(crate) async fn serve<H, F, B, E>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    builder: Arc<auto::Builder<Spawner>>,
    idle_limit: Duration,
    stop: Stop,
) where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        service_fn(move |req| {
            let busy = Busy::start(&activity);
            let answer = handler(req);
            async move {
                let response = answer.await;
                drop(busy);
                response
            }
        })
    };
    let signal = Arc::new(CloseSignal::default());
    let _watchdog = AbortOnDropHandle::new(tokio::spawn({
        let (activity, signal, close) = (activity.clone(), signal.clone(), stop.close);
        async move {
            let why = tokio::select! {
                () = idle_for(&activity, idle_limit) => "idle",
                () = close.cancelled() => "shutting down",
            };
            tracing::debug!(%peer, why, "closing connection");
            signal.request();
        }
    }));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = std::future::poll_fn(|cx| {
        if signal.poll_requested(cx) {
            return Poll::Ready(None);
        }
        conn.as_mut().poll(cx).map(Some)
    });
    if let Some(result) = served.await {
        return finished(peer, result);
    }
    conn.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            result = conn.as_mut() => return finished(peer, result),
            () = stop.abort.cancelled() => {
                tracing::debug!(%peer, "server stopped; dropping the connection");
                return;
            }
            () = tokio::time::sleep(LINGER) => {
                if !activity.busy() {
                    tracing::debug!(%peer, "connection did not close in time; dropping it");
                    return;
                }
            }
        }
    }
}

fn finished(peer: SocketAddr, result: Result<(), BoxError>) {
    if let Err(err) = result {
        tracing::debug!(%peer, cause = %err, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_limit() {
        let activity = Activity::new();
        let limit = Duration::from_secs(10);
        let started = Instant::now();
        idle_for(&activity, limit).await;
        assert_eq!(started.elapsed(), limit);
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_counts_from_the_last_answer_and_never_during_a_request() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(10);
        let opened = Instant::now();
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { idle_for(&activity, limit).await }
        });
        // A request from 4 s to 25 s: longer than the limit, and never cut.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let busy = Busy::start(&activity);
        tokio::time::sleep(Duration::from_secs(21)).await;
        assert!(!watchdog.is_finished(), "closed during a request");
        drop(busy);
        // Idle from 25 s: closed at 35 s, not before.
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        assert!(!watchdog.is_finished(), "closed before the limit");
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::task::yield_now().await;
        assert!(watchdog.is_finished());
        assert!(opened.elapsed() >= Duration::from_secs(35));
    }
}
