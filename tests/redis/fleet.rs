//! Cluster-wide coalescing: instances sharing one Redis compute each cold `n` once between
//! them, through a claim in Redis; a dead winner is taken over, a paused Redis makes each
//! instance compute for itself, and every answer is right whatever happens.

use std::time::Duration;

use fibcache_server::fib::fib_fast;

use crate::eventually;
use crate::server::server_on;
use crate::support::redis_server::RedisServer;
use crate::support::{self, get, json};

/// Slow enough (about a second here) that every request of a test arrives while it computes.
const SLOW_N: u64 = 42;

/// `GET /fib/{n}` on `server` from a task of its own; the task yields the response.
pub(crate) fn ask(server: &support::Server, n: u64) -> tokio::task::JoinHandle<support::Response> {
    let addr = server.addr;
    tokio::spawn(async move { get(addr, &format!("/fib/{n}")).await })
}

/// Asserts that every one of `asks` is answered 200 with the right `n`-th number.
pub(crate) async fn all_right(asks: Vec<tokio::task::JoinHandle<support::Response>>, n: u64) {
    let expected = fib_fast(n).unwrap();
    for ask in asks {
        let resp = ask.await.unwrap();
        assert_eq!(resp.status, 200, "GET /fib/{n}: {}", resp.body);
        assert_eq!(json(&resp)["result"], expected, "GET /fib/{n}");
    }
}

/// The sum of one sample over `servers`.
pub(crate) async fn total(servers: &[&support::Server], sample: &str) -> f64 {
    let mut sum = 0.0;
    for server in servers {
        sum += server.metric(sample).await;
    }
    sum
}

