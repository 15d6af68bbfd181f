//! The accept loop: connections, their limits, and graceful shutdown.
//!
//! [`run`] serves the [`App`] itself; [`serve`] serves any tower `Service` wrapped around it
//! (an axum `Router` with the app nested, `tower` layers), with the same limits. Every task
//! the loop starts (a connection, the streams of an HTTP/2 connection, a refusal) is tracked:
//! when either returns, none of them is still running, and if the caller drops the future
//! before that, its connections are dropped with it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{self, BoxError, Spawner, Stop};
use crate::App;

/// Connection-level limits: what [`run`] enforces on the connections it accepts. The limits
/// of each request travel with the [`App`] (see [`Settings`](crate::Settings)).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ConnLimits {
    /// A connection with no request in progress that has not started one for this long (since
    /// it opened, or since its last answer) is closed, whatever bytes it sent, over HTTP/1.1
    /// and HTTP/2 alike: a client that sends nothing, half a request head, or a preface and no
    /// stream, and a keep-alive connection left idle (`--header-timeout`).
    pub header_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed (`--max-connections`).
    pub max_connections: usize,
    /// How long in-flight requests may finish once the listener is closed
    /// (`--shutdown-grace`).
    pub shutdown_grace: Duration,
    /// How long, once shutdown has begun, the server keeps accepting and serving while
    /// `/readyz` answers 503, so that load balancers stop sending before the listener closes
    /// (`--shutdown-delay`).
    pub shutdown_delay: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// What a refused connection gets: a complete answer, so the client knows to come back.
fn refusal() -> Vec<u8> {
    let body = r#"{"error":"too many open connections; retry shortly"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` over HTTP/1.1 and HTTP/2 (h2c) on `listener` until `shutdown` completes, then
/// drains.
///
/// After `shutdown` resolves, no connection is accepted; requests in progress get up to
/// `limits.shutdown_grace` to finish, then running computations are cancelled, the
/// connections still open are dropped, and the function returns. Errors accepting one
/// connection are logged and the loop goes on.
pub async fn run(
    listener: TcpListener,
    app: App,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let handler = {
        let app = app.clone();
        move |req| {
            let answer = app.handle(req);
            async move { Ok::<_, Infallible>(answer.await) }
        }
    };
    accept(listener, app, handler, limits, shutdown).await;
}

/// Serves `service`, a tower `Service` built around `app` (an axum `Router` with the app
/// nested, `tower` layers around it), as [`run`] serves the app alone: with the connection
/// limits of `limits`, the idle watchdog, and graceful shutdown when `shutdown` completes.
///
/// `app` is the one inside `service` (a clone shares everything with it): its metrics count
/// the connections (`fibcache_connections_open`, `fibcache_connections_refused_total`), its
/// `/readyz` answers 503 from the moment `shutdown` completes, and its computations still
/// running after the grace period are cancelled. `service` is cloned for every request, and
/// called once it is ready.
///
/// # Example
/// A layer of the embedder's own around the app (with axum:
/// `Router::new().nest_service("/api", app.clone())` in its place):
/// ```
/// # #[tokio::main]
/// # async fn main() -> anyhow::Result<()> {
/// use std::convert::Infallible;
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::task::{Context, Poll};
///
/// use fibcache_core::Config;
/// use fibcache_server::{app::Body, serve, App, ConnLimits, Settings};
/// use hyper::{header::HeaderValue, Request, Response};
///
/// /// Says on every answer who served it.
/// #[derive(Clone)]
/// struct Tagged(App);
///
/// impl<B> tower_service::Service<Request<B>> for Tagged {
///     type Response = Response<Body>;
///     type Error = Infallible;
///     type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;
///
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///
///     fn call(&mut self, req: Request<B>) -> Self::Future {
///         let answer = self.0.handle(req);
///         Box::pin(async move {
///             let mut response = answer.await;
///             let tag = HeaderValue::from_static("tagged");
///             response.headers_mut().insert("x-served-by", tag);
///             Ok(response)
///         })
///     }
/// }
///
/// let cache = fibcache_server::backends()?.create("nop", &Config::default()).await?;
/// let app = App::new(cache, "nop", Settings::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let service = Tagged(app.clone());
/// let server = tokio::spawn(serve(listener, app, service, ConnLimits::default(), async {
///     let _ = stopped.await;
/// }));
///
/// let mut stream = tokio::net::TcpStream::connect(addr).await?;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// stream.write_all(b"GET /fib/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
/// let mut response = String::new();
/// stream.read_to_string(&mut response).await?;
/// assert!(response.contains("x-served-by: tagged"));
/// assert!(response.ends_with(r#"{"result":55}"#));
///
/// let _ = stop.send(());
/// server.await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    app: App,
    service: S,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let handler = move |req| {
        let mut service = service.clone();
        async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(req).await
        }
    };
    accept(listener, app, handler, limits, shutdown).await;
}

/// Refusals being written at once, at most: past this, one connection too many is closed
/// without an answer rather than costing a task and a descriptor for up to [`REFUSAL_WRITE`].
const MAX_REFUSALS: usize = 64;

