//! Hardening (issue 5): coalesced misses, cancellation, bounded work, timeouts, connection
//! limits, graceful shutdown, and garbage input. Outcomes and counters only, never wall-clock
//! assertions: every wait below is a bounded poll for an outcome.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fibcache_server::fib::fib_fast;
use support::http::send_raw;
use support::{eventually, eventually_async, get, json, Server, Spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on every wait: far above what any of them takes, so that a missing event fails the
/// test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// An `n` whose naive computation takes far longer than any test (fib(46) is ~6 * 10^9 calls,
/// seconds on any machine), yet whose estimate is within the default `--compute-timeout`, so
/// that it is computed rather than refused.
const FOREVER: u64 = 46;

/// Waits until `metric` equals `want`, for at most `limit`; returns it.
async fn wait_metric(server: &Server, metric: &str, want: f64, limit: Duration) -> f64 {
    eventually_async(&format!("{metric} = {want}"), limit, || async {
        let seen = server.metric(metric).await;
        (seen == want).then_some(seen)
    })
    .await
}

/// Waits (bounded) until `want` computations are running, and asserts it.
async fn assert_running(server: &Server, want: f64) {
    let running = "fibcache_computations_running";
    let seen = wait_metric(server, running, want, Duration::from_secs(10)).await;
    assert_eq!(seen, want, "computations running");
}

/// Sends a request head and leaves the connection open, waiting.
async fn start_request(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// CPU seconds the process has used so far (utime + stime from /proc).
/// How many threads of process `pid` are running or runnable now (state `R` in
/// `/proc/<pid>/task/<tid>/stat`): a computation keeps one so; an idle server has none, or
/// one only for the instant it wakes up.
fn threads_running(pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // The state follows the command name, which is in parentheses.
            let state = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3));
            state == Some("R")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_cold_requests_compute_once() {
    let server = Server::start(&[]);
    let n = 36;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            get(addr, &format!("/fib/{n}")).await
        }));
    }
    for task in tasks {
        let resp = task.await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(json(&resp)["result"], fib_fast(n).unwrap());
    }
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"fibcache_computations_finished_total{outcome="ok"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_computation_whose_client_left_is_cancelled_and_stops_burning_cpu() {
    let server = Server::start(&[]);
    let stream = start_request(server.addr, &format!("/fib/{FOREVER}")).await;
    assert_running(&server, 1.0).await;
    // The computation's thread is seen running, so that seeing none later means something.
    let pid = server.pid();
    eventually(
        "the computation's thread to be seen running",
        PATIENCE,
        || (threads_running(pid) > 0).then_some(()),
    );
    drop(stream);
    let cancelled = r#"fibcache_computations_finished_total{outcome="cancelled"}"#;
    assert_eq!(wait_metric(&server, cancelled, 1.0, PATIENCE).await, 1.0);
    assert_eq!(server.metric("fibcache_computations_running").await, 0.0);
    // A computation still burning would keep one thread running at every look.
    eventually("every thread of the server to be idle", PATIENCE, || {
        (threads_running(pid) == 0).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_computation_stays_alive_while_one_of_its_waiters_remains() {
    let server = Server::start(&["--compute-timeout", "60s"]);
    let n = 41;
    let first = start_request(server.addr, &format!("/fib/{n}")).await;
    assert_running(&server, 1.0).await;
    let second = {
        let addr = server.addr;
        tokio::spawn(async move { get(addr, &format!("/fib/{n}")).await })
    };
    // A miss is counted once its request has joined the flight: wait for the second's.
    let misses = "fibcache_cache_misses_total";
    assert_eq!(
        wait_metric(&server, misses, 2.0, Duration::from_secs(10)).await,
        2.0,
        "the second request joined"
    );
    drop(first);
    let resp = second.await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], fib_fast(n).unwrap());
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"fibcache_computations_finished_total{outcome="cancelled"}"#)
            .await,
        0.0
    );
}

