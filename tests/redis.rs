//! The `redis` backend against a real `redis-server` that each test starts on a free loopback
//! port of its own (and may stop and restart): the `Cache` contract, start-up errors, outages;
//! then the `fibcache` binary itself sharing, losing and regaining a Redis (`redis/server.rs`);
//! values longer than any valid one, planted in Redis (`redis/oversize.rs`); a memory tier in
//! front of Redis (`redis/tiers.rs`); instances that compute a cold `n` once between them
//! (`redis/fleet.rs`), also through the `rediscache` plugin with `--features dynamic`
//! (`redis/plugin_fleet.rs`); and a Redis Cluster of three nodes started by each test, in and
//! out of process (`redis/cluster.rs`).
//!
//! Run with `cargo test --features redis --test redis`; `redis-server` must be installed
//! (Debian: `apt-get install redis-server`, which brings `redis-cli` too). A missing one fails
//! the tests, it never skips them.
#![cfg(feature = "redis")]

mod support;

#[path = "redis/cluster.rs"]
mod cluster;
#[path = "redis/embedded.rs"]
mod embedded;
#[path = "redis/fleet.rs"]
mod fleet;
#[path = "redis/oversize.rs"]
mod oversize;
#[cfg(feature = "dynamic")]
#[path = "redis/plugin_fleet.rs"]
mod plugin_fleet;
#[path = "redis/server.rs"]
mod server;
#[path = "redis/tiers.rs"]
mod tiers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fibcache_backends as _;
use fibcache_backends::redis::{RedisCache, RedisConfig};
use fibcache_core::{Cache, Config, Error, ErrorKind, Registry, Result};
use support::redis_server::RedisServer;

/// A config that reaches the Redis at `url` and nothing from the developer's environment.
///
/// Operations may take 5 s rather than the default 250 ms: these tests check outcomes on a
/// machine that may be busy compiling, and the one test about timeouts sets its own.
fn config_for(url: &str) -> Config {
    Config::default()
        .with_op_timeout(Duration::from_secs(5))
        .with_var("REDIS_URL", url)
        .with_var("REDIS_CLUSTER_NODES", "")
        .with_var("REDIS_ADDR", "")
        .with_var("REDIS_PASSWORD", "")
        .with_var("REDIS_DB", "")
}

/// Creates the `redis` backend by name, as the server does.
async fn create(config: &Config) -> Result<Arc<dyn Cache>> {
    let registry = Registry::new().expect("no duplicate backends");
    registry
        .get("redis")
        .expect("redis is compiled in")
        .create(config)
        .await
}

/// `fut`, which must finish: a backend that hangs fails the test instead of stalling it. The
/// limit is a guard against hanging, far above any legitimate wait, not a speed requirement.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return: a cache operation must never hang"))
}