pub(crate) fn claims(outcome: &str) -> String {
    format!(r#"fibcache_claims_total{{outcome="{outcome}"}}"#)
}

pub(crate) const STARTED: &str = "fibcache_computations_started_total";
const RUNNING: &str = "fibcache_computations_running";

/// Waits until `server` is computing.
async fn computing(server: &support::Server) {
    eventually("the first instance computes", 300, || async {
        server.metric(RUNNING).await == 1.0
    })
    .await;
}

/// Waits until each of `servers` has a request waiting for `n` (counted as a miss).
async fn waiting(servers: &[&support::Server]) {
    for server in servers {
        eventually("a request waits", 300, || async {
            server.metric("fibcache_cache_misses_total").await >= 1.0
        })
        .await;
    }
}

#[tokio::test]
async fn four_instances_compute_a_cold_n_once_for_64_concurrent_requests() {
    let redis = RedisServer::start();
    let fleet: Vec<support::Server> = (0..4).map(|_| server_on(&redis.url(), &[])).collect();
    let n = 40;
    let asks: Vec<_> = (0..16)
        .flat_map(|_| fleet.iter().map(|server| ask(server, n)))
        .collect();
    all_right(asks, n).await;

    let fleet: Vec<&support::Server> = fleet.iter().collect();
    assert_eq!(total(&fleet, STARTED).await, 1.0, "one computation in all");
    assert_eq!(total(&fleet, &claims("won")).await, 1.0);
    assert_eq!(total(&fleet, &claims("took_over")).await, 0.0);
    assert_eq!(total(&fleet, &claims("error")).await, 0.0);
    assert_eq!(total(&fleet, &claims("unsupported")).await, 0.0);
    assert_eq!(redis.command(&["EXISTS", "fib:claim:40"]), ":0", "released");
}

#[tokio::test]
async fn without_cluster_coalescing_each_instance_computes() {
    let redis = RedisServer::start();
    let fleet: Vec<support::Server> = (0..3)
        .map(|_| server_on(&redis.url(), &["--cluster-coalescing", "off"]))
        .collect();
    let n = 40;
    let asks: Vec<_> = (0..4)
        .flat_map(|_| fleet.iter().map(|server| ask(server, n)))
        .collect();
    all_right(asks, n).await;

    let fleet: Vec<&support::Server> = fleet.iter().collect();
    assert_eq!(
        total(&fleet, STARTED).await,
        3.0,
        "one computation per instance"
    );
    for outcome in ["won", "waited", "took_over", "unsupported", "error"] {
        assert_eq!(total(&fleet, &claims(outcome)).await, 0.0, "{outcome}");
    }
}

#[tokio::test]
async fn when_the_winner_is_killed_another_instance_takes_over() {
    let redis = RedisServer::start();
    let mut winner = server_on(&redis.url(), &[]);
    let (b, c) = (
        server_on(&redis.url(), &["--cache", "memory+redis"]),
        server_on(&redis.url(), &[]),
    );
    let doomed = ask(&winner, SLOW_N);
    computing(&winner).await;
    let asks: Vec<_> = (0..8)
        .flat_map(|_| [ask(&b, SLOW_N), ask(&c, SLOW_N)])
        .collect();
    waiting(&[&b, &c]).await;

    assert!(winner
        .signal_and_wait("KILL", Duration::from_secs(10))
        .is_some());
    assert!(
        doomed.await.is_err(),
        "the killed instance's client got no answer"
    );
    all_right(asks, SLOW_N).await;

    assert_eq!(total(&[&b, &c], STARTED).await, 1.0);
    assert_eq!(total(&[&b, &c], &claims("took_over")).await, 1.0);
    assert_eq!(total(&[&b, &c], &claims("waited")).await, 1.0);
    assert_eq!(total(&[&b, &c], &claims("error")).await, 0.0);
}

#[tokio::test]
async fn a_paused_redis_during_a_claim_never_costs_an_answer() {
    let redis = RedisServer::start();
    // Cache calls give up after 300 ms (not the 2 s of `server_on`): a paused Redis is felt.
    let quick = ["--cache-timeout", "300ms"];
    let (a, b) = (
        server_on(&redis.url(), &quick),
        server_on(&redis.url(), &quick),
    );
    let first = ask(&a, SLOW_N);
    computing(&a).await;
    assert_eq!(
        redis.command(&["EXISTS", &format!("fib:claim:{SLOW_N}")]),
        ":1"
    );

    redis.signal("STOP");
    let asks: Vec<_> = (0..4)
        .flat_map(|_| [ask(&a, SLOW_N), ask(&b, SLOW_N)])
        .collect();
    let other = ask(&b, SLOW_N - 1);
    all_right(asks, SLOW_N).await;
    all_right(vec![first], SLOW_N).await;
    all_right(vec![other], SLOW_N - 1).await;
    redis.signal("CONT");

    assert_eq!(a.metric(&claims("won")).await, 1.0);
    assert_eq!(
        b.metric(&claims("error")).await,
        2.0,
        "b computed both numbers for itself"
    );
    assert_eq!(total(&[&a, &b], STARTED).await, 3.0);
}

#[tokio::test]
async fn when_every_client_leaves_the_claim_is_released_and_waiters_stop() {
    let redis = RedisServer::start();
    let (a, b) = (server_on(&redis.url(), &[]), server_on(&redis.url(), &[]));
    let claim_key = format!("fib:claim:{SLOW_N}");
    let leaving_a = ask(&a, SLOW_N);
    computing(&a).await;
    let leaving_b = ask(&b, SLOW_N);
    waiting(&[&b]).await;
    assert_eq!(redis.command(&["EXISTS", &claim_key]), ":1");

    // Both clients hang up: a stops computing and releases, b stops waiting.
    leaving_b.abort();
    leaving_a.abort();
    eventually("a's computation is cancelled", 300, || async {
        a.metric(r#"fibcache_computations_finished_total{outcome="cancelled"}"#)
            .await
            == 1.0
    })
    .await;
    eventually("the claim is released", 100, || async {
        redis.command(&["EXISTS", &claim_key]) == ":0"
    })
    .await;
    // b stops waiting (had it kept waiting, it would claim the released key and compute).
    eventually("b stops waiting", 100, || async {
        b.metric(r#"fibcache_claims_total{outcome="cancelled"}"#)
            .await
            == 1.0
    })
    .await;
    assert_eq!(redis.command(&["EXISTS", &claim_key]), ":0");
    assert_eq!(b.metric(STARTED).await, 0.0);
    assert_eq!(b.metric(RUNNING).await, 0.0);
}

/// Someone else's key at a claim's name never costs a 5xx, nor a wait: a key without a
/// lifetime, one with a lifetime far above a claim's, and one of another type (a list) are
/// each treated as no claim; the instance computes and counts it as `foreign`.
#[tokio::test]
async fn keys_planted_at_claim_names_are_no_claims_and_are_counted() {
    let redis = RedisServer::start();
    let server = server_on(&redis.url(), &[]);
    redis.command(&["SET", "fib:claim:37", "x"]);
    redis.command(&["SET", "fib:claim:36", "x", "PX", "999999999"]);
    redis.command(&["RPUSH", "fib:claim:35", "a", "b"]);
    for (n, planted) in [(37, "no lifetime"), (36, "PX 999999999"), (35, "a list")] {
        let asked = std::time::Instant::now();
        let resp = get(server.addr, &format!("/fib/{n}")).await;
        // A figure for the record, not an assertion: timing is for benches.
        eprintln!(
            "planted claim ({planted}): {} in {:?}",
            resp.status,
            asked.elapsed()
        );
        assert_eq!(resp.status, 200, "{planted}: {}", resp.body);
        assert_eq!(json(&resp)["result"], fib_fast(n).unwrap(), "{planted}");
    }
    assert_eq!(server.metric(&claims("foreign")).await, 3.0);
    assert_eq!(server.metric(STARTED).await, 3.0);
    assert_eq!(
        redis.command(&["TYPE", "fib:claim:35"]),
        "+list",
        "left as it was"
    );
}