#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread")]
async fn with_every_slot_busy_a_cold_request_gets_503_and_hits_still_answer() {
    let server = Server::start(&["--max-computes", "1"]);
    // Cache one value first.
    assert_eq!(get(server.addr, "/fib/20").await.status, 200);
    let _long = start_request(server.addr, &format!("/fib/{FOREVER}")).await;
    assert_running(&server, 1.0).await;
    let cold = get(server.addr, "/fib/30").await;
    assert_eq!(cold.status, 503, "{}", cold.body);
    assert_eq!(cold.header("retry-after"), Some("1"));
    assert!(json(&cold)["error"].as_str().is_some());
    let hit = get(server.addr, "/fib/20").await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-cache"), Some("hit"));
    assert_eq!(json(&hit)["result"], 6765);
    assert_eq!(server.metric("fibcache_overloaded_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_computation_past_its_time_limit_is_504_and_counted() {
    let server = Server::start(&["--compute-timeout", "300ms"]);
    // Refused at once when its estimate says it cannot finish in time, else cut at the limit
    // (the engine's unit tests pin each path on a paused clock).
    let resp = get(server.addr, &format!("/fib/{FOREVER}")).await;
    assert_eq!(resp.status, 504, "{}", resp.body);
    assert!(json(&resp)["error"]
        .as_str()
        .unwrap()
        .contains("longer than"));
    let timeouts = r#"fibcache_computations_finished_total{outcome="timeout"}"#;
    let refused = "fibcache_computations_refused_total";
    assert_eq!(
        server.metric(timeouts).await + server.metric(refused).await,
        1.0
    );
    // The slot comes back: the computation really stopped.
    assert_running(&server, 0.0).await;
    assert_eq!(json(&get(server.addr, "/fib/10").await)["result"], 55);
}

/// Reads until the server closes the connection (or 30 s pass); returns what was read.
async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf)).await;
    match read {
        Ok(_) => Some(buf),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stalls_mid_head_is_dropped_while_others_are_served() {
    let server = Server::start(&["--header-timeout", "1s"]);
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /fib/5 HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    // Others are served meanwhile.
    for _ in 0..5 {
        assert_eq!(get(server.addr, "/fib/12").await.status, 200);
    }
    let closed = read_until_closed(&mut stalled).await;
    let bytes = closed.expect("the stalled connection was closed by the server");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "no answer for an incomplete head, got {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_connects_and_sends_nothing_is_dropped() {
    let server = Server::start(&["--header-timeout", "1s"]);
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(server.addr, "/fib/3").await.status, 200);
    let bytes = read_until_closed(&mut silent)
        .await
        .expect("the silent connection was closed by the server");
    assert!(bytes.is_empty(), "{bytes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_serves_requests_in_turn_then_closes_the_idle_connection() {
    let server = Server::start(&["--header-timeout", "1s"]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for (n, body) in [(6, r#"{"result":8}"#), (7, r#"{"result":13}"#)] {
        let head = format!("GET /fib/{n} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // Read exactly this answer: the connection stays open for the next request.
        let mut answer = Vec::new();
        while !String::from_utf8_lossy(&answer).ends_with(body) {
            let mut chunk = [0u8; 512];
            let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
                .await
                .expect("an answer on the same connection")
                .unwrap();
            assert!(read > 0, "closed after {answer:?}, before answering n={n}");
            answer.extend_from_slice(&chunk[..read]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
        assert!(!text.contains("connection: close"), "{text:?}");
    }
    let rest = read_until_closed(&mut stream)
        .await
        .expect("the idle connection was closed by the server");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_announces_a_body_is_answered_and_its_connection_closed() {
    let server = Server::start(&["--header-timeout", "30s"]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Ten bytes announced, three sent: a client that would hold the connection for the rest.
    stream
        .write_all(b"GET /fib/9 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let bytes = read_until_closed(&mut stream)
        .await
        .expect("the server closed the connection");
    let resp = support::http::parse(&bytes).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], 34);
    assert_eq!(resp.header("connection"), Some("close"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_open_connections_gauge_comes_back_down() {
    let server = Server::start(&[]);
    let open = "fibcache_connections_open";
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /fib/4 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.unwrap();
        clients.push(stream);
    }
    // Five kept alive, plus the scrape itself.
    assert_eq!(
        wait_metric(&server, open, 6.0, Duration::from_secs(10)).await,
        6.0
    );
    drop(clients);
    assert_eq!(
        wait_metric(&server, open, 1.0, Duration::from_secs(10)).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_computation_never_starts_once_every_waiter_has_left_the_queue() {
    let server = Server::start(&["--max-computes", "1", "--queue-wait", "10m"]);
    let long = start_request(server.addr, &format!("/fib/{FOREVER}")).await;
    assert_running(&server, 1.0).await;
    // A second cold n waits for the only slot; its client leaves while it waits.
    let queued = start_request(server.addr, "/fib/30").await;
    let misses = "fibcache_cache_misses_total";
    assert_eq!(
        wait_metric(&server, misses, 2.0, Duration::from_secs(10)).await,
        2.0
    );
    drop(queued);
    // The queued flight is cancelled while it waits, and the running one when its client
    // leaves: the slot comes free, and nothing else may take it.
    drop(long);
    let cancelled = r#"fibcache_computations_finished_total{outcome="cancelled"}"#;
    assert_eq!(
        wait_metric(&server, cancelled, 1.0, Duration::from_secs(10)).await,
        1.0
    );
    assert_running(&server, 0.0).await;
    // A request that needs the slot gets it at once, so nothing is queued behind it.
    assert_eq!(json(&get(server.addr, "/fib/11").await)["result"], 89);
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        2.0,
        "the long and the /fib/11 computations, never the abandoned /fib/30"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_connections_is_answered_503_not_left_hanging() {
    let server = Server::start(&["--max-connections", "8", "--header-timeout", "30s"]);
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Once the server has accepted all eight, the next connection is refused with an answer.
    let request = b"GET /fib/5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    eventually_async("the eight slots to fill", PATIENCE, || async {
        let resp = send_raw(server.addr, request).await.expect("an answer");
        (resp.status == 503).then_some(())
    })
    .await;
    for _ in 0..20 {
        let resp = send_raw(server.addr, request)
            .await
            .expect("a refused connection still gets an answer");
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("retry-after"), Some("1"));
        assert!(json(&resp)["error"]
            .as_str()
            .unwrap()
            .contains("connections"));
    }
    drop(idle);
    // The slots come back as soon as the idle clients leave.
    let resp = eventually_async("a slot to come back", PATIENCE, || async {
        let resp = send_raw(server.addr, request).await.expect("an answer");
        (resp.status != 503).then_some(resp)
    })
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp)["result"], 5);
    assert!(server.metric("fibcache_connections_refused_total").await >= 21.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_running_computation_answer_then_exits_0() {
    let mut server = Server::start(&["--shutdown-grace", "60s", "--compute-timeout", "60s"]);
    let n = 42;
    let request = {
        let addr = server.addr;
        tokio::spawn(async move { get(addr, &format!("/fib/{n}")).await })
    };
    assert_running(&server, 1.0).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM", Duration::from_secs(90));
        (status, server.log())
    });
    let resp = request.await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(json(&resp)["result"], fib_fast(n).unwrap());
    let (status, log) = status.await.unwrap();
    let status = status.expect("exited within the grace period");
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    assert!(log.contains("shutdown requested"), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn during_the_shutdown_delay_readyz_is_503_while_fib_is_served_then_it_exits_0() {
    let mut server = Server::start(&["--shutdown-delay", "2s"]);
    let addr = server.addr;
    assert_eq!(get(addr, "/readyz").await.status, 200);
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM", Duration::from_secs(30));
        (status, server.log())
    });
    // Each probe is a new connection: the listener still accepts during the delay.
    let ready = eventually_async("/readyz to stop answering 200", PATIENCE, || async {
        let ready = get(addr, "/readyz").await;
        (ready.status != 200).then_some(ready)
    })
    .await;
    assert_eq!(
        ready.status, 503,
        "not ready once SIGTERM arrived: {}",
        ready.body
    );
    assert!(ready.header("retry-after").is_some());
    assert!(json(&ready)["error"].is_string(), "{}", ready.body);
    let fib = get(addr, "/fib/5").await;
    assert_eq!(
        fib.status, 200,
        "still served during the delay: {}",
        fib.body
    );
    assert_eq!(json(&fib)["result"], 5);
    assert_eq!(get(addr, "/livez").await.status, 200);

    let (status, log) = exit.await.unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_on_an_idle_server_exits_0_and_stops_listening() {
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let status = server.signal_and_wait("INT", Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

/// A small deterministic generator, so a failing case can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn acceptable(status: u16) -> bool {
    status < 500 || status == 503 || status == 504
}

#[tokio::test(flavor = "multi_thread")]
async fn random_paths_never_get_a_5xx_or_break_the_server() {
    let server = Spawn::new()
        .args(["--compute-timeout", "2s", "--max-n", "40"])
        .start();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for case in 0..300u32 {
        let seed = rng.0;
        let raw = rng.bytes(40);
        // Prefixing /fib/ half of the time exercises the parser, not just the router.
        let prefix: &[u8] = if case.is_multiple_of(2) {
            b"/fib/"
        } else {
            b"/"
        };
        let path: String = prefix
            .iter()
            .chain(raw.iter())
            .map(|&b| {
                if b.is_ascii_graphic() && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        // A whole request head always gets an answer: a connection closed without one (a
        // handler that panicked, say) fails here.
        let resp = send_raw(server.addr, head.as_bytes())
            .await
            .unwrap_or_else(|err| panic!("seed {seed:#x}: {path}: no answer: {err}"));
        assert!(
            acceptable(resp.status),
            "seed {seed:#x}: {path} -> {}",
            resp.status
        );
        // A request line hyper cannot parse (characters a URI may not hold) is refused by
        // hyper itself with an empty 400; everything that reaches the router gets JSON.
        let hyper_reject = resp.status == 400 && resp.body.is_empty();
        if resp.status != 200 && !hyper_reject {
            assert!(json(&resp)["error"].is_string(), "seed {seed:#x}: {path}");
        }
    }
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_bytes_as_whole_requests_never_get_a_5xx_or_break_the_server() {
    let server = Spawn::new().args(["--header-timeout", "1s"]).start();
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    // All cases at once: the ones without an end of head each wait out the header timeout.
    let mut cases = Vec::new();
    for i in 0..300 {
        let seed = rng.0;
        let (bytes, whole_head) = if i < 200 {
            let mut bytes = rng.bytes(512);
            // Close the head half of the time, so the server must answer rather than wait.
            let closed = rng.next().is_multiple_of(2);
            // A head that is only line ends is skipped by the parser, which then waits.
            let whole = closed && bytes.first().is_some_and(|b| *b != b'\r' && *b != b'\n');
            if closed {
                bytes.extend_from_slice(b"\r\n\r\n");
            }
            (bytes, whole)
        } else {
            // Garbage headers after a valid request line.
            let mut bytes = b"GET /fib/7 HTTP/1.1\r\n".to_vec();
            bytes.extend(rng.bytes(256));
            bytes.extend_from_slice(b"\r\n\r\n");
            (bytes, true)
        };
        let addr = server.addr;
        cases.push(tokio::spawn(async move {
            (seed, whole_head, send_raw(addr, &bytes).await)
        }));
    }
    let mut answered = 0;
    for case in cases {
        match case.await.unwrap() {
            (seed, _, Ok(resp)) => {
                answered += 1;
                assert!(
                    acceptable(resp.status),
                    "seed {seed:#x}: status {}",
                    resp.status
                );
            }
            // Without a whole head the server may close without an answer; with one it may
            // not (a connection dropped by a panicking handler ends like that).
            (seed, true, Err(err)) => panic!("seed {seed:#x}: a whole head got no answer: {err}"),
            (_, false, Err(_)) => {}
        }
    }
    assert!(answered >= 100, "only {answered} of 300 answered");
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    assert_eq!(json(&get(server.addr, "/fib/7").await)["result"], 13);
}

/// Admission by cost: two requests whose computation could never finish in time (`/fib/92`
/// and `/fib/91`) are answered 504 at once and take no slot, so cold computations of small
/// `n` go on (they used to get 503 for the whole `--compute-timeout`).
#[tokio::test(flavor = "multi_thread")]
async fn two_hopeless_requests_deny_no_cold_computation_of_a_small_n() {
    let server = Server::start(&["--max-computes", "2"]);
    let hopeless: Vec<_> = [92u64, 91]
        .into_iter()
        .map(|n| {
            let addr = server.addr;
            tokio::spawn(async move { get(addr, &format!("/fib/{n}")).await })
        })
        .collect();
    let mut answered = 0;
    for n in 10..=25 {
        let resp = get(server.addr, &format!("/fib/{n}")).await;
        if resp.status == 200 && json(&resp)["result"] == fib_fast(n).unwrap() {
            answered += 1;
        }
    }
    eprintln!(
        "admission: {answered} of 16 cold /fib/10..25 answered 200 beside /fib/92 and /fib/91"
    );
    assert_eq!(answered, 16);
    for resp in hopeless {
        let resp = resp.await.unwrap();
        assert_eq!(resp.status, 504, "{}", resp.body);
        assert!(json(&resp)["error"].as_str().unwrap().contains("not tried"));
    }
    assert_eq!(
        server.metric("fibcache_computations_refused_total").await,
        2.0
    );
    assert_eq!(
        server.metric("fibcache_computations_started_total").await,
        16.0
    );
}