/// Waits until `ok` holds, for at most `attempts` times 100 ms (the shared
/// `support::eventually_async`, with a condition rather than a found value).
async fn eventually<F, Fut>(what: &str, attempts: u32, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let limit = Duration::from_millis(100) * attempts;
    support::eventually_async(what, limit, || {
        let holds = ok();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// The error of a creation that must fail.
async fn create_err(config: &Config) -> Error {
    match create(config).await {
        Ok(_) => panic!("creating the redis backend succeeded; it must fail"),
        Err(err) => err,
    }
}

/// Asserts `err` is a config error of the redis backend and that `secret` appears nowhere in
/// its `Display`, `Debug` or source chain; returns its message.
fn config_message(err: &Error, secret: &str) -> String {
    let mut text = format!("{err} | {err:?} | {err:#?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    assert!(!text.contains(secret), "the password leaked: {text}");
    assert!(err.is_config(), "expected a config error, got {err:?}");
    assert_eq!(err.backend_name(), "redis");
    err.message()
        .expect("a config error has a message")
        .to_owned()
}

/// Whether `result` is the failure of a Redis that is down or does not answer.
fn is_unavailable(result: &Result<impl std::fmt::Debug>) -> bool {
    matches!(result, Err(err) if err.is_unavailable() && err.backend_name() == "redis")
}

/// Whether `result` is the failure of a Redis that answered with an error.
fn is_backend_error(result: &Result<impl std::fmt::Debug>) -> bool {
    matches!(result, Err(err) if err.kind() == ErrorKind::Backend && err.backend_name() == "redis")
}

#[tokio::test]
async fn the_conformance_suite_passes_against_redis() {
    let redis = RedisServer::start();
    assert!(Registry::new().unwrap().contains("redis"));
    let cache = create(&config_for(&redis.url())).await.unwrap();
    assert!(cache.expiry().is_some(), "redis offers Expiry");
    assert!(cache.claims().is_some(), "redis offers Claims");
    support::conformance::run(cache, "conformance:").await;
}

#[tokio::test]
async fn claims_are_plain_keys_checked_by_scripts_that_redis_keeps() {
    let redis = RedisServer::start();
    let cache = create(&config_for(&redis.url())).await.unwrap();
    let claims = cache.claims().unwrap();
    let calls = |command: &str| -> u64 {
        let stats = redis.command(&["INFO", "commandstats"]);
        let line = stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")));
        line.map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };

    // The key is the caller's, holding the token, with the lifetime in whole milliseconds.
    let ttl = Duration::from_micros(2_000_500);
    assert!(claims.claim("fib:claim:30", "t-1", ttl).await.unwrap());
    assert_eq!(redis.command(&["GET", "fib:claim:30"]), "t-1");
    let pttl: i64 = redis.command(&["PTTL", "fib:claim:30"])[1..]
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 2_001, "PTTL {pttl}");

    // A script Redis does not have yet is sent once by its source, then called by its hash.
    assert_eq!(calls("eval"), 0);
    assert!(claims.renew("fib:claim:30", "t-1", ttl).await.unwrap());
    assert_eq!(calls("eval"), 1);
    let by_hash = calls("evalsha");
    assert!(claims.renew("fib:claim:30", "t-1", ttl).await.unwrap());
    assert_eq!((calls("evalsha"), calls("eval")), (by_hash + 1, 1));
    // Once Redis forgets its scripts (a restart, `SCRIPT FLUSH`), the source is sent again.
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]), "+OK");
    assert!(claims.release("fib:claim:30", "t-1").await.unwrap());
    assert_eq!(redis.command(&["EXISTS", "fib:claim:30"]), ":0");
    assert_eq!(calls("eval"), 2);

    // `remaining` is `PTTL`: none for a key without a lifetime.
    assert_eq!(redis.command(&["SET", "fib:forever", "1"]), "+OK");
    let expiry = cache.expiry().unwrap();
    assert_eq!(expiry.remaining("fib:forever").await.unwrap(), None);
    // A claim is refused, not overwritten, whatever holds the key.
    assert!(!claims.claim("fib:forever", "t-2", ttl).await.unwrap());
    assert_eq!(redis.command(&["GET", "fib:forever"]), "1");
    // Errors are classified like every operation's.
    assert_eq!(redis.command(&["RPUSH", "fib:list", "x"]), ":1");
    let wrong_type = claims.renew("fib:list", "t-1", ttl).await;
    assert!(is_backend_error(&wrong_type), "{wrong_type:?}");
    drop(redis);
    let down = bounded("claim", claims.claim("fib:claim:31", "t-1", ttl)).await;
    assert!(is_unavailable(&down), "{down:?}");
}

#[tokio::test]
async fn keys_are_stored_as_given_with_their_ttl() {
    let redis = RedisServer::start();
    let cache = create(&config_for(&redis.url())).await.unwrap();

    cache
        .set("fib:7", "13", Duration::from_secs(15))
        .await
        .unwrap();
    // The server builds `<prefix><n>` itself; the backend must not prefix it again.
    assert_eq!(redis.command(&["GET", "fib:7"]), "13");
    assert_eq!(redis.command(&["EXISTS", "fib:fib:7"]), ":0");
    let pttl: i64 = redis.command(&["PTTL", "fib:7"])[1..].parse().unwrap();
    assert!(pttl > 0 && pttl <= 15_000, "PTTL {pttl}");

    // A TTL of zero or below a millisecond is still a valid command (rounded up to 1 ms).
    cache.set("fib:zero", "0", Duration::ZERO).await.unwrap();
    cache
        .set("fib:tiny", "1", Duration::from_micros(10))
        .await
        .unwrap();
    eventually("sub-millisecond entries expire", 50, || async {
        redis.command(&["EXISTS", "fib:zero", "fib:tiny"]) == ":0"
    })
    .await;
    // A TTL far beyond what Redis accepts is capped, not refused.
    cache.set("fib:forever", "v", Duration::MAX).await.unwrap();
    assert_eq!(
        cache.get("fib:forever").await.unwrap().as_deref(),
        Some("v")
    );
}