/// How long a refused client has to take its 503.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// The accept loop of [`run`] and [`serve`]: `handler` answers each request.
async fn accept<H, F, B, E>(
    listener: TcpListener,
    app: App,
    handler: H,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let tasks = TaskTracker::new();
    let mut builder = auto::Builder::new(Spawner(tasks.clone()));
    // Idle and slow clients are the watchdog's business (see `connection`), for both
    // protocols, rather than hyper's per-request header timer.
    builder.http1().keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let connections = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let stop = Stop {
        close: CancellationToken::new(),
        abort: CancellationToken::new(),
    };
    // If the caller drops this future before it returns, its connections go with it.
    let _abort_if_dropped = stop.abort.clone().drop_guard();
    let _close_if_dropped = stop.close.clone().drop_guard();
    tokio::pin!(shutdown);

    // Until shutdown begins, then for `shutdown_delay` more: serving as usual, but not ready.
    let mut stop_accepting: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(std::future::pending());
    let mut shutting_down = false;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown, if !shutting_down => {
                shutting_down = true;
                app.begin_shutdown();
                if limits.shutdown_delay.is_zero() {
                    break;
                }
                tracing::info!(
                    delay = %humantime::format_duration(limits.shutdown_delay),
                    "not ready; serving a while longer before closing the listener"
                );
                stop_accepting = Box::pin(tokio::time::sleep(limits.shutdown_delay));
                continue;
            }
            () = &mut stop_accepting => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Typically EMFILE/ENFILE: wait for descriptors to come back instead of
                    // spinning, and keep serving the connections we have.
                    tracing::warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            app.metrics().connections_refused.inc();
            refuse_on(&tasks, &refusals, stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        app.metrics().connections_open.inc();
        let app = app.clone();
        let serving = connection::serve(
            stream,
            peer,
            handler.clone(),
            builder.clone(),
            limits.header_timeout,
            stop.clone(),
        );
        tasks.spawn(async move {
            serving.await;
            app.metrics().connections_open.dec();
            drop(permit);
        });
    }

    drop(listener);
    let open = max_connections - connections.available_permits();
    tracing::info!(
        connections = open,
        grace = ?limits.shutdown_grace,
        "shutting down; letting requests in progress finish"
    );
    stop.close.cancel();
    tasks.close();
    tokio::select! {
        () = tasks.wait() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("grace period over; cancelling what is still running");
        }
    }
    app.engine().stop_all();
    // Cancelled computations stop within milliseconds and their waiters are answered 503:
    // give those answers a moment to leave before the connections are dropped.
    let _ = tokio::time::timeout(DELIVER_LAST_ANSWERS, tasks.wait()).await;
    stop.abort.cancel();
    // Each task ends at its next poll: a connection on its abort, a stream of an HTTP/2
    // connection once its connection is gone. Only code that blocks its thread can hold this
    // up, and it is not waited for past the bound.
    if tokio::time::timeout(DELIVER_LAST_ANSWERS, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = tasks.len(),
            "tasks still running after the server stopped"
        );
    }
    // Every flight was cancelled above; a computation notices within milliseconds.
    if tokio::time::timeout(DELIVER_LAST_ANSWERS, app.engine().stopped())
        .await
        .is_err()
    {
        tracing::warn!("computations still running after the server stopped");
    }
}

/// How long, after the grace period, the 503s of cancelled computations have to be sent.
const DELIVER_LAST_ANSWERS: Duration = Duration::from_secs(1);

/// Answers a refused connection 503 on a task of `tasks`; when [`MAX_REFUSALS`] are being
/// answered already, drops it (closes it at once) instead. Whether it is answered.
fn refuse_on<S>(tasks: &TaskTracker, refusals: &Arc<Semaphore>, mut stream: S) -> bool
where
    S: AsyncWrite + Unpin + Send + 'static,
{
    let Ok(refusing) = refusals.clone().try_acquire_owned() else {
        return false;
    };
    tasks.spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_WRITE, stream.write_all(&refusal())).await;
        let _ = stream.shutdown().await;
        drop(refusing);
    });
    true
}

/// Binds `addr` with the options a server wants (address reuse, a deep backlog).
///
/// # Errors
/// When the address cannot be bound.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refusals_being_answered_are_bounded() {
        let tasks = TaskTracker::new();
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
        // Clients that never read: each answer waits on a one-byte buffer.
        let mut clients = Vec::new();
        let mut answered = 0;
        for _ in 0..MAX_REFUSALS * 3 {
            let (client, server) = tokio::io::duplex(1);
            clients.push(client);
            answered += usize::from(refuse_on(&tasks, &refusals, server));
        }
        assert_eq!(answered, MAX_REFUSALS);
        assert_eq!(tasks.len(), MAX_REFUSALS);
        // Each gives up after its bound, and the slots are free again.
        tasks.close();
        tokio::time::timeout(REFUSAL_WRITE * 2, tasks.wait())
            .await
            .expect("every refusal gave up");
        assert_eq!(refusals.available_permits(), MAX_REFUSALS);
    }
}
