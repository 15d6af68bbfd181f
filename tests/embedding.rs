//! fibcache as a library: a crate that depends on `fibcache-server` keeps the `memory` backend
//! and its own name, the HTTP app nests in an axum application with every per-request
//! behaviour, and an axum stack around the app served by `fibcache_server::serve` keeps the
//! connection limits and graceful shutdown, and leaves nothing running once `serve` returns.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fibcache_server::{App, ConnLimits, Settings};
use support::{examples, get, json, Spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The `fibcache-embedder` binary of `tests/embedder/` (a crate outside the workspace that
/// depends on `fibcache-server` with default features), built into this test's target
/// directory on first use.
fn embedder() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs as <target>/<profile>/deps/<name>-<hash>.
    let target = exe.ancestors().nth(3).expect("the target directory");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/embedder/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--manifest-path", manifest, "--target-dir"])
        .arg(target)
        .output()
        .expect("run cargo build for tests/embedder");
    assert!(
        out.status.success(),
        "building tests/embedder failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target
        .join("debug")
        .join(format!("fibcache-embedder{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

#[test]
fn a_crate_that_depends_on_the_server_keeps_memory_and_its_own_name() {
    let bin = embedder();

    let list = Spawn::new()
        .program(&bin)
        .arg("--list-backends")
        .run_to_exit();
    assert_eq!(list.code(), Some(0), "{list:?}");
    let names: Vec<&str> = list
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, ["memory", "nop"], "{}", list.stdout);

    let version = Spawn::new().program(&bin).arg("--version").run_to_exit();
    assert_eq!(version.code(), Some(0), "{version:?}");
    assert_eq!(version.stdout.trim(), "fibcache-embedder 0.0.1 (memory)");

    let help = Spawn::new().program(&bin).arg("--help").run_to_exit();
    assert_eq!(help.code(), Some(0), "{help:?}");
    assert!(
        help.stdout
            .starts_with("Someone else's service, serving fibcache under its own name"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.contains("Usage: fibcache-embedder"),
        "{}",
        help.stdout
    );

    let mistake = Spawn::new()
        .program(&bin)
        .args(["--cache", "nonesuch"])
        .run_to_exit();
    assert_eq!(mistake.code(), Some(2), "{mistake:?}");
    assert!(
        mistake.stderr.starts_with("fibcache-embedder: error: "),
        "{}",
        mistake.stderr
    );
}

#[test]
fn fibcache_itself_says_who_it_is_and_what_it_was_built_with() {
    let mut features = Vec::new();
    for (on, feature) in [
        (cfg!(feature = "memory"), "memory"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "dynamic"), "dynamic"),
        (cfg!(feature = "wasm"), "wasm"),
    ] {
        if on {
            features.push(feature);
        }
    }
    let built = if features.is_empty() {
        "nop only".to_owned()
    } else {
        features.join(", ")
    };
    let version = Spawn::new().arg("--version").run_to_exit();
    assert_eq!(
        version.stdout.trim(),
        format!("fibcache {} ({built})", env!("CARGO_PKG_VERSION"))
    );
    let help = Spawn::new().arg("--help").run_to_exit();
    assert!(
        help.stdout.starts_with(env!("CARGO_PKG_DESCRIPTION")),
        "{}",
        help.stdout
    );
}

#[tokio::test]
async fn the_app_nests_in_axum_with_every_per_request_behaviour() {
    let server = Spawn::new()
        .program(examples::binary("embed_axum"))
        .env("FIB_PORT", "0")
        .start();

    let first = get(server.addr, "/api/fib/20").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body, r#"{"result":6765}"#);
    assert_eq!(first.header("x-cache"), Some("miss"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    let second = get(server.addr, "/api/fib/20").await;
    assert_eq!(json(&second)["result"], 6765);
    let cached = if cfg!(feature = "memory") {
        "hit"
    } else {
        "miss"
    };
    assert_eq!(second.header("x-cache"), Some(cached));

    let out_of_range = get(server.addr, "/api/fib/93").await;
    assert_eq!(out_of_range.status, 422);
    assert_eq!(
        json(&out_of_range)["error"],
        "n must be between 0 and 92",
        "{}",
        out_of_range.body
    );
    let not_a_number = get(server.addr, "/api/fib/ten").await;
    assert_eq!(not_a_number.status, 400);
    assert!(json(&not_a_number)["error"].is_string());
    let no_route = get(server.addr, "/api/nowhere").await;
    assert_eq!(no_route.status, 404);
    assert!(json(&no_route)["error"].is_string());

    // The app's own metrics and health answer under the prefix, and the host's routes are
    // still the host's.
    let health = get(server.addr, "/api/healthz").await;
    let backend = if cfg!(feature = "memory") {
        "memory"
    } else {
        "nop"
    };
    assert_eq!(json(&health)["backend"], backend);
    let metrics = get(server.addr, "/api/metrics").await;
    assert_eq!(
        support::metric_value(
            &metrics.body,
            r#"fibcache_requests_total{route="/fib",status="422"}"#
        ),
        Some(1.0),
        "{}",
        metrics.body
    );
    let host = get(server.addr, "/").await;
    assert_eq!(host.status, 200);
    assert!(host.body.contains("axum application"), "{}", host.body);
}

/// A bound on every wait of the in-process tests below.
const PATIENCE: Duration = Duration::from_secs(30);

/// An app answering from the `nop` backend, with default settings.
async fn nop_app() -> App {
    let cache = fibcache_server::backends()
        .unwrap()
        .create("nop", &fibcache_core::Config::default())
        .await
        .unwrap();
    App::new(cache, "nop", Settings::default())
}

/// `router` (built around `app`) served by `fibcache_server::serve` on a free port until the
/// returned sender is used or dropped.
async fn serve(
    app: &App,
    router: axum::Router,
    limits: ConnLimits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fibcache_server::serve(
        listener,
        app.clone(),
        router,
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

/// Sends `GET path` on a kept-alive connection and reads one whole answer.
async fn ask(stream: &mut TcpStream, path: &str) -> support::Response {
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            if let Ok(resp) = support::http::parse(&buf) {
                let length = resp.header("content-length").and_then(|l| l.parse().ok());
                if length == Some(resp.body.len()) {
                    return resp;
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer")
}

/// Whether the server closes `stream` within [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_axum_stack_served_by_serve_keeps_max_connections_and_shuts_down_gracefully() {
    let app = nop_app().await;
    let (entered, mut slow_started) = tokio::sync::mpsc::channel::<()>(1);
    let release = Arc::new(tokio::sync::Notify::new());
    let slow = {
        let release = release.clone();
        axum::routing::get(move || async move {
            let _ = entered.send(()).await;
            release.notified().await;
            "done"
        })
    };
    let router = axum::Router::new()
        .route("/slow", slow)
        .nest_service("/api", app.clone());
    let mut limits = ConnLimits::default();
    limits.max_connections = 2;
    let (addr, stop, server) = serve(&app, router, limits).await;

    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    for stream in [&mut first, &mut second] {
        let resp = ask(stream, "/api/fib/10").await;
        assert_eq!(resp.body, r#"{"result":55}"#);
    }
    let metrics = app.metrics().encode();
    assert_eq!(
        support::metric_value(&metrics, "fibcache_connections_open"),
        Some(2.0),
        "{metrics}"
    );
    let third = get(addr, "/api/fib/10").await;
    assert_eq!(third.status, 503, "{}", third.body);
    let metrics = app.metrics().encode();
    assert_eq!(
        support::metric_value(&metrics, "fibcache_connections_refused_total"),
        Some(1.0),
        "{metrics}"
    );

    // A request in progress when shutdown begins is answered; the idle connection is closed.
    first
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    slow_started.recv().await.expect("the slow handler ran");
    stop.send(()).unwrap();
    assert!(
        closed_by_server(&mut second).await,
        "the idle connection stayed open"
    );
    assert!(!server.is_finished(), "returned with a request in progress");
    release.notify_one();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, first.read_to_end(&mut answer))
        .await
        .expect("the slow answer, then the close")
        .unwrap();
    let answer = support::http::parse(&answer).unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "done"));
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve returned")
        .unwrap();
    let metrics = app.metrics().encode();
    assert_eq!(
        support::metric_value(&metrics, "fibcache_connections_open"),
        Some(0.0),
        "{metrics}"
    );
}

/// Counts the requests whose handler future was dropped.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_never_ends_does_not_outlive_serve_whatever_the_connection_limit() {
    // The limits past u32::MAX check that the drain waits for the connections however many
    // may be open.
    for max_connections in [8, 1 << 32, usize::MAX] {
        let app = nop_app().await;
        let dropped = Arc::new(AtomicUsize::new(0));
        let (entered, mut hanging) = tokio::sync::mpsc::channel::<()>(2);
        let hang = {
            let dropped = dropped.clone();
            axum::routing::get(move || async move {
                let _guard = Dropped(dropped);
                let _ = entered.send(()).await;
                std::future::pending::<()>().await
            })
        };
        let router = axum::Router::new()
            .route("/hang", hang)
            .nest_service("/api", app.clone());
        let mut limits = ConnLimits::default();
        limits.max_connections = max_connections;
        limits.shutdown_grace = Duration::from_millis(100);
        let (addr, stop, server) = serve(&app, router, limits).await;

        let mut http1 = TcpStream::connect(addr).await.unwrap();
        http1
            .write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut http2, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{addr}/hang"))
            .body(())
            .unwrap();
        let (_answer, _) = http2.send_request(request, true).unwrap();
        for _ in 0..2 {
            hanging.recv().await.expect("a /hang handler ran");
        }

        stop.send(()).unwrap();
        tokio::time::timeout(PATIENCE, server)
            .await
            .expect("serve returned")
            .unwrap();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "max_connections {max_connections}: a request outlived serve"
        );
        assert!(closed_by_server(&mut http1).await);
    }
}