#[tokio::test]
async fn a_malformed_url_is_a_config_error_without_the_password() {
    for url in [
        "redis://:hunter2-secret@127.0.0.1:not-a-port",
        "http://:hunter2-secret@127.0.0.1:6379",
        "hunter2-secret",
        "redis://:hunter2-secret@127.0.0.1:6379/db",
    ] {
        let err = create_err(&config_for(url)).await;
        let message = config_message(&err, "hunter2-secret");
        assert!(message.contains("REDIS_URL"), "{url}: {message}");
    }
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_a_config_error_without_the_password() {
    let redis = RedisServer::with_password("right-horse-battery");
    let port = redis.port;

    let url = format!("redis://:wrong-staple-42@127.0.0.1:{port}");
    let err = create_err(&config_for(&url)).await;
    let message = config_message(&err, "wrong-staple-42");
    assert!(message.contains("REDIS_URL"), "{message}");

    let separate = config_for("")
        .with_var("REDIS_ADDR", redis.addr())
        .with_var("REDIS_PASSWORD", "wrong-staple-42");
    let err = create_err(&separate).await;
    let message = config_message(&err, "wrong-staple-42");
    assert!(message.contains("REDIS_PASSWORD"), "{message}");

    // No password at all for a server that wants one (NOAUTH) is just as wrong.
    let err = create_err(&config_for(&format!("redis://127.0.0.1:{port}"))).await;
    let message = config_message(&err, "right-horse-battery");
    assert!(message.contains("requires a password"), "{message}");

    // And the right one works.
    let cache = create(&config_for(&redis.url())).await.unwrap();
    cache
        .set("fib:1", "1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cache.get("fib:1").await.unwrap().as_deref(), Some("1"));
}

#[tokio::test]
async fn a_database_the_server_lacks_is_a_config_error() {
    let redis = RedisServer::with_password("pw-in-db-test");
    let url = format!("redis://:pw-in-db-test@127.0.0.1:{}/99", redis.port);
    let err = create_err(&config_for(&url)).await;
    let message = config_message(&err, "pw-in-db-test");
    assert!(message.contains("99"), "{message}");

    let separate = config_for("")
        .with_var("REDIS_ADDR", redis.addr())
        .with_var("REDIS_PASSWORD", "pw-in-db-test");
    let err = create_err(&separate.clone().with_var("REDIS_DB", "99")).await;
    let message = config_message(&err, "pw-in-db-test");
    assert!(message.contains("REDIS_DB"), "{message}");
    let err = create_err(&separate.clone().with_var("REDIS_DB", "first")).await;
    let message = config_message(&err, "pw-in-db-test");
    assert!(message.contains("REDIS_DB"), "{message}");

    // Database 3 exists (Redis has 16 by default), and keys there are not in database 0.
    let cache = create(&separate.with_var("REDIS_DB", "3")).await.unwrap();
    cache
        .set("fib:2", "1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(redis.command(&["EXISTS", "fib:2"]), ":0");
}

#[tokio::test]
async fn redis_down_at_creation_fails_operations_then_recovers_by_itself() {
    let mut redis = RedisServer::start();
    redis.stop();
    let cache = bounded("create", create(&config_for(&redis.url())))
        .await
        .expect("a Redis that is down is not a reason to refuse to start");

    for _ in 0..3 {
        let got = bounded("get", cache.get("fib:10")).await;
        assert!(is_unavailable(&got), "{got:?}");
        let put = bounded("set", cache.set("fib:10", "55", Duration::from_secs(30))).await;
        assert!(is_unavailable(&put), "{put:?}");
    }

    redis.restart();
    // The same cache object, never re-created: its connection manager connects on its own.
    eventually("the cache uses Redis once it is back", 300, || async {
        cache
            .set("fib:10", "55", Duration::from_secs(30))
            .await
            .is_ok()
    })
    .await;
    assert_eq!(cache.get("fib:10").await.unwrap().as_deref(), Some("55"));
    assert_eq!(redis.command(&["GET", "fib:10"]), "55");
}

#[tokio::test]
async fn losing_redis_after_start_fails_operations_then_recovers() {
    let mut redis = RedisServer::start();
    let cache = create(&config_for(&redis.url())).await.unwrap();
    cache
        .set("fib:11", "89", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(cache.get("fib:11").await.unwrap().as_deref(), Some("89"));

    redis.stop();
    for _ in 0..5 {
        let got = bounded("get", cache.get("fib:11")).await;
        assert!(is_unavailable(&got), "{got:?}");
    }

    redis.restart();
    eventually(
        "the connection is replaced once Redis is back",
        300,
        || async {
            cache
                .set("fib:12", "144", Duration::from_secs(30))
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(cache.get("fib:12").await.unwrap().as_deref(), Some("144"));
    // The restarted Redis is empty: the old entry is a plain miss, not an error.
    assert_eq!(cache.get("fib:11").await.unwrap(), None);
}

#[tokio::test]
async fn a_redis_that_stops_answering_times_out_instead_of_hanging() {
    let redis = RedisServer::start();
    // The client's response timeout is the operation timeout; REDIS_TIMEOUT_MS, which once
    // overrode it, is not read (were it, the operations below would wait out the pause).
    let config = config_for(&redis.url())
        .with_op_timeout(Duration::from_secs(1))
        .with_var("REDIS_TIMEOUT_MS", "60000");
    let cache = create(&config).await.unwrap();
    cache
        .set("fib:13", "233", Duration::from_secs(60))
        .await
        .unwrap();

    // Redis holds every client's commands for 5 s, longer than the operation timeout, as a
    // stalled server would.
    assert_eq!(redis.command(&["CLIENT", "PAUSE", "5000", "ALL"]), "+OK");
    let got = bounded("get", cache.get("fib:13")).await;
    assert!(is_unavailable(&got), "{got:?}");
    let put = bounded("set", cache.set("fib:13", "233", Duration::from_secs(60))).await;
    assert!(is_unavailable(&put), "{put:?}");

    eventually("answers come back after the pause", 300, || async {
        matches!(cache.get("fib:13").await, Ok(Some(v)) if v == "233")
    })
    .await;
}

#[tokio::test]
async fn error_replies_are_backend_errors_and_leave_the_connection_alone() {
    let redis = RedisServer::start();
    let cache = create(&config_for(&redis.url())).await.unwrap();
    // A key of another type (WRONGTYPE), and a value that is not UTF-8.
    assert_eq!(redis.command(&["RPUSH", "fib:list", "x"]), ":1");
    let script = "return redis.call('SET', KEYS[1], string.char(255, 254))";
    assert_eq!(redis.command(&["EVAL", script, "1", "fib:bytes"]), "+OK");
    for key in ["fib:list", "fib:bytes"] {
        let got = bounded("get", cache.get(key)).await;
        assert!(is_backend_error(&got), "{key}: {got:?}");
    }
    // Redis answered, so the connection is still good and the next operation uses it.
    cache
        .set("fib:bytes", "1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cache.get("fib:bytes").await.unwrap().as_deref(), Some("1"));
}

#[tokio::test]
async fn a_peer_that_is_not_redis_is_a_config_error() {
    // Answers every connection like a web server would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            use std::io::Write;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let err = create_err(&config_for(&format!("redis://:pw-http-1@{addr}"))).await;
    let message = config_message(&err, "pw-http-1");
    assert!(
        message.contains("not answer like a Redis server"),
        "{message}"
    );
    assert!(message.contains("REDIS_URL"), "{message}");
    assert_eq!(
        message.lines().count(),
        1,
        "the server prints it as one line: {message}"
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_password() {
    let redis = RedisServer::with_password("debug-pw-7781");
    let config = RedisConfig::from_config(&config_for(&redis.url())).unwrap();
    let cache = RedisCache::connect(config.clone()).await.unwrap();
    assert!(cache.is_connected());
    for text in [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{cache:?}"),
        format!("{cache:#?}"),
    ] {
        assert!(!text.contains("debug-pw-7781"), "{text}");
    }
    // Errors from operations do not carry it either.
    drop(redis);
    let err = bounded("get", cache.get("fib:1")).await.unwrap_err();
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains("debug-pw-7781"), "{text}");
}
