//! The reference row: a bare hyper server, the least a Rust HTTP service does per request.
//!
//! hyper 1 with hyper-util's tokio glue, HTTP/1, on a multi-thread runtime with one worker per
//! core as fibcache's has, answering every request with fibcache's `GET /fib/10` body as
//! `application/json`. It is this bench binary started again as a child with [`ARG`]: built by
//! the same `cargo bench`, so with the same profile as fibcache, and in a process of its own,
//! started, read and killed by PID the same way as every fibcache row.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::{Result, BODY};

/// The argument that makes this binary the reference server instead of the report.
pub const ARG: &str = "--serve-reference";

/// Serves on a free loopback port until killed, after printing `listening addr=<ip:port>` on
/// stderr as fibcache does.
///
/// # Errors
/// When the runtime cannot start or the port cannot be bound.
pub fn serve() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("reference: listening addr={}", listener.local_addr()?);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
                    let json = HeaderValue::from_static("application/json");
                    response.headers_mut().insert(CONTENT_TYPE, json);
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
