//! The accept loop: connections, their limits, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::App;

/// Connection-level limits: what [`run`] enforces on the connections it accepts. The limits
/// of each request travel with the [`App`] (see [`Settings`](crate::Settings)).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A client that has not sent a whole request head by then is dropped; this also closes a
    /// keep-alive connection that stays idle that long between requests (`--header-timeout`).
    pub header_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed (`--max-connections`).
    pub max_connections: usize,
    /// How long in-flight requests may finish after shutdown begins (`--shutdown-grace`).
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
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
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
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
        let service = {
            let app = app.clone();
            service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            })
        };
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's header timeout starts once it reads the request head, but the automatic
            // HTTP/1-or-2 detection waits for the first bytes with no limit: a client that
            // connects and sends nothing would hold a connection forever.
            let mut first = [0u8; 1];
            let ready = tokio::time::timeout(header_timeout, stream.peek(&mut first)).await;
            if matches!(ready, Ok(Ok(n)) if n > 0) {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                if let Err(err) = watcher.watch(conn).await {
                    tracing::debug!(%peer, cause = %err, "connection ended with an error");
                }
            } else {
                tracing::debug!(%peer, "connection sent nothing in time; closing");
            }
            app.metrics().connections_open.dec();
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        grace = ?limits.shutdown_grace,
        "shutting down; letting requests in progress finish"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("grace period over; cancelling what is still running");
        }
    }
    app.engine().stop_all();
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&refusal())).await;
    let _ = stream.shutdown().await;
}

/// Binds `addr` with the options a server wants (address reuse, a deep backlog).
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
