//! The `fibcache` binary on Redis: several servers sharing one, an outage that never changes
//! an answer, garbage under a key, start-up errors, and the settings that shape the keys.

use fibcache_server::fib::fib_fast;

use crate::eventually;
use crate::support::redis_server::RedisServer;
use crate::support::{self, get, json, Spawn};

/// A server on the Redis at `url`, with `args` (which may override both settings below, as
/// flags override environment variables: `--cache memory+redis`, `--cache-timeout 300ms`).
///
/// Its cache operations may take 2 s instead of 250 ms, so that a busy test machine does not
/// turn an expected hit into a timeout; an outage (connection refused) fails at once anyway.
pub(crate) fn server_on(url: &str, args: &[&str]) -> support::Server {
    Spawn::new()
        .env("FIB_CACHE", "redis")
        .env("FIB_CACHE_TIMEOUT", "2s")
        .env("REDIS_URL", url)
        .args(args.iter().copied())
        .start()
}

/// Waits until Redis holds `value` under `key`. The server writes a computed value behind
/// the response, so the key may appear a moment after the answer.
pub(crate) async fn stored(redis: &RedisServer, key: &str, value: &str) {
    eventually(&format!("Redis holds {key} = {value}"), 100, || async {
        redis.command(&["GET", key]) == value
    })
    .await;
}

/// `GET /fib/{n}`: asserts a 200 with the right number and returns the `x-cache` header.
pub(crate) async fn fib(server: &support::Server, n: u64) -> String {
    let resp = get(server.addr, &format!("/fib/{n}")).await;
    assert_eq!(resp.status, 200, "GET /fib/{n}: {}", resp.body);
    let expected = fib_fast(n).unwrap();
    assert_eq!(json(&resp)["result"], expected, "GET /fib/{n}");
    resp.header("x-cache")
        .unwrap_or_else(|| panic!("GET /fib/{n} has no x-cache header"))
        .to_owned()
}

#[tokio::test]
async fn two_servers_share_one_redis() {
    let redis = RedisServer::start();
    let first = server_on(&redis.url(), &[]);
    let second = server_on(&redis.url(), &[]);

    assert_eq!(fib(&first, 27).await, "miss");
    stored(&redis, "fib:27", "196418").await;
    assert_eq!(
        fib(&second, 27).await,
        "hit",
        "computed on the first, found by the second"
    );
    let hits = r#"fibcache_cache_hits_total{tier="redis"}"#;
    assert_eq!(second.metric(hits).await, 1.0);
    assert_eq!(
        second.metric("fibcache_computations_started_total").await,
        0.0
    );
    assert_eq!(
        first.metric("fibcache_computations_started_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_redis_outage_never_changes_an_answer() {
    let mut redis = RedisServer::start();
    let server = server_on(&redis.url(), &[]);
    assert_eq!(fib(&server, 20).await, "miss");
    stored(&redis, "fib:20", "6765").await;
    assert_eq!(fib(&server, 20).await, "hit");

    redis.stop();
    for n in (10..=24).chain([20, 20]) {
        // Every answer is a computed one while Redis is gone, and right.
        assert_eq!(fib(&server, n).await, "miss", "n={n}");
    }
    assert!(server.metric("fibcache_cache_errors_total").await > 0.0);

    redis.restart();
    // Without restarting the server: a value written after Redis is back is a hit again.
    eventually("a cache hit after Redis came back", 300, || async {
        fib(&server, 21).await == "hit"
    })
    .await;
    stored(&redis, "fib:21", "10946").await;
}

#[tokio::test]
async fn garbage_under_a_key_is_recomputed_and_overwritten() {
    let redis = RedisServer::start();
    let server = server_on(&redis.url(), &[]);
    assert_eq!(redis.command(&["SET", "fib:20", "garbage"]), "+OK");

    assert_eq!(fib(&server, 20).await, "miss");
    stored(&redis, "fib:20", "6765").await;
    assert_eq!(fib(&server, 20).await, "hit");
    // A key of the wrong type is garbage too.
    assert_eq!(redis.command(&["RPUSH", "fib:18", "x"]), ":1");
    assert_eq!(fib(&server, 18).await, "miss");
    stored(&redis, "fib:18", "2584").await;
    assert_eq!(fib(&server, 18).await, "hit");
}

#[tokio::test]
async fn misconfigured_redis_exits_2_with_one_line_and_no_password() {
    let redis = RedisServer::with_password("exit-test-pw");
    let cases = [
        format!("redis://:wrong-pw-9913@127.0.0.1:{}", redis.port),
        "redis://:wrong-pw-9913@127.0.0.1:notaport".to_owned(),
        format!("redis://:exit-test-pw@127.0.0.1:{}/99", redis.port),
    ];
    for url in &cases {
        let exit = Spawn::new()
            .env("FIB_CACHE", "redis")
            .env("REDIS_URL", url)
            .run_to_exit();
        assert_eq!(exit.code(), Some(2), "{url}: {exit:?}");
        let stderr = exit.stderr.trim();
        assert_eq!(
            stderr.lines().count(),
            1,
            "{url}: one line expected: {stderr}"
        );
        assert!(stderr.contains("redis"), "{url}: {stderr}");
        for output in [&exit.stdout, &exit.stderr] {
            assert!(!output.contains("wrong-pw-9913"), "{url}: leaked: {output}");
            assert!(!output.contains("exit-test-pw"), "{url}: leaked: {output}");
        }
    }
}

#[tokio::test]
async fn a_redis_down_at_start_is_a_warning_and_the_password_stays_out_of_the_log() {
    let mut redis = RedisServer::with_password("down-pw-5521");
    let url = redis.url();
    redis.stop();
    let server = server_on(&url, &[]);
    assert_eq!(fib(&server, 15).await, "miss");
    assert_eq!(
        fib(&server, 15).await,
        "miss",
        "nothing can be cached while Redis is down"
    );

    redis.restart();
    eventually("a cache hit after Redis came up", 300, || async {
        fib(&server, 16).await == "hit"
    })
    .await;
    let log = server.log();
    assert!(log.contains("redis is unreachable"), "{log}");
    assert!(
        !log.contains("down-pw-5521"),
        "the password leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn keys_carry_the_prefix_and_the_configured_ttl() {
    let redis = RedisServer::start();
    let server = server_on(
        &redis.url(),
        &["--cache-prefix", "myapp:", "--cache-ttl", "40s"],
    );
    assert_eq!(fib(&server, 15).await, "miss");

    stored(&redis, "myapp:15", "610").await;
    assert_eq!(redis.command(&["EXISTS", "fib:15"]), ":0");
    let pttl: i64 = redis.command(&["PTTL", "myapp:15"])[1..].parse().unwrap();
    assert!(pttl > 30_000 && pttl <= 40_000, "PTTL {pttl}");
    assert_eq!(fib(&server, 15).await, "hit");
}

#[tokio::test]
async fn redis_timeout_ms_is_ignored_with_one_warning() {
    let redis = RedisServer::start();
    let server = Spawn::new()
        .env("FIB_CACHE", "redis")
        .env("REDIS_URL", redis.url())
        .env("REDIS_TIMEOUT_MS", "60000")
        .args(["--cache-timeout", "2s"])
        .start();
    assert_eq!(fib(&server, 12).await, "miss");
    stored(&redis, "fib:12", "144").await;
    assert_eq!(fib(&server, 12).await, "hit");
    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("REDIS_TIMEOUT_MS"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("--cache-timeout"), "{log}");
}
