//! The accept loop: connections, their limits, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::connection;
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
/// `limits.shutdown_grace` to finish, then running computations are cancelled and the
/// function returns. Errors accepting one connection are logged and the loop goes on.
pub async fn run(
    listener: TcpListener,
    app: App,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
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
    let closing = CancellationToken::new();
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
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        app.metrics().connections_open.inc();
        let app = app.clone();
        let serving = connection::serve(
            stream,
            peer,
            app.clone(),
            builder.clone(),
            limits.header_timeout,
            closing.clone(),
        );
        tokio::spawn(async move {
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
    closing.cancel();
    // Every connection holds a permit until it is closed: all permits back means all closed.
    let all_closed = connections.acquire_many(max_connections as u32);
    tokio::select! {
        _ = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("grace period over; cancelling what is still running");
        }
    }
    app.engine().stop_all();
    // Cancelled computations stop within milliseconds and their waiters are answered 503:
    // give those answers a moment to leave before the process does.
    let delivered = connections.acquire_many(max_connections as u32);
    let _ = tokio::time::timeout(DELIVER_LAST_ANSWERS, delivered).await;
}

/// How long, after the grace period, the 503s of cancelled computations have to be sent.
const DELIVER_LAST_ANSWERS: Duration = Duration::from_secs(1);

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&refusal())).await;
    let _ = stream.shutdown().await;
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
