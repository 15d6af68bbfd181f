//! The cache is never a reason for a wrong answer or an error: a backend that returns garbage,
//! fails, or hangs makes the request compute, and a garbage value is overwritten.
//!
//! These drive `fibcache_server::run` in-process on a free port with hand-made misbehaving
//! caches, over real sockets.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fibcache_core::{async_trait, Cache, Error, Result};
use fibcache_server::{run, App, ConnLimits, Settings};
use support::{eventually_async, get, json};

/// A bound on every wait: far above what any of them takes, so that a missing event fails the
/// test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A map that can be told to misbehave.
#[derive(Default)]
struct Rigged {
    values: Mutex<HashMap<String, String>>,
    mode: Mutex<Mode>,
    writes: Mutex<Vec<(String, String)>>,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Mode {
    #[default]
    Honest,
    Failing,
    Hanging,
}

#[async_trait]
impl Cache for Rigged {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Failing => Err(Error::backend("rigged", "connection refused")),
            Mode::Hanging => std::future::pending().await,
            Mode::Honest => Ok(self.values.lock().unwrap().get(key).cloned()),
        }
    }

    async fn set(&self, key: &str, value: &str, _ttl: Duration) -> Result<()> {
        self.writes
            .lock()
            .unwrap()
            .push((key.to_owned(), value.to_owned()));
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Failing => Err(Error::backend("rigged", "connection refused")),
            Mode::Hanging => std::future::pending().await,
            Mode::Honest => {
                self.values
                    .lock()
                    .unwrap()
                    .insert(key.to_owned(), value.to_owned());
                Ok(())
            }
        }
    }
}

struct InProcess {
    addr: std::net::SocketAddr,
    app: App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(cache: Arc<Rigged>) -> InProcess {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Settings::builder()
        .cache_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let app = App::new(cache, "rigged", settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, app.clone(), ConnLimits::default(), async {
        let _ = stopped.await;
    }));
    InProcess {
        addr,
        app,
        stop: Some(stop),
        task,
    }
}

impl InProcess {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }

    fn counter(&self, name: &str) -> u64 {
        let text = self.app.metrics().encode();
        support::metric_value(&text, name).unwrap() as u64
    }

    fn errors(&self) -> u64 {
        self.counter("fibcache_cache_errors_total")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_in_the_cache_gives_the_right_number_and_is_overwritten() {
    let cache = Arc::new(Rigged::default());
    for garbage in [
        "garbage",
        "",
        "-55",
        "55.0",
        " 55",
        "99999999999999999999",
        "0x37",
    ] {
        cache
            .values
            .lock()
            .unwrap()
            .insert("fib:10".to_owned(), garbage.to_owned());
        let server = serve(cache.clone()).await;
        let resp = get(server.addr, "/fib/10").await;
        assert_eq!(resp.status, 200, "garbage {garbage:?}");
        assert_eq!(json(&resp)["result"], 55, "garbage {garbage:?}");
        assert_eq!(resp.header("x-cache"), Some("miss"));
        assert_eq!(
            server.errors(),
            1,
            "garbage {garbage:?} is counted as a cache error"
        );
        // The write happens right after the answer.
        eventually_async("the garbage to be overwritten", PATIENCE, || async {
            let values = cache.values.lock().unwrap();
            (values.get("fib:10").map(String::as_str) == Some("55")).then_some(())
        })
        .await;
        let again = get(server.addr, "/fib/10").await;
        assert_eq!(again.header("x-cache"), Some("hit"));
        assert_eq!(json(&again)["result"], 55);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cache_costs_a_computation_not_an_error() {
    let cache = Arc::new(Rigged::default());
    *cache.mode.lock().unwrap() = Mode::Failing;
    let server = serve(cache.clone()).await;
    for _ in 0..3 {
        let resp = get(server.addr, "/fib/20").await;
        assert_eq!(resp.status, 200);
        assert_eq!(json(&resp)["result"], 6765);
    }
    // Each request: one failed read; each computation: one failed write. (A request that
    // arrives while the previous computation is still writing joins it instead of computing.)
    let started = server.counter("fibcache_computations_started_total");
    assert!((1..=3).contains(&started), "{started}");
    eventually_async("a failed read and write counted each", PATIENCE, || async {
        (server.errors() == 3 + started).then_some(())
    })
    .await;
    // Back to health: the next computation's write lands and then hits.
    *cache.mode.lock().unwrap() = Mode::Honest;
    assert_eq!(
        get(server.addr, "/fib/20").await.header("x-cache"),
        Some("miss")
    );
    eventually_async("the computation's write", PATIENCE, || async {
        let values = cache.values.lock().unwrap();
        values.contains_key("fib:20").then_some(())
    })
    .await;
    assert_eq!(
        get(server.addr, "/fib/20").await.header("x-cache"),
        Some("hit")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_cache_is_waited_for_a_bounded_time_then_computed_around() {
    let cache = Arc::new(Rigged::default());
    *cache.mode.lock().unwrap() = Mode::Hanging;
    let server = serve(cache.clone()).await;
    let resp = get(server.addr, "/fib/15").await;
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], 610);
    eventually_async(
        "a timed-out read and a timed-out write",
        PATIENCE,
        || async { (server.errors() == 2).then_some(()) },
    )
    .await;
    server.stop().await;
}
